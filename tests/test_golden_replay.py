"""Golden replay: SSE captures recorded from a real `langgraph dev` (tests/data/sse, see its README)
go through the decoder and the timing model, with the recorded chunking and arrival times."""

from __future__ import annotations

import random
import statistics
from pathlib import Path
from typing import Any

import orjson
import pytest

from exporter.core.errors import FailureKind
from exporter.core.events import decode_event
from exporter.core.sse import SSEDecoder
from exporter.core.timing import Expectations, Timeline

DATA = Path(__file__).parent / "data" / "sse"
CAPTURES = sorted(p.stem for p in DATA.glob("*.sse"))


def expected(name: str) -> list[tuple[str, Any]]:
    lines = (DATA / f"{name}.events.jsonl").read_bytes().splitlines()
    return [(e["event"], e["data"]) for e in map(orjson.loads, lines)]


def recorded_chunks(name: str) -> list[tuple[int, bytes]]:
    """The capture cut exactly as the network delivered it, with each read's arrival time."""
    body = (DATA / f"{name}.sse").read_bytes()
    out, pos = [], 0
    for line in (DATA / f"{name}.chunks.jsonl").read_bytes().splitlines():
        chunk = orjson.loads(line)
        out.append((chunk["t_ns"], body[pos : pos + chunk["len"]]))
        pos += chunk["len"]
    assert pos == len(body)
    return out


def decode_all(chunks: list[tuple[int, bytes]]) -> list[tuple[str, Any]]:
    dec = SSEDecoder()
    return [(e.event, orjson.loads(e.data)) for t, c in chunks for e in dec.feed(c, t)]


def test_there_are_captures() -> None:
    """The fixture set is present (a missing directory must not pass silently)."""
    assert len(CAPTURES) >= 8


@pytest.mark.parametrize("name", CAPTURES)
def test_recorded_chunking_decodes_to_the_recorded_events(name: str) -> None:
    """Decoding the capture read by read gives exactly the events the recorder saw."""
    assert decode_all(recorded_chunks(name)) == expected(name)


@pytest.mark.parametrize("name", CAPTURES)
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_chunking_decodes_the_same(name: str, seed: int) -> None:
    """Cut at random points (CRLF and UTF-8 sequences split too), the events are the same."""
    body = (DATA / f"{name}.sse").read_bytes()
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(body)), min(400, len(body) - 1)))
    chunks = [
        (i, body[a:b]) for i, (a, b) in enumerate(zip([0, *cuts], [*cuts, len(body)], strict=False))
    ]
    assert decode_all(chunks) == expected(name)


def replay(name: str) -> Timeline:
    """Feed the capture through decoder and timing model with the recorded arrival times."""
    tl = Timeline(0)
    dec = SSEDecoder()
    for t_ns, chunk in recorded_chunks(name):
        for e in dec.feed(chunk, t_ns):
            tl.event(e.event, decode_event(e.event, e.data), e.recv_ns, e.chunk_seq)
    return tl


def test_agent_capture_times_match_the_demo_model() -> None:
    """agent (200 ms first token, 30 ms gaps): node TTFT 200–215 ms, ITL median 30 ± 3 ms."""
    tl = replay("agent")
    agents = [n for n in tl.nodes() if n.node == "agent"]
    assert len(agents) == 2
    for n in agents:
        assert n.ttft_s is not None and 0.200 <= n.ttft_s <= 0.215
        assert abs(statistics.median(n.itl_s()) - 0.030) <= 0.003
    assert tl.verdict(Expectations(content_regex="foggy")) is None


def test_boom_capture_is_run_error_with_five_tokens() -> None:
    """boom: run_error RuntimeError, the five tokens before it kept (docs/WIRE.md §8)."""
    tl = replay("boom")
    failure = tl.verdict(Expectations())
    assert failure is not None
    assert (failure.kind, failure.error_type) == (FailureKind.RUN_ERROR, "RuntimeError")
    assert tl.tokens == 5


def test_nested_subgraph_capture_attributes_inner_tokens() -> None:
    """nested with subgraphs: the inner LLM node is `research/inner_agent`."""
    nodes = {n.node: n for n in replay("nested_subgraphs").nodes()}
    inner = nodes["research/inner_agent"]
    assert inner.tokens > 0 and inner.basis == "tasks"


def test_messages_only_capture_falls_back_without_tasks() -> None:
    """Without `tasks` events, node TTFT falls back to the previous boundary and says so."""
    nodes = [n for n in replay("agent_messages_only").nodes() if n.tokens]
    assert nodes and all(n.basis == "previous_boundary" for n in nodes)


def test_slow_capture_counts_heartbeats_and_still_succeeds() -> None:
    """slow: heartbeats arrive before the first token and are not tokens (docs/WIRE.md §2)."""
    dec = SSEDecoder()
    for t_ns, chunk in recorded_chunks("slow"):
        dec.feed(chunk, t_ns)
    assert dec.comments >= 1
    assert replay("slow").verdict(Expectations()) is None


# ------------------------------------------- real provider integrations (demo/PROVIDERS.md)


def llm_nodes(name: str) -> list[Any]:
    return [n for n in replay(name).nodes() if n.tokens]


@pytest.mark.parametrize("name", ["anthropic_thinking", "openai_responses"])
def test_reasoning_capture_ttft_is_the_first_reasoning_chunk(name: str) -> None:
    """Reasoning first at 150 ms, answer at 600 ms, 25 ms gaps (the recording's configured
    timings): node TTFT is the first reasoning chunk, answer TTFT the first text chunk, all 32
    streamed chunks are tokens, TPOT is 25 ms and the 175 ms switch shows in ITL."""
    (node,) = llm_nodes(name)
    (call,) = node.calls
    measured = (
        f"ttft {node.ttft_s}, answer {node.answer_ttft_s}, tokens {node.tokens}, "
        f"tpot {call.tpot_s} ({call.tpot_basis()}), max itl {max(node.itl_s())}"
    )
    assert node.ttft_s is not None and 0.149 <= node.ttft_s <= 0.165, measured
    assert node.answer_ttft_s is not None and 0.599 <= node.answer_ttft_s <= 0.620, measured
    assert (node.tokens, node.reasoning_tokens) == (32, 12), measured
    assert call.tpot_s is not None and abs(call.tpot_s - 0.025) <= 0.003, measured
    assert call.tpot_basis()[1] == "usage", measured
    assert 0.165 <= max(node.itl_s()) <= 0.200, measured
    assert abs(statistics.median(node.itl_s()) - 0.025) <= 0.003, measured
    tl = replay(name)
    assert tl.t_first_token_ns is not None and tl.t_first_answer_ns is not None
    assert tl.t_first_answer_ns - tl.t_first_token_ns >= 440_000_000, measured


def test_openai_chat_capture_counts_text_chunks_and_summed_usage() -> None:
    """Chat Completions: 20 text tokens, usage 20 on its own chunk, TPOT 25 ms, TTFT 150 ms."""
    (node,) = llm_nodes("openai_chat")
    (call,) = node.calls
    measured = f"ttft {node.ttft_s}, tokens {node.tokens}, usage {call.output_tokens}"
    assert node.tokens == 20 and call.output_tokens == 20, measured
    assert node.ttft_s is not None and 0.149 <= node.ttft_s <= 0.165, measured
    assert call.tpot_s is not None and abs(call.tpot_s - 0.025) <= 0.003, measured
    assert replay("openai_chat").verdict(Expectations()) is None


def test_anthropic_tools_capture_skips_the_empty_first_argument_fragment() -> None:
    """Tool use: the named tool chunk and 6 argument fragments are tokens, the empty first
    `input_json_delta` is not; usage 11 = 4 text + 1 + 6."""
    first, second = llm_nodes("anthropic_tools")
    (call,) = first.calls
    assert call.tokens == 11 and call.output_tokens == 11, call
    assert min(first.itl_s()) >= 0.010, f"spurious short gap: {min(first.itl_s())}"
    assert second.tokens == 20
    assert replay("anthropic_tools").verdict(Expectations()) is None


# ------------------------------------------- the LangGraph.js server (docs/WIRE.md §16)


@pytest.mark.parametrize("name", ["js_agent", "js_agent_thread"])
def test_js_agent_capture_is_timed_like_the_python_one(name: str) -> None:
    """`ai` chunks, no end markers, LF framing, no heartbeats: both agent turns are timed
    (node TTFT 200 ms less the JS server's late `tasks` start, ITL median 30 ± 3 ms), and the
    run ends cleanly at EOF."""
    tl = replay(name)
    agents = [n for n in tl.nodes() if n.node == "agent"]
    assert len(agents) == 2 and all(n.tokens for n in agents), agents
    for n in agents:
        measured = f"ttft {n.ttft_s}, itl median {statistics.median(n.itl_s())}"
        assert n.ttft_s is not None and 0.185 <= n.ttft_s <= 0.215, measured
        assert abs(statistics.median(n.itl_s()) - 0.030) <= 0.003, measured
        assert not any(c.completed for c in n.calls)  # JS marks no call end
    assert tl.verdict(Expectations(content_regex="foggy")) is None


def test_js_parallel_capture_gives_each_writer_its_own_gap() -> None:
    """writer_a (30 ms) and writer_b (45 ms) interleave on JS too; each node's ITL is its own."""
    nodes = {n.node: n for n in replay("js_parallel").nodes() if n.tokens}
    for node, gap in (("writer_a", 0.030), ("writer_b", 0.045)):
        median = statistics.median(nodes[node].itl_s())
        assert abs(median - gap) <= 0.003, (node, median)


def test_js_nested_capture_attributes_inner_tokens_to_the_subgraph_node() -> None:
    """The subgraph's LLM node is `research/inner_agent` on JS as on Python."""
    nodes = {n.node: n for n in replay("js_nested_subgraphs").nodes()}
    assert nodes["research/inner_agent"].tokens > 0, sorted(nodes)


def test_js_boom_capture_is_run_error_with_the_js_error_class() -> None:
    """boom on JS: `tasks` error `{message, name}` and `event: error` `Error`: run_error with
    the five tokens before it kept."""
    tl = replay("js_boom")
    failure = tl.verdict(Expectations())
    assert failure is not None
    assert (failure.kind, failure.error_type) == (FailureKind.RUN_ERROR, "Error")
    assert tl.tokens == 5
