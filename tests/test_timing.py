"""The timing model on hand-built events with exact stamps: TTFT, ITL, TPOT, attribution, verdicts."""

from __future__ import annotations

import orjson
import pytest

from exporter.core.errors import FailureKind
from exporter.core.events import decode_event
from exporter.core.timing import Expectations, Timeline

MS = 1_000_000


def msg(node: str, content: str, *, mid: str, task: str, ns: str | None = None, **extra: object):
    """A `messages` event payload as the server sends it (docs/WIRE.md §3)."""
    cns = f"{ns}|{node}:{task}" if ns else f"{node}:{task}"
    kind = extra.pop("type", "AIMessageChunk")
    chunk: dict[str, object] = {
        "content": content,
        "type": kind,
        "id": mid,
        "usage_metadata": extra.pop("usage", None),
        "chunk_position": extra.pop("chunk_position", None),
    }
    meta: dict[str, object] = {"langgraph_node": node, "langgraph_checkpoint_ns": cns}
    if kind == "AIMessageChunk":
        # A streamed chunk (docs/WIRE.md §5): tool-call fragments and the model's metadata.
        chunk["tool_call_chunks"] = extra.pop("tool_call_chunks", [])
        meta |= {"ls_model_name": "m", "ls_provider": "p", "ls_integration": "langchain_chat_model"}
    else:
        meta["ls_integration"] = "langgraph"  # a whole node-output message
    name = f"messages|{ns}" if ns else "messages"
    return name, orjson.dumps([chunk, meta])


def task(name: str, tid: str, *, start: bool, error: dict[str, str] | None = None):
    data = (
        {"id": tid, "name": name, "input": {}}
        if start
        else {"id": tid, "name": name, "error": error, "result": {}}
    )
    return "tasks", orjson.dumps(data)


def feed(tl: Timeline, stamped: list[tuple[int, tuple[str, bytes]]]) -> None:
    for seq, (t_ms, (name, data)) in enumerate(stamped):
        tl.event(name, decode_event(name, data), t_ms * MS, seq)


def one_call_run(gaps_ms: list[int], first_ms: int = 200) -> Timeline:
    tl = Timeline(0)
    events = [
        (100, ("metadata", b'{"run_id":"r","attempt":1}')),
        (101, task("agent", "t1", start=True)),
    ]
    t = 101 + first_ms
    events.append((t, msg("agent", "w0", mid="c1", task="t1")))
    for i, gap in enumerate(gaps_ms, 1):
        t += gap
        events.append((t, msg("agent", f"w{i}", mid="c1", task="t1")))
    events.append((t + 1, msg("agent", "", mid="c1", task="t1", usage={"output_tokens": 9})))
    events.append((t + 2, msg("agent", "", mid="c1", task="t1", chunk_position="last")))
    events.append((t + 3, task("agent", "t1", start=False)))
    feed(tl, events)
    return tl


def test_node_ttft_counts_from_the_tasks_start() -> None:
    """Node TTFT = first token minus the node's `tasks` start, not the request."""
    (node,) = one_call_run([30, 30]).nodes()
    assert node.ttft_s == pytest.approx(0.200)
    assert node.basis == "tasks"


def test_run_ttft_counts_from_the_request() -> None:
    """Run TTFT = first token minus t_request (queueing included)."""
    tl = one_call_run([30])
    assert tl.t_first_token_ns == 301 * MS


def test_itl_is_every_gap_of_one_call() -> None:
    """ITL observations are the gaps between consecutive tokens of the same call."""
    (node,) = one_call_run([30, 40, 50]).nodes()
    assert node.calls[0].itl_s == pytest.approx((0.030, 0.040, 0.050))


def test_empty_usage_and_last_chunks_are_not_tokens() -> None:
    """The usage chunk and the `chunk_position: last` chunk are not tokens (docs/WIRE.md §17)."""
    (node,) = one_call_run([30, 30]).nodes()
    assert node.calls[0].tokens == 3
    assert node.calls[0].completed


def test_tpot_uses_usage_output_tokens() -> None:
    """TPOT divides by usage_metadata.output_tokens - 1 when the model sent it."""
    (node,) = one_call_run([30, 30]).nodes()
    assert node.calls[0].tpot_s == pytest.approx(0.060 / 8)


def test_itl_never_spans_two_calls_of_one_node() -> None:
    """A second LLM call in the same node starts a new gap series; its TTFT counts from call 1's end."""
    tl = Timeline(0)
    feed(
        tl,
        [
            (0, task("agent", "t1", start=True)),
            (100, msg("agent", "a", mid="c1", task="t1")),
            (130, msg("agent", "b", mid="c1", task="t1")),
            (131, msg("agent", "", mid="c1", task="t1", chunk_position="last")),
            (500, msg("agent", "x", mid="c2", task="t1")),
            (520, msg("agent", "y", mid="c2", task="t1")),
        ],
    )
    (node,) = tl.nodes()
    assert [c.itl_s for c in node.calls] == [pytest.approx((0.030,)), pytest.approx((0.020,))]
    assert node.calls[1].ttft_s == pytest.approx(0.369)


def test_parallel_nodes_are_attributed_by_task_id() -> None:
    """Interleaved tokens of two parallel nodes each get their own gaps (docs/WIRE.md §6)."""
    tl = Timeline(0)
    feed(
        tl,
        [
            (0, task("writer_a", "ta", start=True)),
            (0, task("writer_b", "tb", start=True)),
            (100, msg("writer_b", "b0", mid="cb", task="tb")),
            (145, msg("writer_b", "b1", mid="cb", task="tb")),
            (200, msg("writer_a", "a0", mid="ca", task="ta")),
            (230, msg("writer_a", "a1", mid="ca", task="ta")),
            (232, msg("writer_b", "b2", mid="cb", task="tb")),
            (260, msg("writer_a", "a2", mid="ca", task="ta")),
        ],
    )
    nodes = {n.node: n for n in tl.nodes()}
    assert nodes["writer_a"].itl_s() == pytest.approx([0.030, 0.030])
    assert nodes["writer_b"].itl_s() == pytest.approx([0.045, 0.087])
    assert nodes["writer_a"].ttft_s == pytest.approx(0.200)


def test_subgraph_tokens_get_the_parent_child_path() -> None:
    """A subgraph LLM node is `parent/child` (docs/WIRE.md §7), joined to its namespaced tasks start."""
    tl = Timeline(0)
    name, data = msg("inner_agent", "x", mid="c", task="ti", ns="research:tr")
    feed(
        tl,
        [
            (
                0,
                (
                    "tasks|research:tr",
                    orjson.dumps({"id": "ti", "name": "inner_agent", "input": {}}),
                ),
            ),
            (150, (name, data)),
        ],
    )
    (node,) = tl.nodes()
    assert (node.node, node.ttft_s) == ("research/inner_agent", pytest.approx(0.150))


def test_whole_message_duplicate_of_a_streamed_one_is_ignored() -> None:
    """The node-output copy of a streamed message (docs/WIRE.md §5) adds no node and no text."""
    tl = one_call_run([30])
    name, data = msg("agent", "w0w1", mid="c1", task="t1", type="ai")
    tl.event(name, decode_event(name, data), 999 * MS, 99)
    assert tl.text == "w0w1"


def test_tokens_without_tasks_fall_back_to_previous_boundary() -> None:
    """Without a `tasks` start, node TTFT counts from the last boundary and says so."""
    tl = Timeline(0)
    feed(
        tl,
        [
            (100, ("metadata", b'{"run_id":"r"}')),
            (350, msg("agent", "x", mid="c", task="t")),
        ],
    )
    (node,) = tl.nodes()
    assert (node.basis, node.ttft_s) == ("previous_boundary", pytest.approx(0.250))


def test_tool_call_chunks_are_tokens() -> None:
    """A chunk with empty content but tool_call_chunks is a token (docs/WIRE.md §5)."""
    tl = Timeline(0)
    name, data = msg("agent", "", mid="c", task="t", tool_call_chunks=[{"args": "{"}])
    tl.event(name, decode_event(name, data), 5, 0)
    assert tl.tokens == 1


def test_burst_of_tokens_in_one_read_is_measured() -> None:
    """Tokens completed by one socket read count as a burst (the buffering indicator)."""
    tl = Timeline(0)
    for _i in range(3):
        name, data = msg("agent", "x", mid="c", task="t")
        tl.event(name, decode_event(name, data), 10, 4)
    name, data = msg("agent", "x", mid="c", task="t")
    tl.event(name, decode_event(name, data), 11, 5)
    assert tl.max_tokens_per_read == 3


def test_verdict_success_on_a_clean_run() -> None:
    """A complete run with tokens and met expectations is a success."""
    assert one_call_run([30]).verdict(Expectations()) is None


def test_verdict_incomplete_when_a_node_never_ended() -> None:
    """EOF with a node still open is `incomplete`: a cancelled run just ends (docs/WIRE.md §8)."""
    tl = Timeline(0)
    feed(tl, [(0, task("agent", "t1", start=True)), (100, msg("agent", "x", mid="c", task="t1"))])
    failure = tl.verdict(Expectations())
    assert failure is not None and failure.kind is FailureKind.INCOMPLETE


def test_verdict_run_error_keeps_the_server_error_type() -> None:
    """`event: error` is `run_error` with the server's error class (message may be masked)."""
    tl = one_call_run([30])
    tl.event(
        "error",
        decode_event(
            "error", b'{"error":"ProviderRateLimitError","message":"An internal error occurred"}'
        ),
        1,
        1,
    )
    failure = tl.verdict(Expectations())
    assert failure is not None
    assert (failure.kind, failure.error_type) == (FailureKind.RUN_ERROR, "ProviderRateLimitError")


def test_verdict_no_tokens() -> None:
    """A clean run with no token is `no_tokens`."""
    tl = Timeline(0)
    feed(tl, [(0, ("metadata", b"{}"))])
    failure = tl.verdict(Expectations())
    assert failure is not None and failure.kind is FailureKind.NO_TOKENS


@pytest.mark.parametrize(
    "expect",
    [Expectations(min_tokens=99), Expectations(nodes=("nope",)), Expectations(content_regex="zzz")],
    ids=["min-tokens", "nodes", "regex"],
)
def test_verdict_expectation_failures(expect: Expectations) -> None:
    """Each unmet expectation is an `expectation` failure."""
    failure = one_call_run([30]).verdict(expect)
    assert failure is not None and failure.kind is FailureKind.EXPECTATION
