"""The timing model on the chunk shapes real deployments send (docs/WIRE.md §5, §6, §12, §13).

Every event is built as the server puts it on the wire, fed with exact stamps: the JS server's
`ai` chunks, reasoning in its several shapes, tool-call fragments, usage split over chunks, older
servers without `tasks` or end markers, and buffered delivery.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from exporter.core.errors import FailureKind
from exporter.core.events import Message, decode_event
from exporter.core.result import ProbeResult
from exporter.core.timing import Expectations, Timeline

MS = 1_000_000

CHAT_MODEL = {"ls_integration": "langchain_chat_model", "ls_model_name": "m", "ls_provider": "p"}


def chunk(
    content: Any,
    *,
    mid: str = "c1",
    task: str = "t1",
    node: str = "agent",
    js: bool = False,
    **fields: Any,
) -> tuple[str, bytes]:
    """One streamed chunk: Python's `AIMessageChunk`, or the JS server's `ai` (docs/WIRE.md §5)."""
    msg: dict[str, Any] = {
        "content": content,
        "type": "ai" if js else "AIMessageChunk",
        "id": mid,
        "tool_call_chunks": fields.pop("tool_call_chunks", []),
        "additional_kwargs": fields.pop("additional_kwargs", {}),
        **fields,
    }
    if not js:
        msg.setdefault("chunk_position", None)
    meta = {"langgraph_node": node, "langgraph_checkpoint_ns": f"{node}:{task}", **CHAT_MODEL}
    return "messages", orjson.dumps([msg, meta])


def whole(content: str, *, mid: str, node: str = "agent", task: str = "t1") -> tuple[str, bytes]:
    """A whole node-output message as the JS server sends it: `ai`, integration `langgraph`."""
    msg = {"content": content, "type": "ai", "id": mid, "additional_kwargs": {}}
    meta = {
        "langgraph_node": node,
        "langgraph_checkpoint_ns": f"{node}:{task}",
        "ls_integration": "langgraph",
    }
    return "messages", orjson.dumps([msg, meta])


def task(name: str, tid: str = "t1", *, start: bool, error: Any = None) -> tuple[str, bytes]:
    if start:
        return "tasks", orjson.dumps({"id": tid, "name": name, "input": {}})
    return "tasks", orjson.dumps({"id": tid, "name": name, "error": error, "result": {}})


META = ("metadata", b'{"run_id":"r","attempt":1}')


def run(events: list[tuple[float, tuple[str, bytes]]], *, same_read: bool = False) -> Timeline:
    """Feed `(ms, event)` pairs to a timeline whose request was at 0 ms."""
    tl = Timeline(0)
    for seq, (t_ms, (name, data)) in enumerate(events):
        tl.event(name, decode_event(name, data), int(t_ms * MS), 0 if same_read else seq)
    return tl


def result_of(tl: Timeline, end_ms: float) -> ProbeResult:
    return ProbeResult(
        target="t",
        url="http://x",
        assistant_id="a",
        mode="stateless",
        t_request_ns=0,
        wall_request_ns=0,
        t_end_ns=int(end_ms * MS),
        failure=tl.verdict(Expectations()),
        nodes=tl.nodes(),
        max_tokens_per_read=tl.max_tokens_per_read,
        t_first_token_ns=tl.t_first_token_ns,
        t_first_answer_ns=tl.t_first_answer_ns,
    )


# ------------------------------------------------------------------ the LangGraph.js server


def js_agent_run() -> Timeline:
    """The JS shape: `ai` chunks, no `chunk_position`, a whole `ai` node output (docs/WIRE.md §5)."""
    return run(
        [
            (1, META),
            (2, task("agent", start=True)),
            (202, chunk("It's", js=True)),
            (232, chunk(" 60", js=True)),
            (262, chunk(" degrees", js=True)),
            (263, chunk("", js=True, usage_metadata={"input_tokens": 5, "output_tokens": 3})),
            (264, whole("It's 60 degrees", mid="c1")),
            (265, task("agent", start=False)),
        ]
    )


def test_js_ai_chunks_are_tokens() -> None:
    """Chunks typed `ai` with a chat-model integration are tokens (the JS server, docs/WIRE.md §5)."""
    (node,) = js_agent_run().nodes()
    assert node.tokens == 3
    assert node.ttft_s == pytest.approx(0.200)


def test_js_whole_ai_message_is_not_a_token() -> None:
    """A whole `ai` node output (`ls_integration: langgraph`) adds no token and no text."""
    tl = js_agent_run()
    assert tl.tokens == 3 and tl.text == "It's 60 degrees"


def test_js_run_without_end_markers_ends_cleanly_at_eof() -> None:
    """No `chunk_position` anywhere: the call is not 'never finished' at a clean EOF."""
    assert js_agent_run().verdict(Expectations()) is None


def test_js_task_error_shape_gives_the_error_name() -> None:
    """JS `tasks` errors are `{"message", "name"}` (docs/WIRE.md §5): the name is the error type."""
    tl = run(
        [
            (1, META),
            (2, task("agent", start=True)),
            (50, chunk("a", js=True)),
            (60, task("agent", start=False, error={"message": "boom", "name": "TypeError"})),
        ]
    )
    (node,) = tl.nodes()
    assert node.error_type == "TypeError"


def test_root_task_error_without_error_event_is_a_run_error() -> None:
    """A failed root node and a stream that just ends is a `run_error`, not a success."""
    tl = run(
        [
            (1, META),
            (2, task("agent", start=True)),
            (50, chunk("a", js=True)),
            (60, task("agent", start=False, error={"message": "boom", "name": "TypeError"})),
        ]
    )
    failure = tl.verdict(Expectations())
    assert failure is not None and failure.kind is FailureKind.RUN_ERROR
    assert failure.error_type == "TypeError" and "boom" in failure.message


def test_bare_json_string_error_event_is_a_run_error_with_its_message() -> None:
    """`event: error` / `data: "Run not found"` (JS, docs/WIRE.md §8) is a run error naming the message."""
    tl = run([(1, META), (2, task("agent", start=True)), (3, ("error", b'"Run not found"'))])
    failure = tl.verdict(Expectations())
    assert failure is not None and failure.kind is FailureKind.RUN_ERROR
    assert "Run not found" in failure.message


# ------------------------------------------------------------------ reasoning


def thinking(text: str) -> list[dict[str, Any]]:
    return [{"type": "thinking", "thinking": text, "index": 0}]


def text_block(text: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": text, "index": 1}]


def test_anthropic_thinking_counts_as_output_for_ttft() -> None:
    """Thinking at 100 ms, text from 900 ms: run TTFT 100 ms, 4 tokens, answer TTFT 900 ms."""
    tl = run(
        [
            (1, META),
            (2, task("agent", start=True)),
            (100, chunk(thinking("Let me"))),
            (130, chunk(thinking(" think"))),
            (900, chunk(text_block("It's"))),
            (930, chunk(text_block(" 60"))),
            (931, chunk([], chunk_position="last")),
            (932, task("agent", start=False)),
        ]
    )
    res = result_of(tl, 933)
    assert res.ttft_s == pytest.approx(0.100)
    assert res.answer_ttft_s == pytest.approx(0.900)
    assert res.tokens == 4
    (node,) = res.nodes
    assert node.reasoning_tokens == 2 and node.answer_ttft_s == pytest.approx(0.898)
    assert tl.text == "It's 60"  # reasoning is not answer text


@pytest.mark.parametrize(
    "content, extra",
    [
        ([{"type": "reasoning", "reasoning": " user", "index": "lc_rs_1"}], {}),
        (
            [
                {
                    "type": "reasoning",
                    "index": 0,
                    "summary": [{"index": 0, "type": "summary_text", "text": "**Greeting**"}],
                }
            ],
            {},
        ),
        ([], {"additional_kwargs": {"reasoning_content": "step 1"}}),
        (
            [],
            {
                "additional_kwargs": {
                    "reasoning": {"summary": [{"type": "summary_text", "text": "hm"}]}
                }
            },
        ),
        ([{"type": "redacted_thinking", "data": "EqQBCgIYAh…"}], {}),
    ],
    ids=["v1-reasoning", "responses-summary", "reasoning_content", "kwargs-summary", "redacted"],
)
def test_every_reasoning_shape_is_a_reasoning_token(content: Any, extra: dict[str, Any]) -> None:
    """Reasoning reaches the stream in several shapes (docs/WIRE.md §13); each is a reasoning-only token."""
    name, data = chunk(content, **extra)
    ev = decode_event(name, data)
    assert isinstance(ev, Message)
    assert ev.is_token and not ev.is_answer


@pytest.mark.parametrize(
    "content",
    [
        [{"type": "thinking", "thinking": "", "index": 0}],
        [{"type": "thinking", "thinking": "", "signature": "Ep…", "index": 0}],
        [{"type": "reasoning", "summary": [], "id": "rs_1", "index": 0}],
        [{"type": "reasoning", "summary": [{"type": "summary_text", "text": ""}], "index": 0}],
        [],
    ],
    ids=["empty-thinking", "signature", "summary-opened", "summary-empty-part", "no-blocks"],
)
def test_empty_reasoning_blocks_are_not_tokens(content: Any) -> None:
    """A thinking block's signature or an opened summary carries no output."""
    ev = decode_event(*chunk(content))
    assert isinstance(ev, Message) and not ev.is_token


def reasoning_provider_run(*, hidden_reasoning: int) -> Timeline:
    """First output at 150 ms (12 reasoning chunks, 25 ms apart), answer from 600 ms (20 text
    chunks, 25 ms apart), usage on the last chunk: output 20 + 12 + hidden, reasoning 12 + hidden.
    """
    events: list[tuple[float, tuple[str, bytes]]] = [(1, META), (2, task("agent", start=True))]
    for i in range(12):
        events.append((2 + 150 + 25 * i, chunk(thinking(f"r{i}"))))
    for i in range(20):
        events.append((2 + 600 + 25 * i, chunk(text_block(f"w{i}"))))
    usage = {
        "input_tokens": 8,
        "output_tokens": 32 + hidden_reasoning,
        "output_token_details": {"reasoning": 12 + hidden_reasoning},
    }
    events.append((2 + 1080, chunk([], usage_metadata=usage, chunk_position="last")))
    events.append((2 + 1081, task("agent", start=False)))
    return run(events)


@pytest.mark.parametrize("hidden", [0, 52], ids=["anthropic-thinking", "openai-hidden-reasoning"])
def test_reasoning_model_node_ttft_tokens_and_tpot(hidden: int) -> None:
    """Node TTFT is the first reasoning chunk (150 ms), all 32 chunks are tokens, TPOT is 25 ms
    (hidden reasoning tokens are not divided over, the reasoning->answer pause is not decode)."""
    (node,) = reasoning_provider_run(hidden_reasoning=hidden).nodes()
    (call,) = node.calls
    assert node.ttft_s == pytest.approx(0.150)
    assert node.answer_ttft_s == pytest.approx(0.600)
    assert node.tokens == 32 and node.reasoning_tokens == 12
    assert call.tpot_s == pytest.approx(0.025)
    assert call.tpot_basis() == (32, "usage")


def test_pause_between_reasoning_and_answer_is_an_itl_gap() -> None:
    """ITL covers reasoning too: the 175 ms switch from reasoning to answer is one gap."""
    (node,) = reasoning_provider_run(hidden_reasoning=0).nodes()
    gaps = node.itl_s()
    assert len(gaps) == 31
    assert max(gaps) == pytest.approx(0.175)


# ------------------------------------------------------------------ tool calls, ids, usage


def test_empty_first_tool_argument_fragment_is_not_a_token() -> None:
    """Anthropic's first `input_json_delta` is empty (docs/WIRE.md §13): no token, no spurious gap."""
    empty = {"name": None, "args": "", "id": None, "index": 1, "type": "tool_call_chunk"}
    named = {"name": "get_weather", "args": "", "id": "toolu_1", "index": 1}
    args = {"name": None, "args": '{"city"', "id": None, "index": 1}
    tl = run(
        [
            (1, META),
            (2, task("agent", start=True)),
            (100, chunk([], tool_call_chunks=[named])),
            (
                101,
                chunk([{"partial_json": "", "type": "input_json_delta"}], tool_call_chunks=[empty]),
            ),
            (130, chunk([], tool_call_chunks=[args])),
        ]
    )
    (node,) = tl.nodes()
    assert node.tokens == 2
    assert node.itl_s() == [pytest.approx(0.030)]


def test_responses_api_call_under_two_message_ids_is_one_call() -> None:
    """The Responses API's first chunk has id `resp_…`, the rest `lc_run--…`: one call (docs/WIRE.md §13)."""
    tl = run(
        [
            (1, META),
            (2, task("agent", start=True)),
            (60, chunk([], mid="resp_1", response_metadata={"id": "resp_1"})),
            (150, chunk(text_block("Hi"), mid="lc_run--1")),
            (175, chunk(text_block("!"), mid="lc_run--1")),
            (176, chunk([], mid="lc_run--1", chunk_position="last")),
            (177, task("agent", start=False)),
        ]
    )
    (node,) = tl.nodes()
    assert len(node.calls) == 1 and node.calls[0].tokens == 2
    assert node.ttft_s == pytest.approx(0.148)


def test_usage_is_summed_over_a_calls_chunks() -> None:
    """Four chunks each with `output_tokens: 1` give N = 4 (langchain-core adds usage)."""
    one = {"input_tokens": 0, "output_tokens": 1, "total_tokens": 1}
    tl = run(
        [
            (1, META),
            (2, task("agent", start=True)),
            *[(100 + 20 * i, chunk(f"w{i}", usage_metadata=one)) for i in range(4)],
            (170, chunk("", chunk_position="last")),
            (171, task("agent", start=False)),
        ]
    )
    (call,) = tl.nodes()[0].calls
    assert call.output_tokens == 4
    assert call.tpot_s == pytest.approx(0.020)


# ------------------------------------------------------------------ older servers


def test_older_server_without_tasks_or_end_markers_ends_cleanly_at_eof() -> None:
    """No `tasks`, no `chunk_position` (langchain-core < 1.0): a clean EOF is a clean end."""
    tl = run(
        [
            (1, META),
            (200, chunk("It's")),
            (230, chunk(" 60")),
        ]
    )
    assert tl.verdict(Expectations()) is None
    (node,) = tl.nodes()
    assert node.basis == "previous_boundary" and node.ttft_s == pytest.approx(0.199)


def test_second_call_without_end_markers_counts_from_the_first_calls_last_token() -> None:
    """On a server without end markers a node's second call starts its TTFT at the first
    call's last token, not at the node's start."""
    tl = run(
        [
            (1, META),
            (2, task("agent", start=True)),
            (100, chunk("a", js=True, mid="c1")),
            (130, chunk("b", js=True, mid="c1")),
            (330, chunk("c", js=True, mid="c2")),
            (331, task("agent", start=False)),
        ]
    )
    _, second = tl.nodes()[0].calls
    assert second.ttft_s == pytest.approx(0.200)


# ------------------------------------------------------------------ buffered delivery


def test_store_and_forward_stream_is_buffered() -> None:
    """The whole stream in one read after 1.5 s: `buffered` with the reason."""
    events = [(1500.0, META), (1500.0, task("agent", start=True))]
    events += [(1500.0 + 0.01 * i, chunk(f"w{i}")) for i in range(12)]
    res = result_of(run(events, same_read=True), 1501)
    buffered, why = res.buffering()
    assert buffered, why
    assert res.to_dict()["buffered"] is True


def test_token_by_token_stream_is_not_buffered() -> None:
    """30 ms gaps, one token per read: not buffered."""
    events = [(1, META), (2, task("agent", start=True))]
    events += [(200.0 + 30 * i, chunk(f"w{i}")) for i in range(12)]
    res = result_of(run(events), 600)
    assert res.buffering() == (False, "")
