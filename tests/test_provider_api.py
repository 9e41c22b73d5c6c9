"""The scripted provider API (demo/provider_api.py) over a real loopback socket, and the provider
graphs (demo/provider_graphs.py) calling it through the real integrations under `langgraph dev`.

Expected event sequences and field sets are those of the real APIs as the SDKs type them
(openai `ChatCompletionChunk`, `Response*Event`, `ResponseUsage`; anthropic `RawMessage*Event`,
`RawContentBlock*Event`, `MessageDeltaUsage`), which is also what the LangGraph-level captures
of these graphs show after the integrations have converted them."""

from __future__ import annotations

import itertools
import json
import statistics
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from provider_api import ProviderAPIProcess  # demo/ is on pythonpath (pyproject)

Event = tuple[float, str | None, str]  # (s after the request was sent, event name, data)

CHAT_CHUNK_FIELDS = {
    "id",
    "object",
    "created",
    "model",
    "service_tier",
    "system_fingerprint",
    "choices",
    "usage",
    "obfuscation",
}
CHOICE_FIELDS = {"index", "delta", "logprobs", "finish_reason"}
CHAT_USAGE_FIELDS = {
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "prompt_tokens_details",
    "completion_tokens_details",
}
RESPONSE_FIELDS = {
    "id",
    "object",
    "created_at",
    "status",
    "error",
    "incomplete_details",
    "instructions",
    "max_output_tokens",
    "model",
    "output",
    "parallel_tool_calls",
    "previous_response_id",
    "reasoning",
    "store",
    "temperature",
    "text",
    "tool_choice",
    "tools",
    "top_p",
    "truncation",
    "usage",
    "user",
    "metadata",
}
WEATHER_TOOL_OPENAI = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
WEATHER_TOOL_ANTHROPIC = {
    "name": "get_weather",
    "description": "Get the current weather for a city.",
    "input_schema": WEATHER_TOOL_OPENAI["function"]["parameters"],  # type: ignore[index]
}
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def api() -> Iterator[ProviderAPIProcess]:
    """The provider API in its own process (its timing does not share this process's GIL)."""
    with ProviderAPIProcess() as server:
        yield server


def stream(
    url: str, path: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> list[Event]:
    """POST and read the SSE body; each event stamped when the read completing it arrived."""
    events: list[Event] = []
    buf = b""
    with httpx.Client(trust_env=False, timeout=30) as client:
        request = client.build_request("POST", url + path, json=body, headers=headers or {})
        t0 = time.monotonic()
        response = client.send(request, stream=True)
        try:
            assert response.status_code == 200, response.read()
            assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
            for chunk in response.iter_raw():
                now = time.monotonic() - t0
                buf = (buf + chunk).replace(b"\r\n", b"\n")  # LangGraph frames with CRLF
                while b"\n\n" in buf:
                    block, buf = buf.split(b"\n\n", 1)
                    name, data = None, []
                    for line in block.decode().split("\n"):
                        field, _, value = line.partition(": ")
                        if field == "event":
                            name = value
                        elif field == "data":
                            data.append(value)
                    if data:  # a comment-only block (`: heartbeat`) is no event
                        events.append((now, name, "\n".join(data)))
        finally:
            response.close()
    assert buf == b"", f"trailing bytes without a blank line: {buf!r}"
    return events


def datas(events: list[Event]) -> list[dict[str, Any]]:
    return [json.loads(d) for _, _, d in events if d != "[DONE]"]


# ---------------------------------------------------------------------- OpenAI Chat Completions
def test_chat_completions_text_stream_has_the_real_shape(api: ProviderAPIProcess) -> None:
    """data-only SSE: role chunk (content ""), 20 deltas, finish chunk, usage chunk (choices []), [DONE]."""
    body = {"model": "gpt-4o-mini", "messages": HI, "stream": True}
    events = stream(
        api.url, "/v1/chat/completions", {**body, "stream_options": {"include_usage": True}}
    )
    assert {name for _, name, _ in events} == {None}, "Chat Completions sends no `event:` lines"
    assert events[-1][2] == "[DONE]"
    chunks = datas(events)
    assert all(set(c) == CHAT_CHUNK_FIELDS for c in chunks), [set(c) for c in chunks][:2]
    assert chunks[0]["object"] == "chat.completion.chunk"
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["id"].startswith("chatcmpl-")
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    text = [c["choices"][0]["delta"]["content"] for c in chunks[1:21]]
    assert (
        len(text) == 20
        and all(text)
        and all(set(c["choices"][0]) == CHOICE_FIELDS for c in chunks[:-1])
    )
    assert chunks[21]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert all(c["usage"] is None for c in chunks[:-1]), (
        "include_usage: usage is null until the last chunk"
    )
    usage_chunk = chunks[22]
    assert usage_chunk["choices"] == [] and set(usage_chunk["usage"]) == CHAT_USAGE_FIELDS
    assert usage_chunk["usage"]["completion_tokens"] == 20
    assert len(chunks) == 23

    plain = datas(stream(api.url, "/v1/chat/completions", body))
    assert all("usage" not in c for c in plain) and len(plain) == 22, (
        "no include_usage: no usage at all"
    )


def test_chat_completions_tool_call_stream(api: ProviderAPIProcess) -> None:
    """With tools: the role chunk carries tool_calls[0] (id, name, arguments ""), 6 argument deltas, finish tool_calls."""
    body = {
        "model": "gpt-4o-mini",
        "messages": HI,
        "tools": [WEATHER_TOOL_OPENAI],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    chunks = datas(stream(api.url, "/v1/chat/completions", body))
    first = chunks[0]["choices"][0]["delta"]
    assert first["role"] == "assistant" and first["content"] is None
    (call,) = first["tool_calls"]
    assert call["index"] == 0 and call["id"].startswith("call_") and call["type"] == "function"
    assert call["function"] == {"name": "get_weather", "arguments": ""}
    args = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks[1:7]]
    assert all(
        set(a) == {"index", "function"} and set(a["function"]) == {"arguments"} for a in args
    )
    assert json.loads("".join(a["function"]["arguments"] for a in args)) == {
        "city": "San Francisco"
    }
    assert chunks[7]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[8]["choices"] == [] and chunks[8]["usage"]["completion_tokens"] == 7

    followup = [
        *HI,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "foggy"},
    ]
    after = datas(stream(api.url, "/v1/chat/completions", {**body, "messages": followup}))
    assert after[-2]["choices"][0]["finish_reason"] == "stop", "after the tool result: text"


# ---------------------------------------------------------------------- OpenAI Responses
RESPONSES_SEQUENCE = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.reasoning_summary_part.added",
    *["response.reasoning_summary_text.delta"] * 12,
    "response.reasoning_summary_text.done",
    "response.reasoning_summary_part.done",
    "response.output_item.done",
    "response.output_item.added",
    "response.content_part.added",
    *["response.output_text.delta"] * 20,
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


def test_responses_stream_with_reasoning_summary_has_the_real_shape(
    api: ProviderAPIProcess,
) -> None:
    """created, in_progress, reasoning item with 12 summary deltas, message item with 20 text deltas, completed with usage whose reasoning_tokens (64) exceed the streamed summary."""
    body = {
        "model": "gpt-5-mini",
        "input": HI,
        "reasoning": {"effort": "low", "summary": "auto"},
        "stream": True,
    }
    events = stream(api.url, "/v1/responses", body)
    assert [name for _, name, _ in events] == RESPONSES_SEQUENCE
    data = datas(events)
    assert [d["type"] for d in data] == RESPONSES_SEQUENCE, "data.type repeats the event name"
    assert [d["sequence_number"] for d in data] == list(range(len(data)))
    created = data[0]["response"]
    assert set(created) >= RESPONSE_FIELDS and created["status"] == "in_progress"
    assert (
        created["id"].startswith("resp_") and created["output"] == [] and created["usage"] is None
    )
    assert data[2]["item"]["type"] == "reasoning" and data[2]["item"]["summary"] == []
    assert data[3]["part"] == {"type": "summary_text", "text": ""}
    summary = [d for d in data if d["type"] == "response.reasoning_summary_text.delta"]
    assert all(
        {"item_id", "output_index", "summary_index", "delta", "obfuscation"} <= set(d)
        for d in summary
    )
    text = [d for d in data if d["type"] == "response.output_text.delta"]
    assert all(
        {"item_id", "output_index", "content_index", "delta", "logprobs"} <= set(d) for d in text
    )
    assert text[0]["item_id"].startswith("msg_") and text[0]["output_index"] == 1
    done = data[-1]["response"]
    assert done["status"] == "completed" and [o["type"] for o in done["output"]] == [
        "reasoning",
        "message",
    ]
    assert done["output"][0]["summary"][0]["text"] == "".join(d["delta"] for d in summary)
    assert done["output"][1]["content"][0]["text"] == "".join(d["delta"] for d in text)
    usage = done["usage"]
    assert set(usage) == {
        "input_tokens",
        "input_tokens_details",
        "output_tokens",
        "output_tokens_details",
        "total_tokens",
    }
    hidden = usage["output_tokens_details"]["reasoning_tokens"]
    assert hidden == 64 > len(summary), "hidden reasoning: more reasoning tokens than streamed"
    assert usage["output_tokens"] == hidden + len(text)


def test_responses_without_reasoning_streams_only_the_message(api: ProviderAPIProcess) -> None:
    events = stream(
        api.url, "/v1/responses", {"model": "gpt-4o-mini", "input": "hi", "stream": True}
    )
    names = [name for _, name, _ in events]
    assert (
        "response.reasoning_summary_text.delta" not in names
        and names.count("response.output_text.delta") == 20
    )
    assert datas(events)[-1]["response"]["usage"]["output_tokens_details"]["reasoning_tokens"] == 0


# ---------------------------------------------------------------------- Anthropic Messages
def anthropic_body(**extra: Any) -> dict[str, Any]:
    return {
        "model": "claude-sonnet-4-6",
        "max_tokens": 2048,
        "messages": HI,
        "stream": True,
        **extra,
    }


def test_messages_stream_with_thinking_has_the_real_shape(api: ProviderAPIProcess) -> None:
    """message_start, thinking block (12 thinking_delta, a signature_delta), text block (20 text_delta), message_delta with cumulative usage, message_stop."""
    body = anthropic_body(thinking={"type": "enabled", "budget_tokens": 1024})
    events = stream(api.url, "/v1/messages", body)
    names = [name for _, name, _ in events]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * 13,
        "content_block_stop",
        "content_block_start",
        *["content_block_delta"] * 20,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert [e[2] for e in events if e[1] == "ping"] == ['{"type": "ping"}']
    data = datas(events)
    assert [d["type"] for d in data] == names
    message = data[0]["message"]
    assert set(message) == {
        "id",
        "type",
        "role",
        "model",
        "content",
        "stop_reason",
        "stop_sequence",
        "usage",
    }
    assert message["id"].startswith("msg_01") and message["content"] == []
    assert data[1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "thinking", "thinking": "", "signature": ""},
    }
    deltas = [d["delta"] for d in data if d["type"] == "content_block_delta"]
    assert [d["type"] for d in deltas] == ["thinking_delta"] * 12 + ["signature_delta"] + [
        "text_delta"
    ] * 20
    assert data[17]["content_block"] == {"type": "text", "text": ""} and data[17]["index"] == 1
    end = data[-2]
    assert end["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert end["usage"]["output_tokens"] == 32 and end["usage"]["output_tokens_details"] == {
        "thinking_tokens": 12
    }


def test_messages_stream_with_tool_use_starts_with_an_empty_input_json_delta(
    api: ProviderAPIProcess,
) -> None:
    """With tools: a text preamble block, then tool_use (input {}), an empty input_json_delta, 6 argument fragments, stop_reason tool_use."""
    events = stream(api.url, "/v1/messages", anthropic_body(tools=[WEATHER_TOOL_ANTHROPIC]))
    data = datas(events)
    starts = [d for d in data if d["type"] == "content_block_start"]
    assert [s["content_block"]["type"] for s in starts] == ["text", "tool_use"]
    tool_block = starts[1]["content_block"]
    assert set(tool_block) == {"type", "id", "name", "input"} and tool_block["input"] == {}
    assert tool_block["id"].startswith("toolu_01") and tool_block["name"] == "get_weather"
    fragments = [
        d["delta"]["partial_json"]
        for d in data
        if d["type"] == "content_block_delta" and d["index"] == 1
    ]
    assert fragments[0] == "" and len(fragments) == 7
    assert json.loads("".join(fragments)) == {"city": "San Francisco"}
    assert (
        data[-2]["delta"]["stop_reason"] == "tool_use"
        and "output_tokens_details" not in data[-2]["usage"]
    )

    followup = [
        *HI,
        {"role": "assistant", "content": [{**tool_block, "input": {"city": "San Francisco"}}]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": tool_block["id"], "content": "foggy"}
            ],
        },
    ]
    after = datas(
        stream(
            api.url,
            "/v1/messages",
            anthropic_body(tools=[WEATHER_TOOL_ANTHROPIC], messages=followup),
        )
    )
    assert (
        after[-2]["delta"]["stop_reason"] == "end_turn"
        and after[-2]["usage"]["output_tokens"] == 20
    )


def test_errors_are_in_the_provider_format(api: ProviderAPIProcess) -> None:
    with httpx.Client(trust_env=False) as client:
        r = client.post(
            api.url + "/v1/messages", json=anthropic_body(), headers={"x-script-gap-s": "soon"}
        )
        assert r.status_code == 400 and r.json()["type"] == "error"
        assert "x-script-gap-s" in r.json()["error"]["message"]
        r = client.post(api.url + "/v1/chat/completions", json={"model": "m", "messages": HI})
        assert r.status_code == 400 and "stream" in r.json()["error"]["message"]
        assert client.get(api.url + "/v1/nope").status_code == 404


# ---------------------------------------------------------------------- timing
def delta_times(events: list[Event], kinds: set[str]) -> list[float]:
    """Arrival times of the output deltas whose data `type` (or delta type) is in `kinds`."""
    out = []
    for t, _, d in events:
        if d == "[DONE]":
            continue
        obj = json.loads(d)
        kind = obj.get("type")
        if kind == "content_block_delta":
            kind = obj["delta"]["type"]
        if kind is None and obj.get("choices"):  # chat completions
            delta = obj["choices"][0]["delta"]
            kind = "chat_delta" if delta.get("content") or delta.get("tool_calls") else None
        if kind in kinds:
            out.append(t)
    return out


def check_slots(
    times: list[float], start_s: float, gap_s: float, what: str, slack_s: float = 0.1
) -> None:
    """Delta i arrives no earlier than start + i*gap (hard: the server sleeps until its slot
    after reading the request, which is after we sent it), and at most `slack_s` later."""
    for i, t in enumerate(times):
        slot = start_s + i * gap_s
        assert t >= slot, (
            f"{what} #{i} arrived at {t * 1000:.1f} ms, before its slot {slot * 1000:.1f} ms"
        )
        assert t <= slot + slack_s, (
            f"{what} #{i} arrived at {t * 1000:.1f} ms, slot {slot * 1000:.1f} ms (+{slack_s * 1000:.0f} ms allowed)"
        )
    gaps = [b - a for a, b in itertools.pairwise(times)]
    median = statistics.median(gaps)
    assert abs(median - gap_s) <= 0.005, (
        f"{what}: median gap {median * 1000:.1f} ms, configured {gap_s * 1000:.0f} ms (gaps {[round(g * 1000, 1) for g in gaps]})"
    )


TIMING = {"x-script-first-output-s": "0.2", "x-script-answer-s": "0.7", "x-script-gap-s": "0.03"}


@pytest.mark.timing
def test_chat_completions_timing_follows_the_headers(api: ProviderAPIProcess) -> None:
    body = {"model": "gpt-4o-mini", "messages": HI, "stream": True}
    times = delta_times(stream(api.url, "/v1/chat/completions", body, TIMING), {"chat_delta"})
    assert len(times) == 20
    check_slots(times, 0.2, 0.03, "chat text delta")


@pytest.mark.timing
def test_responses_timing_follows_the_headers(api: ProviderAPIProcess) -> None:
    body = {"model": "gpt-5-mini", "input": "hi", "reasoning": {"summary": "auto"}, "stream": True}
    events = stream(api.url, "/v1/responses", body, TIMING)
    check_slots(
        delta_times(events, {"response.reasoning_summary_text.delta"}),
        0.2,
        0.03,
        "reasoning summary delta",
    )
    check_slots(delta_times(events, {"response.output_text.delta"}), 0.7, 0.03, "output text delta")


@pytest.mark.timing
def test_messages_timing_follows_the_model_name_suffix(api: ProviderAPIProcess) -> None:
    """The same knobs as a model-name suffix; the echoed model name has no suffix."""
    body = anthropic_body(
        model="claude-sonnet-4-6@first_output_s=0.2,answer_s=0.7,gap_s=0.03",
        thinking={"type": "enabled", "budget_tokens": 1024},
    )
    events = stream(api.url, "/v1/messages", body)
    assert datas(events)[0]["message"]["model"] == "claude-sonnet-4-6"
    check_slots(delta_times(events, {"thinking_delta"}), 0.2, 0.03, "thinking delta")
    check_slots(delta_times(events, {"text_delta"}), 0.7, 0.03, "text delta")


@pytest.mark.timing
def test_defaults_and_env_defaults() -> None:
    """Defaults: reasoning from 150 ms, answer from 600 ms, 25 ms apart; PROVIDER_API_* env overrides them."""
    body = {"model": "gpt-5-mini", "input": "hi", "reasoning": {"summary": "auto"}, "stream": True}
    with ProviderAPIProcess() as api:
        events = stream(api.url, "/v1/responses", body)
    check_slots(
        delta_times(events, {"response.reasoning_summary_text.delta"}),
        0.15,
        0.025,
        "default reasoning delta",
    )
    check_slots(
        delta_times(events, {"response.output_text.delta"}), 0.6, 0.025, "default text delta"
    )
    env = {
        "PROVIDER_API_FIRST_OUTPUT_S": "0.1",
        "PROVIDER_API_GAP_S": "0.04",
        "PROVIDER_API_N_TEXT": "8",
    }
    with ProviderAPIProcess(env=env) as api:
        times = delta_times(
            stream(api.url, "/v1/chat/completions", {"model": "m", "messages": HI, "stream": True}),
            {"chat_delta"},
        )
    assert len(times) == 8
    check_slots(times, 0.1, 0.04, "env-configured chat delta")


# ---------------------------------------------------------------------- through langgraph dev
def run_graph(url: str, graph: str, configurable: dict[str, Any]) -> list[tuple[float, str, Any]]:
    body = {
        "assistant_id": graph,
        "input": {"messages": [{"role": "human", "content": "what's the weather in sf?"}]},
        "stream_mode": ["messages-tuple", "tasks"],
        "config": {"configurable": configurable},
    }
    return [
        (t, name or "message", json.loads(d)) for t, name, d in stream(url, "/runs/stream", body)
    ]


def ai_chunks(events: list[tuple[float, str, Any]]) -> list[tuple[float, dict[str, Any]]]:
    return [
        (t, d[0])
        for t, name, d in events
        if name == "messages" and d[0]["type"] == "AIMessageChunk"
    ]


def blocks(
    chunks: list[tuple[float, dict[str, Any]]], kind: str
) -> list[tuple[float, dict[str, Any]]]:
    return [
        (t, b)
        for t, c in chunks
        if isinstance(c["content"], list)
        for b in c["content"]
        if b.get("type") == kind
    ]


def node_start(events: list[tuple[float, str, Any]], node: str) -> float:
    return next(
        t for t, name, d in events if name == "tasks" and d["name"] == node and "input" in d
    )


@pytest.mark.integration
@pytest.mark.slow
def test_provider_graphs_put_the_provider_shapes_on_the_langgraph_wire() -> None:
    """Each provider graph on a real `langgraph dev` (DevServer starts the provider API): reasoning blocks, tool_call_chunks and usage_metadata with output_token_details.reasoning reach the messages stream, after the configured first-output time."""
    from devserver import DevServer

    conf = {"first_output_s": 0.12, "answer_s": 0.4, "gap_s": 0.02}
    with DevServer() as server:
        assert server.provider_url and server.provider_url.startswith("http://127.0.0.1:")
        failures = []

        # openai_chat: string content, one id, usage on a content-less chunk, then `last`.
        ev = run_graph(server.url, "openai_chat", conf)
        chunks = ai_chunks(ev)
        text = [(t, c) for t, c in chunks if c["content"]]
        assert len(text) == 20 and all(isinstance(c["content"], str) for _, c in chunks)
        assert len({c["id"] for _, c in chunks}) == 1 and chunks[0][1]["id"].startswith("lc_run--")
        usage = [c["usage_metadata"] for _, c in chunks if c["usage_metadata"]]
        assert (
            usage == [{**usage[0], "output_tokens": 20}]
            and usage[0]["output_token_details"]["reasoning"] == 0
        )
        assert chunks[-1][1]["chunk_position"] == "last"
        ttft = text[0][0] - node_start(ev, "llm")
        if ttft < 0.12:
            failures.append(
                f"openai_chat: first text {ttft * 1000:.1f} ms after the llm task start, configured 120 ms"
            )

        # openai_responses: resp_ id first, reasoning blocks with the summary text nested, text blocks, usage+last.
        ev = run_graph(server.url, "openai_responses", conf)
        chunks = ai_chunks(ev)
        assert chunks[0][1]["id"].startswith("resp_") and all(
            c["id"].startswith("lc_run--") for _, c in chunks[1:]
        )
        summary = [
            (t, s["text"])
            for t, b in blocks(chunks, "reasoning")
            for s in b.get("summary", [])
            if s["text"]
        ]
        assert len(summary) == 12, summary
        assert len([b for _, b in blocks(chunks, "text") if b["text"]]) == 20
        last = chunks[-1][1]
        assert (
            last["chunk_position"] == "last"
            and last["usage_metadata"]["output_token_details"]["reasoning"] == 64
        )
        ttft = summary[0][0] - node_start(ev, "llm")
        if ttft < 0.12:
            failures.append(
                f"openai_responses: first reasoning {ttft * 1000:.1f} ms after the task start, configured 120 ms"
            )

        # openai_responses under output_version v0: the summary moves to additional_kwargs.reasoning.
        chunks = ai_chunks(
            run_graph(server.url, "openai_responses", {**conf, "output_version": "v0"})
        )
        v0 = [
            c["additional_kwargs"]["reasoning"]
            for _, c in chunks
            if "reasoning" in c["additional_kwargs"]
        ]
        assert v0 and any(s.get("text") for r in v0 for s in r.get("summary", [])), v0[:3]

        # anthropic_thinking: thinking blocks, one signature block, text blocks, usage with reasoning on the last chunk.
        ev = run_graph(server.url, "anthropic_thinking", conf)
        chunks = ai_chunks(ev)
        thinking = [(t, b) for t, b in blocks(chunks, "thinking") if b.get("thinking")]
        assert (
            len(thinking) == 12
            and sum("signature" in b for _, b in blocks(chunks, "thinking")) == 1
        )
        text_blocks = [(t, b) for t, b in blocks(chunks, "text") if b["text"]]
        assert len(text_blocks) == 20
        last = chunks[-1][1]
        assert last["chunk_position"] == "last" and last["usage_metadata"][
            "output_token_details"
        ] == {"reasoning": 12}
        start = node_start(ev, "llm")
        if thinking[0][0] - start < 0.12 or text_blocks[0][0] - start < 0.4:
            failures.append(
                f"anthropic_thinking: thinking at {(thinking[0][0] - start) * 1000:.1f} ms, text at "
                f"{(text_blocks[0][0] - start) * 1000:.1f} ms after the task start (configured 120 / 400 ms)"
            )

        # anthropic_tools: tool_use block + tool_call_chunks, the empty first input_json_delta, a ToolMessage, two calls.
        ev = run_graph(server.url, "anthropic_tools", conf)
        chunks = ai_chunks(ev)
        tcc = [c["tool_call_chunks"][0] for _, c in chunks if c["tool_call_chunks"]]
        assert tcc[0]["name"] == "get_weather" and tcc[0]["id"].startswith("toolu_")
        fragments = [b["partial_json"] for _, b in blocks(chunks, "input_json_delta")]
        assert fragments[0] == "" and json.loads("".join(fragments)) == {"city": "San Francisco"}
        assert [
            d[0]["type"] for _, name, d in ev if name == "messages" and d[0]["type"] == "tool"
        ] == ["tool"]
        usage = [c["usage_metadata"]["output_tokens"] for _, c in chunks if c["usage_metadata"]]
        assert usage == [11, 20] and sum(c["chunk_position"] == "last" for _, c in chunks) == 2

    assert not failures, "; ".join(failures)
