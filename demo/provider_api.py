"""A scripted provider API on 127.0.0.1: OpenAI and Anthropic streaming, no network, no keys.

Stdlib only (asyncio), so the main venv, ``demo/.venv`` and ``langgraph dev`` can all run it.
It answers the streaming requests that ``langchain-openai`` and ``langchain-anthropic`` send,
with the SSE byte shapes of the real APIs (compact JSON, ``\\n\\n`` between events, HTTP/1.1
chunked, one chunk per event, keep-alive):

``POST /v1/chat/completions`` (OpenAI Chat Completions, ``stream: true``)
    ``data:``-only events: a role chunk (``content: ""``), ``n_text`` content deltas, a finish
    chunk, with ``stream_options.include_usage`` a final ``choices: []`` usage chunk (every
    other chunk then carries ``"usage": null``), ``data: [DONE]``. With ``tools`` and no
    ``tool`` message last, a tool call instead: the role chunk carries ``tool_calls[0]`` (id,
    name, ``arguments: ""``), then ``n_args`` argument deltas, finish ``tool_calls``.
``POST /v1/responses`` (OpenAI Responses, ``stream: true``)
    ``event: response.*`` events: ``created``, ``in_progress``; with ``reasoning`` in the
    request a reasoning item (with ``reasoning.summary`` also ``reasoning_summary_part.added``,
    ``n_reasoning`` ``reasoning_summary_text.delta``, ``…text.done``, ``…part.done``), then the
    message item (``output_item.added``, ``content_part.added``, ``n_text``
    ``output_text.delta``, ``output_text.done``, ``content_part.done``, ``output_item.done``),
    ``response.completed`` with the whole response and ``usage``, whose
    ``output_tokens_details.reasoning_tokens`` (``reasoning_tokens``, default 64) is larger
    than the ``n_reasoning`` streamed summary deltas: the rest is hidden reasoning.
``POST /v1/messages`` (Anthropic Messages, ``stream: true``)
    ``message_start``; with ``thinking.type == "enabled"`` a thinking block
    (``content_block_start`` ``{"type":"thinking","thinking":"","signature":""}``, ``ping``,
    ``n_reasoning`` ``thinking_delta``, one ``signature_delta``, ``content_block_stop``); then
    either a text block of ``n_text`` ``text_delta`` or, with ``tools`` and no ``tool_result``
    in the last user turn, a text block of ``n_pre`` deltas and a ``tool_use`` block
    (``input: {}``, an empty ``input_json_delta`` first as the real API sends, then ``n_args``
    ``input_json_delta``); ``message_delta`` (stop reason, cumulative usage, with thinking
    ``output_tokens_details.thinking_tokens``), ``message_stop``.

Default counts: ``n_reasoning`` 12 (OpenAI summary deltas, Anthropic thinking deltas),
``n_text`` 20, ``n_pre`` 4, ``n_args`` 6; one delta is one output token, except OpenAI's
hidden reasoning tokens. The words are fixed, so every run streams the same text.

Timings, in seconds after the request was read (slots are absolute, so gaps do not drift):

============  =======  ================================================================
knob          default  meaning
============  =======  ================================================================
preamble      0.050    ``response.created`` / ``message_start`` / the chat role chunk
first_output  0.150    first output delta: reasoning if any, else text or the tool call
answer        0.600    first answer text delta after reasoning (ignored without reasoning;
                       never earlier than one gap after the last reasoning event)
gap           0.025    between consecutive deltas; the closing events come one gap after
                       the last delta
============  =======  ================================================================

Each knob (and ``n_reasoning``, ``n_text``, ``n_pre``, ``n_args``, ``reasoning_tokens``) is
resolved per request, first match wins: request header ``x-script-<knob>`` (``_`` as ``-``,
seconds for times: ``x-script-first-output-s``, ``x-script-answer-s``, ``x-script-gap-s``,
``x-script-preamble-s``, ``x-script-n-text``, …); a model-name suffix
``<model>@first_output=0.1,gap=0.01`` (the suffix is stripped from the echoed model); env
``PROVIDER_API_<KNOB>`` (``PROVIDER_API_GAP_S``, ``PROVIDER_API_N_TEXT``); the default. A bad
value is a 400 with an error body in the provider's format.

    python demo/provider_api.py [--port P]     # prints its URL on the first line; Ctrl-C stops

    with ProviderAPI() as api:                 # a thread in this process
        ...                                    # api.url == "http://127.0.0.1:<port>"
    with ProviderAPIProcess() as api:          # a child process (what DevServer uses)
        ...
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from types import TracebackType
from typing import Any

HOST = "127.0.0.1"

REASONING_TEXT = (  # 12 words: the default n_reasoning streams it once, word by word
    "**Greeting the user**\n\nThe user said hi, so I should greet them back."
)
TEXT = (  # 20 words: the default n_text
    "Hello! I'm here and ready to help. What would you like to talk about or work on "
    "today? Ask away."
)
PREAMBLE_TEXT = "I'll look that up"
SIGNATURE = "ErUBCkYIBxgCIkB" + "x" * 48 + "EgxzY3JpcHRlZC1zaWc="
HIDDEN_REASONING_TOKENS = 64


# ---------------------------------------------------------------------- timing spec
@dataclass(frozen=True)
class Script:
    """What one request streams and when (seconds after the request was read)."""

    preamble_s: float = 0.050
    first_output_s: float = 0.150
    answer_s: float = 0.600
    gap_s: float = 0.025
    n_reasoning: int = 12
    n_text: int = 20
    n_pre: int = 4
    n_args: int = 6
    reasoning_tokens: int = HIDDEN_REASONING_TOKENS


_MODEL_SUFFIX = re.compile(r"^(?P<model>[^@]+)@(?P<spec>[\w.=,-]+)$")


class ScriptError(ValueError):
    """A timing knob has a bad value."""


def _knob_value(name: str, raw: str, where: str) -> float | int:
    try:
        value: float | int = float(raw) if name.endswith("_s") else int(raw)
    except ValueError:
        raise ScriptError(f"{where}: {raw!r} is not a number") from None
    if not 0 <= value <= 600:
        raise ScriptError(f"{where}: {value} is outside 0..600")
    return value


def resolve_script(
    headers: Mapping[str, str], model: str, environ: Mapping[str, str] | None = None
) -> tuple[Script, str]:
    """Return the request's script and the model name without its ``@knob=value`` suffix."""
    env = os.environ if environ is None else environ
    from_model: dict[str, str] = {}
    m = _MODEL_SUFFIX.match(model or "")
    if m:
        model = m.group("model")
        for item in m.group("spec").split(","):
            key, _, value = item.partition("=")
            from_model[key] = value
    values: dict[str, Any] = {}
    for f in fields(Script):
        short = f.name.removesuffix("_s")
        header = "x-script-" + f.name.replace("_", "-")
        env_key = "PROVIDER_API_" + f.name.upper()
        if header in headers:
            values[f.name] = _knob_value(f.name, headers[header], header)
        elif f.name in from_model or short in from_model:
            raw = from_model.get(f.name, from_model.get(short, ""))
            values[f.name] = _knob_value(f.name, raw, f"model suffix {f.name}")
        elif env.get(env_key):
            values[f.name] = _knob_value(f.name, env[env_key], env_key)
    unknown = set(from_model) - {f.name for f in fields(Script)}
    unknown -= {f.name.removesuffix("_s") for f in fields(Script)}
    if unknown:
        raise ScriptError(f"model suffix: unknown knobs {sorted(unknown)}")
    return Script(**values), model


# ---------------------------------------------------------------------- helpers
def _dump(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _words(text: str, n: int) -> list[str]:
    """``n`` deltas: the words in order (cycled), each but the first with a leading space."""
    words = text.split(" ")
    return [(" " if i else "") + words[i % len(words)] for i in range(n)]


def _split(text: str, n: int) -> list[str]:
    """``text`` cut into ``n`` non-empty pieces (fewer if it is shorter)."""
    n = max(1, min(n, len(text)))
    size, rest = divmod(len(text), n)
    out, pos = [], 0
    for i in range(n):
        step = size + (1 if i < rest else 0)
        out.append(text[pos : pos + step])
        pos += step
    return out


def _obfuscation(i: int) -> str:
    # The real API pads delta events with a random-length string; a fixed one per index here.
    return hashlib.sha256(str(i).encode()).hexdigest()[: 2 + i % 12]


def _rand_id(prefix: str, n: int = 24) -> str:
    return prefix + uuid.uuid4().hex[:n]


def _count_words(value: Any) -> int:
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        return sum(_count_words(v) for v in value)
    if isinstance(value, dict):
        return sum(_count_words(v) for k, v in value.items() if k in ("content", "text", "input"))
    return 0


def _tool_args(tool_schema: Mapping[str, Any] | None) -> str:
    """Deterministic arguments for a tool: "San Francisco" for each string property."""
    props = (tool_schema or {}).get("properties") or {}
    args = {k: "San Francisco" for k, v in props.items() if (v or {}).get("type") == "string"}
    return json.dumps(args or {"city": "San Francisco"})


Emit = Callable[[float, str | None, Any], Awaitable[None]]


# ---------------------------------------------------------------------- OpenAI Chat Completions
async def openai_chat(body: dict[str, Any], s: Script, model: str, emit: Emit) -> None:
    cid = _rand_id("chatcmpl-", 29)
    created = int(time.time())
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    messages = body.get("messages") or []
    tools = body.get("tools") or []
    tool_turn = bool(tools) and not (messages and messages[-1].get("role") == "tool")
    n = 0

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        nonlocal n
        n += 1
        c: dict[str, Any] = {
            "id": cid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "service_tier": "default",
            "system_fingerprint": "fp_scripted01",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            c["usage"] = None
        c["obfuscation"] = _obfuscation(n)
        return c

    if tool_turn:
        fn = tools[0].get("function") or {}
        pieces = _split(_tool_args(fn.get("parameters")), s.n_args)
        call = {
            "index": 0,
            "id": _rand_id("call_"),
            "type": "function",
            "function": {"name": fn.get("name", "tool"), "arguments": ""},
        }
        first = {"role": "assistant", "content": None, "tool_calls": [call], "refusal": None}
        await emit(s.first_output_s, None, chunk(first))
        t = s.first_output_s
        for piece in pieces:
            t += s.gap_s
            await emit(
                t, None, chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
            )
        n_out, finish = len(pieces) + 1, "tool_calls"
    else:
        await emit(
            min(s.preamble_s, s.first_output_s),
            None,
            chunk({"role": "assistant", "content": "", "refusal": None}),
        )
        t = s.first_output_s
        for i, word in enumerate(_words(TEXT, s.n_text)):
            t = s.first_output_s + i * s.gap_s
            await emit(t, None, chunk({"content": word}))
        n_out, finish = s.n_text, "stop"
    t += s.gap_s
    await emit(t, None, chunk({}, finish))
    if include_usage:
        n_in = _count_words(messages) + 5
        usage = {
            "prompt_tokens": n_in,
            "completion_tokens": n_out,
            "total_tokens": n_in + n_out,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": 0,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
        last = chunk({})
        last["choices"] = []
        last["usage"] = usage
        await emit(t, None, last)
    await emit(t, None, "[DONE]")


# ---------------------------------------------------------------------- OpenAI Responses
async def openai_responses(body: dict[str, Any], s: Script, model: str, emit: Emit) -> None:
    rid = _rand_id("resp_", 48)
    created = int(time.time())
    reasoning = body.get("reasoning") or None
    summary = bool(reasoning and reasoning.get("summary"))
    encrypted = "reasoning.encrypted_content" in (body.get("include") or [])
    seq = -1

    def ev(kind: str, **fields_: Any) -> dict[str, Any]:
        nonlocal seq
        seq += 1
        return {"type": kind, "sequence_number": seq, **fields_}

    response: dict[str, Any] = {
        "id": rid,
        "object": "response",
        "created_at": created,
        "status": "in_progress",
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": None,
        "model": model,
        "output": [],
        "parallel_tool_calls": True,
        "previous_response_id": body.get("previous_response_id"),
        "prompt_cache_key": None,
        "reasoning": {
            "effort": (reasoning or {}).get("effort"),
            "summary": (reasoning or {}).get("summary"),
        },
        "safety_identifier": None,
        "service_tier": "auto",
        "store": body.get("store", True),
        "temperature": 1.0,
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": "auto",
        "tools": [],
        "top_logprobs": 0,
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": None,
        "user": None,
        "metadata": {},
    }
    pre = min(s.preamble_s, s.first_output_s)
    await emit(pre, "response.created", ev("response.created", response=dict(response)))
    await emit(pre, "response.in_progress", ev("response.in_progress", response=dict(response)))

    output: list[dict[str, Any]] = []
    idx = 0
    answer_at = s.first_output_s
    if reasoning:
        rs: dict[str, Any] = {"id": _rand_id("rs_", 48), "type": "reasoning", "summary": []}
        if encrypted:
            rs["encrypted_content"] = "gAAAAAB" + "scripted" * 8
        await emit(
            pre,
            "response.output_item.added",
            ev("response.output_item.added", output_index=idx, item=dict(rs, summary=[])),
        )
        t = s.first_output_s
        if summary:
            common = {"item_id": rs["id"], "output_index": idx, "summary_index": 0}
            part = {"type": "summary_text", "text": ""}
            await emit(
                t,
                "response.reasoning_summary_part.added",
                ev("response.reasoning_summary_part.added", **common, part=part),
            )
            deltas = _words(REASONING_TEXT, s.n_reasoning)
            for i, d in enumerate(deltas):
                t = s.first_output_s + i * s.gap_s
                await emit(
                    t,
                    "response.reasoning_summary_text.delta",
                    ev(
                        "response.reasoning_summary_text.delta",
                        **common,
                        delta=d,
                        obfuscation=_obfuscation(i),
                    ),
                )
            text = "".join(deltas)
            t += s.gap_s
            await emit(
                t,
                "response.reasoning_summary_text.done",
                ev("response.reasoning_summary_text.done", **common, text=text),
            )
            done_part = {"type": "summary_text", "text": text}
            await emit(
                t,
                "response.reasoning_summary_part.done",
                ev("response.reasoning_summary_part.done", **common, part=done_part),
            )
            rs["summary"] = [done_part]
        await emit(
            t,
            "response.output_item.done",
            ev("response.output_item.done", output_index=idx, item=rs),
        )
        output.append(rs)
        idx += 1
        answer_at = max(s.answer_s, t + s.gap_s)

    msg_id = _rand_id("msg_", 48)
    item = {
        "id": msg_id,
        "type": "message",
        "status": "in_progress",
        "content": [],
        "role": "assistant",
    }
    await emit(
        answer_at,
        "response.output_item.added",
        ev("response.output_item.added", output_index=idx, item=item),
    )
    common = {"item_id": msg_id, "output_index": idx, "content_index": 0}
    empty = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
    await emit(
        answer_at,
        "response.content_part.added",
        ev("response.content_part.added", **common, part=empty),
    )
    deltas = _words(TEXT, s.n_text)
    t = answer_at
    for i, d in enumerate(deltas):
        t = answer_at + i * s.gap_s
        await emit(
            t,
            "response.output_text.delta",
            ev(
                "response.output_text.delta",
                **common,
                delta=d,
                logprobs=[],
                obfuscation=_obfuscation(i),
            ),
        )
    text = "".join(deltas)
    t += s.gap_s
    await emit(
        t,
        "response.output_text.done",
        ev("response.output_text.done", **common, text=text, logprobs=[]),
    )
    part = dict(empty, text=text)
    await emit(
        t, "response.content_part.done", ev("response.content_part.done", **common, part=part)
    )
    item = dict(item, status="completed", content=[part])
    await emit(
        t, "response.output_item.done", ev("response.output_item.done", output_index=idx, item=item)
    )
    output.append(item)

    n_in = _count_words(body.get("input")) + 5
    hidden = s.reasoning_tokens if reasoning else 0
    n_out = hidden + s.n_text
    response.update(
        status="completed",
        completed_at=int(time.time()),
        output=output,
        usage={
            "input_tokens": n_in,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": n_out,
            "output_tokens_details": {"reasoning_tokens": hidden},
            "total_tokens": n_in + n_out,
        },
    )
    await emit(t, "response.completed", ev("response.completed", response=response))


# ---------------------------------------------------------------------- Anthropic Messages
async def anthropic_messages(body: dict[str, Any], s: Script, model: str, emit: Emit) -> None:
    thinking = (body.get("thinking") or {}).get("type") == "enabled"
    tools = body.get("tools") or []
    messages = body.get("messages") or []
    last_content = messages[-1].get("content") if messages else None
    tool_result = isinstance(last_content, list) and any(
        isinstance(b, dict) and b.get("type") == "tool_result" for b in last_content
    )
    tool_turn = bool(tools) and not tool_result
    n_in = _count_words(messages) + _count_words(body.get("system") or "") + 5
    usage0 = {
        "input_tokens": n_in,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": 1,
        "service_tier": "standard",
    }
    message = {
        "model": model,
        "id": _rand_id("msg_01", 22),
        "type": "message",
        "role": "assistant",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage0,
    }
    pre = min(s.preamble_s, s.first_output_s)
    await emit(pre, "message_start", {"type": "message_start", "message": message})
    index = 0
    n_out = 0
    pinged = False
    text_at = s.first_output_s

    async def ping(t: float) -> None:
        nonlocal pinged
        if not pinged:
            pinged = True
            await emit(t, "ping", None)

    def delta(i: int, d: dict[str, Any]) -> dict[str, Any]:
        return {"type": "content_block_delta", "index": i, "delta": d}

    t = pre
    if thinking:
        block = {"type": "thinking", "thinking": "", "signature": ""}
        await emit(
            pre,
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": block},
        )
        await ping(pre)
        for i, w in enumerate(_words(REASONING_TEXT, s.n_reasoning)):
            t = s.first_output_s + i * s.gap_s
            await emit(
                t, "content_block_delta", delta(index, {"type": "thinking_delta", "thinking": w})
            )
        n_out += s.n_reasoning
        t += s.gap_s
        await emit(
            t,
            "content_block_delta",
            delta(index, {"type": "signature_delta", "signature": SIGNATURE}),
        )
        await emit(t, "content_block_stop", {"type": "content_block_stop", "index": index})
        index += 1
        text_at = max(s.answer_s, t + s.gap_s)

    words = _words(PREAMBLE_TEXT, s.n_pre) if tool_turn else _words(TEXT, s.n_text)
    if words:
        start = {
            "type": "content_block_start",
            "index": index,
            "content_block": {"type": "text", "text": ""},
        }
        await emit(text_at, "content_block_start", start)
        await ping(text_at)
        for i, w in enumerate(words):
            t = text_at + i * s.gap_s
            await emit(t, "content_block_delta", delta(index, {"type": "text_delta", "text": w}))
        n_out += len(words)
        t += s.gap_s
        await emit(t, "content_block_stop", {"type": "content_block_stop", "index": index})
        index += 1
    if tool_turn:
        tool = tools[0]
        block = {
            "type": "tool_use",
            "id": _rand_id("toolu_01", 22),
            "name": tool.get("name", "tool"),
            "input": {},
        }
        t = t if words else text_at
        await emit(
            t,
            "content_block_start",
            {"type": "content_block_start", "index": index, "content_block": block},
        )
        await ping(t)
        await emit(
            t, "content_block_delta", delta(index, {"type": "input_json_delta", "partial_json": ""})
        )
        pieces = _split(_tool_args(tool.get("input_schema")), s.n_args)
        for piece in pieces:
            t += s.gap_s
            await emit(
                t,
                "content_block_delta",
                delta(index, {"type": "input_json_delta", "partial_json": piece}),
            )
        n_out += len(pieces) + 1
        t += s.gap_s
        await emit(t, "content_block_stop", {"type": "content_block_stop", "index": index})
    usage: dict[str, Any] = {
        "input_tokens": n_in,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": n_out,
    }
    if thinking:
        usage["output_tokens_details"] = {"thinking_tokens": s.n_reasoning}
    stop = {"stop_reason": "tool_use" if tool_turn else "end_turn", "stop_sequence": None}
    await emit(t, "message_delta", {"type": "message_delta", "delta": stop, "usage": usage})
    await emit(t, "message_stop", {"type": "message_stop"})


# ---------------------------------------------------------------------- HTTP server
ROUTES = {
    "/v1/chat/completions": ("openai", openai_chat),
    "/v1/responses": ("openai", openai_responses),
    "/v1/messages": ("anthropic", anthropic_messages),
}
MAX_REQUESTS_KEPT = 200


def _error_body(flavour: str, status: int, message: str) -> dict[str, Any]:
    if flavour == "anthropic":
        kind = "not_found_error" if status == 404 else "invalid_request_error"
        return {"type": "error", "error": {"type": kind, "message": message}}
    return {
        "error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}
    }


class _Server:
    """The asyncio side: one connection handler, HTTP/1.1 with keep-alive."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self.environ = environ
        self.requests: list[dict[str, Any]] = []  # newest last, at most MAX_REQUESTS_KEPT
        self._handlers: set[asyncio.Task[None]] = set()

    async def aclose(self, aserver: asyncio.Server) -> None:
        """Stop listening and end every open connection (idle keep-alive ones too)."""
        aserver.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await aserver.wait_closed()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            pass  # aclose(): end quietly (3.11's stream callback logs a cancelled handler)
        finally:
            if task is not None:
                self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = [*lines[0].split(" ", 2), "", ""][:3]
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
        length = int(headers.get("content-length") or 0)
        raw = await reader.readexactly(length) if length else b""
        t_read = asyncio.get_running_loop().time()
        path = target.split("?", 1)[0]
        keep_alive = headers.get("connection", "").lower() != "close"

        if path in ("/health", "/ok") and method in ("GET", "HEAD"):
            await self._json(writer, 200, {"ok": True}, keep_alive)
            return keep_alive
        route = ROUTES.get(path)
        flavour = route[0] if route else "openai"
        if route is None or method != "POST":
            status = 404 if route is None else 405
            await self._json(
                writer, status, _error_body(flavour, status, f"{method} {path}"), keep_alive
            )
            return keep_alive
        try:
            body = json.loads(raw or b"{}")
            if not body.get("stream"):
                raise ScriptError("this scripted API only answers stream: true")
            script, model = resolve_script(headers, str(body.get("model", "")), self.environ)
        except (ValueError, AttributeError) as e:
            await self._json(writer, 400, _error_body(flavour, 400, str(e)), keep_alive)
            return keep_alive

        record: dict[str, Any] = {
            "path": path,
            "model": model,
            "script": script.__dict__,
            "events": [],
        }
        self.requests.append(record)
        del self.requests[:-MAX_REQUESTS_KEPT]
        request_id = _rand_id("req_", 24)
        head_lines = [
            "HTTP/1.1 200 OK",
            "Content-Type: text/event-stream; charset=utf-8",
            "Transfer-Encoding: chunked",
            "Cache-Control: no-cache",
            "Connection: keep-alive" if keep_alive else "Connection: close",
            f"x-request-id: {request_id}",
            f"request-id: {request_id}",
        ]
        writer.write(("\r\n".join(head_lines) + "\r\n\r\n").encode())
        await writer.drain()
        loop = asyncio.get_running_loop()

        async def emit(at: float, event: str | None, data: Any) -> None:
            delay = t_read + at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if event == "ping":
                payload = 'event: ping\ndata: {"type": "ping"}\n\n'
            else:
                text = data if isinstance(data, str) else _dump(data)
                payload = (f"event: {event}\n" if event else "") + f"data: {text}\n\n"
            b = payload.encode()
            writer.write(b"%x\r\n%s\r\n" % (len(b), b))
            await writer.drain()
            label = event or (data if isinstance(data, str) else "chunk")
            record["events"].append((label, round(loop.time() - t_read, 6)))

        await route[1](body, script, model, emit)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return keep_alive

    @staticmethod
    async def _json(writer: asyncio.StreamWriter, status: int, obj: Any, keep_alive: bool) -> None:
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
        b = _dump(obj).encode()
        writer.write(
            (
                f"HTTP/1.1 {status} {reason.get(status, 'Error')}\r\n"
                "Content-Type: application/json\r\n"
                f"Content-Length: {len(b)}\r\n"
                f"Connection: {'keep-alive' if keep_alive else 'close'}\r\n\r\n"
            ).encode()
            + b
        )
        await writer.drain()


class ProviderAPI:
    """The scripted provider API on an asyncio loop in a daemon thread of this process."""

    def __init__(self, port: int = 0, environ: Mapping[str, str] | None = None) -> None:
        self.port = port
        self._server = _Server(environ)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._aserver: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Each streamed request: path, model, script, events as ``(label, s after read)``."""
        return self._server.requests

    def start(self) -> ProviderAPI:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._aserver = loop.run_until_complete(
                    asyncio.start_server(self._server.handle, HOST, self.port)
                )
                self.port = self._aserver.sockets[0].getsockname()[1]
            except BaseException as e:
                failure.append(e)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._server.aclose(self._aserver))
            loop.close()

        self._thread = threading.Thread(target=run, name="provider-api", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        self._loop = self._thread = None

    def __enter__(self) -> ProviderAPI:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class ProviderAPIProcess:
    """The scripted provider API in a child process (its own interpreter and GIL)."""

    def __init__(
        self,
        port: int = 0,
        env: Mapping[str, str] | None = None,
        python: str | None = None,
        startup_timeout_s: float = 10.0,
    ) -> None:
        self.port = port
        self.env = dict(env or {})
        self.python = python or sys.executable
        self.startup_timeout_s = startup_timeout_s
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> ProviderAPIProcess:
        self.process = subprocess.Popen(
            [
                self.python,
                str(Path(__file__).resolve()),
                "--port",
                str(self.port),
                "--parent-pid",
                str(os.getpid()),
            ],
            env={**os.environ, **self.env, "PYTHONUNBUFFERED": "1"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        assert self.process.stdout is not None
        result: list[bytes] = []
        reader = threading.Thread(target=lambda: result.append(self.process.stdout.readline()))  # type: ignore[union-attr]
        reader.start()
        reader.join(self.startup_timeout_s)
        line = result[0].decode().strip() if result else ""
        m = re.fullmatch(r"http://127\.0\.0\.1:(\d+)", line)
        if not m:
            self.stop()
            raise RuntimeError(f"provider API did not start (first line {line!r})")
        self.port = int(m.group(1))
        return self

    def stop(self) -> None:
        proc, self.process = self.process, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    def __enter__(self) -> ProviderAPIProcess:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: free)")
    parser.add_argument(
        "--parent-pid", type=int, default=None, help="exit when this process is gone"
    )
    args = parser.parse_args(argv)

    async def watch_parent(stop: asyncio.Event) -> None:
        # A parent killed with SIGKILL cannot stop us: do not outlive it.
        while args.parent_pid is not None and not stop.is_set():
            if os.getppid() != args.parent_pid:
                stop.set()
            await asyncio.sleep(0.5)

    async def serve() -> None:
        server = _Server()
        aserver = await asyncio.start_server(server.handle, HOST, args.port)
        port = aserver.sockets[0].getsockname()[1]
        print(f"http://{HOST}:{port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        watcher = asyncio.create_task(watch_parent(stop))
        await stop.wait()
        watcher.cancel()
        await server.aclose(aserver)

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
