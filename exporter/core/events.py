"""Typed LangGraph stream events, decoded from one SSE event's name and data. Pure: no I/O.

Events are NamedTuples: immutable, and several times cheaper to build than frozen dataclasses
on a path that runs for every token (docs/PERFORMANCE.md). Only what the timing model needs is
kept; the rest of each payload (the ~0.7 KB metadata dict repeated in every token, the node
input carried by `tasks` starts; docs/WIRE.md §3) is dropped here.
"""

from __future__ import annotations

import json
import sys
from typing import Any, NamedTuple

import orjson

from exporter.core.errors import StreamProtocolError

__all__ = [
    "End",
    "LangGraphEvent",
    "Message",
    "Metadata",
    "Other",
    "RunError",
    "TaskEnd",
    "TaskStart",
    "decode_event",
    "node_path",
]


class Metadata(NamedTuple):
    """First event of every run, sent when a worker picks the run up (docs/WIRE.md §2)."""

    run_id: str | None
    attempt: int | None


class Message(NamedTuple):
    """One `messages` tuple: a streamed chunk of an LLM call, or a whole node-output message.

    A chunk is recognised by what it is, not by one server's type string (docs/WIRE.md §5):
    Python types it `AIMessageChunk`, the JS server `ai` with `ls_integration:
    "langchain_chat_model"` in the tuple metadata.
    """

    msg_id: str
    node: str  # namespace path without task ids: `research/inner_agent` (docs/WIRE.md §7)
    langgraph_node: str | None  # the raw metadata value (inner node name inside a subgraph)
    task_id: str | None  # last `:`-suffix of `langgraph_checkpoint_ns` (docs/WIRE.md §4)
    is_chunk: bool  # part of a streamed LLM call (not a whole message)
    is_token: bool  # a chunk with output of any kind: text, reasoning or a tool-call fragment
    is_answer: bool  # a token with non-reasoning output (text or a tool-call fragment)
    is_last: bool  # `chunk_position: "last"`: langchain-core's end-of-call marker (docs/WIRE.md §5)
    text: str  # the answer text this chunk adds (for content expectations)
    model: str | None
    provider: str | None
    output_tokens: int | None  # `usage_metadata.output_tokens` on this chunk (summed per call)
    reasoning_tokens: int | None  # `usage_metadata.output_token_details.reasoning` (summed)
    thread_id: str | None  # the server's thread id from the tuple metadata (docs/WIRE.md §8)


class TaskStart(NamedTuple):
    """`tasks` event with `input`: a node execution starts (docs/WIRE.md §5)."""

    task_id: str
    node: str


class TaskEnd(NamedTuple):
    """`tasks` event with `result` or `error`: a node execution ends."""

    task_id: str
    node: str
    error_type: str | None
    error_message: str = ""


class RunError(NamedTuple):
    """`event: error` inside HTTP 200 (docs/WIRE.md §8). The message may be masked by the server."""

    error_type: str
    message: str


class End(NamedTuple):
    """`event: end`: not sent by current servers, accepted from older ones (docs/WIRE.md §2)."""


class Other(NamedTuple):
    """Any other event (updates, values, debug, ...): counted, not interpreted."""

    name: str


LangGraphEvent = Metadata | Message | TaskStart | TaskEnd | RunError | End | Other


#: Every token of a node execution carries the same checkpoint namespace: parse each one once.
_NODE_PATHS: dict[str, tuple[str, str | None]] = {}
_NODE_PATHS_MAX = 4096


def node_path(checkpoint_ns: str) -> tuple[str, str | None]:
    """`research:<id>|inner_agent:<id>` -> (`research/inner_agent`, `<inner task id>`)."""
    cached = _NODE_PATHS.get(checkpoint_ns)
    if cached is not None:
        return cached
    if len(_NODE_PATHS) >= _NODE_PATHS_MAX:
        _NODE_PATHS.clear()  # bounded: task ids are unique, so old entries are never hit again
    path = _node_path(checkpoint_ns)
    _NODE_PATHS[checkpoint_ns] = path
    return path


def _node_path(checkpoint_ns: str) -> tuple[str, str | None]:
    names: list[str] = []
    task_id: str | None = None
    for part in checkpoint_ns.split("|"):
        name, sep, tid = part.rpartition(":")
        if not sep:
            name, tid = part, ""
        names.append(name)
        task_id = tid or None
    return sys.intern("/".join(names)), task_id


#: Content block types that carry reasoning, and the key of their text (docs/WIRE.md §13).
_REASONING_BLOCKS = {
    "thinking": "thinking",  # Anthropic extended thinking
    "reasoning": "reasoning",  # langchain-core v1 standard blocks
    "redacted_thinking": "data",  # Anthropic: encrypted, still output the model produced
}
#: Content block types that carry tool-call fragments, and the keys that make one non-empty.
_TOOL_BLOCKS = {
    "tool_call_chunk": ("name", "args"),
    "tool_use": ("name",),
    "input_json_delta": ("partial_json",),
    "server_tool_call_chunk": ("name", "args"),
}


def _nonempty(value: Any) -> bool:
    return isinstance(value, str) and value != ""


def _summary_has_text(summary: Any) -> bool:
    """OpenAI Responses reasoning summaries: `[{"type": "summary_text", "text": "…"}]`."""
    return isinstance(summary, list) and any(
        isinstance(part, dict) and _nonempty(part.get("text")) for part in summary
    )


def _block_output(block: dict[str, Any]) -> tuple[str, bool, bool]:
    """(answer text, has reasoning, has a tool fragment) of one content block."""
    kind = block.get("type")
    if kind in _REASONING_BLOCKS:
        has = _nonempty(block.get(_REASONING_BLOCKS[kind])) or _summary_has_text(
            block.get("summary")
        )
        return "", has, False
    if kind in _TOOL_BLOCKS:
        return "", False, any(_nonempty(block.get(k)) for k in _TOOL_BLOCKS[kind])
    text = block.get("text")
    return (text if isinstance(text, str) else ""), False, False


def _output(msg: dict[str, Any]) -> tuple[str, bool, bool]:
    """(answer text, carries reasoning, carries a tool-call fragment) of one message.

    Reasoning reaches the stream in several shapes (docs/WIRE.md §13): content blocks
    (`thinking`, `reasoning` with a string or a nested `summary`), and `additional_kwargs`
    (`reasoning_content` string, `reasoning.summary` list). A tool-call fragment counts when it
    has a name or arguments: Anthropic's first `input_json_delta` is empty and is not output.
    """
    content = msg.get("content")
    reasoning = tool = False
    if isinstance(content, str):
        text = content
    elif isinstance(content, list):
        parts: list[str] = []
        for block in content:
            if isinstance(block, str):
                parts.append(block)
            elif isinstance(block, dict):
                part, r, t = _block_output(block)
                parts.append(part)
                reasoning = reasoning or r
                tool = tool or t
        text = "".join(parts)
    else:
        text = ""
    extra = msg.get("additional_kwargs")
    if isinstance(extra, dict) and extra:
        if _nonempty(extra.get("reasoning_content")):
            reasoning = True
        value = extra.get("reasoning")
        if _nonempty(value) or (
            isinstance(value, dict) and _summary_has_text(value.get("summary"))
        ):
            reasoning = True
    if not tool:
        chunks = msg.get("tool_call_chunks")
        if chunks and isinstance(chunks, list):
            for c in chunks:  # a loop, not any(): this runs for every tool-call token
                if isinstance(c, dict) and (_nonempty(c.get("name")) or _nonempty(c.get("args"))):
                    tool = True
                    break
    return text, reasoning, tool


def _is_chunk(msg: dict[str, Any], meta: dict[str, Any]) -> bool:
    """A streamed chunk of an LLM call, on either server (docs/WIRE.md §5)."""
    kind = msg.get("type")
    if kind == "AIMessageChunk":
        return True
    integration = meta.get("ls_integration")
    if integration == "langchain_chat_model":
        return True
    if integration == "langgraph":
        return False  # a node-output message (JS), never a token
    # No integration key: an `ai` message with `tool_call_chunks` was streamed (JS chunks
    # always carry the array, whole messages do not).
    return kind in ("ai", "AIMessageChunk") and "tool_call_chunks" in msg


def _usage(msg: dict[str, Any]) -> tuple[int | None, int | None]:
    usage = msg.get("usage_metadata")
    if not isinstance(usage, dict):
        return None, None
    output = usage.get("output_tokens")
    details = usage.get("output_token_details")
    reasoning = details.get("reasoning") if isinstance(details, dict) else None
    return (
        output if isinstance(output, int) else None,
        reasoning if isinstance(reasoning, int) else None,
    )


#: Above this size an event's JSON is parsed by the stdlib: orjson's parser peaks at about 13x
#: the input (130 MB for one 10 MB token), the stdlib's at 2-5x (memory must stay bounded).
LARGE_EVENT_BYTES = 1024 * 1024


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # as orjson: NaN and Infinity are not JSON


def _parse(data: bytes) -> Any:
    """JSON from an event's data; raises ValueError (or RecursionError) when it is not JSON."""
    if len(data) <= LARGE_EVENT_BYTES:
        return orjson.loads(data)
    # NOTE: decode first: given bytes, json.loads would also accept UTF-16/32, orjson does not.
    return json.loads(data.decode("utf-8"), parse_constant=_reject_constant)


def _loads(name: str, data: bytes) -> Any:
    try:
        return _parse(data)
    except (ValueError, RecursionError) as exc:  # orjson.JSONDecodeError is a ValueError
        raise StreamProtocolError(
            f"event {name!r}: data is not JSON: {data[:80]!r}", phase="stream"
        ) from exc


def _message(name: str, ns_names: list[str], payload: Any) -> Message:
    if not (isinstance(payload, list) and len(payload) == 2 and isinstance(payload[0], dict)):
        raise StreamProtocolError(
            f"event {name!r}: expected [message, metadata], got {str(payload)[:80]!r}",
            phase="stream",
        )
    msg, meta = payload
    if not isinstance(meta, dict):
        meta = {}
    lg_node = meta.get("langgraph_node")
    cns = meta.get("langgraph_checkpoint_ns")
    if isinstance(cns, str) and cns:
        node, task_id = node_path(cns)
    else:
        node = "/".join([*ns_names, lg_node]) if isinstance(lg_node, str) else "/".join(ns_names)
        task_id = None
    # NOTE: this runs for every token; the common shapes (string content, no reasoning in
    # `additional_kwargs`, no tool fragments, no usage) take the short path (docs/PERFORMANCE.md).
    is_chunk = msg.get("type") == "AIMessageChunk" or _is_chunk(msg, meta)
    content = msg.get("content")
    if (
        type(content) is str
        and not msg.get("additional_kwargs")
        and not msg.get("tool_call_chunks")
    ):
        text, reasoning, tool = content, False, False
    else:
        text, reasoning, tool = _output(msg)
    answer = bool(text) or tool
    output_tokens, reasoning_tokens = _usage(msg) if msg.get("usage_metadata") else (None, None)
    model = meta.get("ls_model_name")
    provider = meta.get("ls_provider")
    thread_id = meta.get("thread_id")
    msg_id = msg.get("id")
    # Positional: a NamedTuple built from keywords costs more (fields in declaration order).
    return Message(
        msg_id if isinstance(msg_id, str) else "",
        # Interned: a result keeps the node of every event, and a graph has few nodes.
        sys.intern(node) if node else "__unknown__",
        sys.intern(lg_node) if isinstance(lg_node, str) else None,
        task_id,
        is_chunk,
        is_chunk and (answer or reasoning),
        is_chunk and answer,
        msg.get("chunk_position") == "last",
        text,
        model if isinstance(model, str) else None,
        provider if isinstance(provider, str) else None,
        output_tokens,
        reasoning_tokens,
        thread_id if isinstance(thread_id, str) else None,
    )


def _task(name: str, ns_names: list[str], payload: Any) -> TaskStart | TaskEnd:
    if not isinstance(payload, dict) or not isinstance(payload.get("id"), str):
        raise StreamProtocolError(
            f"event {name!r}: expected a task object with an id", phase="stream"
        )
    task_name = payload.get("name")
    node = "/".join([*ns_names, task_name if isinstance(task_name, str) else "__unknown__"])
    if "input" in payload:
        return TaskStart(payload["id"], node)
    error = payload.get("error")
    message = ""
    if isinstance(error, dict):
        # Python: {"error": "RuntimeError", "message"}; JS: {"name", "message"} (docs/WIRE.md §5).
        error_type: str | None = str(error.get("error") or error.get("name") or "Error")
        message = str(error.get("message") or "")
    elif error:
        error_type = "Error"
        message = str(error)
    else:
        error_type = None
    return TaskEnd(payload["id"], node, error_type, message[:500])


def decode_event(name: str, data: bytes) -> LangGraphEvent:
    """Decode one SSE event into a LangGraph event.

    Names may carry a namespace, `messages|research:<task id>` (docs/WIRE.md §7): match the prefix.
    Raises `StreamProtocolError` on bad JSON or a wrong shape, and nothing for an `error`
    event is a value here; the prober decides it ends the run).
    """
    base, _, ns = name.partition("|")
    ns_names = [node_path(part)[0] for part in ns.split("|")] if ns else []
    if base == "messages":
        return _message(name, ns_names, _loads(name, data))
    if base == "tasks":
        return _task(name, ns_names, _loads(name, data))
    if base == "metadata":
        payload = _loads(name, data)
        if not isinstance(payload, dict):
            raise StreamProtocolError("metadata event is not an object", phase="stream")
        run_id = payload.get("run_id")
        attempt = payload.get("attempt")
        return Metadata(
            run_id if isinstance(run_id, str) else None,
            attempt if isinstance(attempt, int) else None,
        )
    if base == "error":
        try:
            payload = _parse(data)
        except (ValueError, RecursionError):
            payload = {"error": "Error", "message": data[:500].decode("utf-8", "replace")}
        if not isinstance(payload, dict):
            # The JS server may send a bare JSON string: `data: "Run not found"` (docs/WIRE.md §8).
            payload = {"error": "Error", "message": str(payload)[:500]}
        return RunError(str(payload.get("error") or "Error"), str(payload.get("message") or ""))
    if base == "end":
        return End()
    return Other(base)
