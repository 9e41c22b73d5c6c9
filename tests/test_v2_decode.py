"""The v2 decoder and timing model on bytes captured from a real `langgraph dev` (0.16.7).

tests/data/v2/ holds the de-chunked SSE bodies (`*.v2.sse`) and, per event, the capture's own
receive time in ms (`*.v2.events.jsonl`, `t_ms`): the events are replayed through the real SSE
decoder with those receive times, so the 20 ms delivery quantisation of the capture is in them.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from exporter.config import Target
from exporter.core.errors import FailureKind, StreamProtocolError
from exporter.core.result import Failure
from exporter.core.sse import SSEDecoder
from exporter.core.timing import Expectations
from exporter.core.v2events import V2MessageEvent, decode_v2_event, derived
from exporter.core.v2timing import ROOT_NODE, V2Timeline, delivery_verdict
from exporter.probe.run import explain_ending
from exporter.probe.v2 import _command_error

DATA = Path(__file__).parent / "data" / "v2"


def replay(graph: str) -> V2Timeline:
    events = SSEDecoder().feed((DATA / f"v2-{graph}.v2.sse").read_bytes(), 0)
    lines = (DATA / f"v2-{graph}.v2.events.jsonl").read_bytes().splitlines()
    recv_ms = [j["t_ms"] for j in map(orjson.loads, lines) if "seq" in j]
    assert len(recv_ms) == len(events)
    tl = V2Timeline(0)
    for seq, (ev, t_ms) in enumerate(zip(events, recv_ms, strict=True)):
        tl.event(decode_v2_event(ev.event, ev.data), int(t_ms * 1e6), seq)
    return tl


def test_agent_calls_are_split_by_root_superstep_with_their_token_counts() -> None:
    """Two agent turns: the tool call (5 chunks) and the answer (12), in two root supersteps."""
    tl = replay("agent")
    nodes = tl.nodes()
    assert [n.node for n in nodes] == [ROOT_NODE, ROOT_NODE]
    assert [[c.tokens for c in n.calls] for n in nodes] == [[5], [12]]
    assert all(c.completed and c.model == "fake-stream-1" for n in nodes for c in n.calls)
    assert tl.root_status == "completed" and tl.text.endswith("light breeze.")


def test_first_token_is_stamped_at_message_start() -> None:
    """The capture received `message-start` at 751.83 ms: that is the run's first token."""
    tl = replay("agent")
    assert tl.t_first_token_ns == int(751.83 * 1e6)


def test_server_gaps_are_steady_while_received_gaps_show_the_20ms_poll() -> None:
    """Server gaps 30–32 ms; received gaps alternate ~20/~40 ms, so |jitter| ~10 ms."""
    call = replay("agent").nodes()[1].calls[0]
    assert all(0.029 <= g <= 0.033 for g in call.server_itl_s), call.server_itl_s
    assert sum(1 for g in call.itl_s if g < 0.025) >= 4, call.itl_s
    assert min(abs(j) for j in call.jitter_s) >= 0.005, call.jitter_s


def test_delivery_verdict_is_buffered_on_the_capture_and_steady_on_exact_gaps() -> None:
    delivery = replay("agent").delivery()
    assert delivery.verdict == "buffered"
    assert min(delivery.event_lag_s) == 0.0 and max(delivery.event_lag_s) > 0.015
    assert delivery_verdict((0.001, -0.0005, 0.0, 0.0012), (0.03, 0.03, 0.03, 0.03)) == "steady"
    assert delivery_verdict((0.001,), (0.03,)) == "unknown"


def test_server_ttft_of_the_first_call_is_the_models_first_token_delay() -> None:
    """The capture's model waits 200 ms before its first chunk (the recording server's demo graph)."""
    first = replay("agent").nodes()[0]
    assert first.server_ttft_s is not None and 0.200 <= first.server_ttft_s <= 0.205


def test_interleaved_calls_are_counted_but_never_given_an_itl() -> None:
    """parallel: two calls stream at once in namespace []; their deltas carry no id."""
    tl = replay("parallel")
    (node,) = tl.nodes()
    ambiguous = [c for c in node.calls if c.ambiguous]
    assert len(ambiguous) == 1 and ambiguous[0].itl_s == () and ambiguous[0].tpot_s is None
    assert sum(c.tokens for c in node.calls) == 17 == tl.tokens
    assert any("cannot tell their tokens apart" in n for n in tl.notes)
    # Each call's first token (at its own message-start) is still its own: two TTFTs.
    assert sum(1 for c in node.calls if not c.ambiguous and c.ttft_s is not None) == 2


def test_subgraph_calls_are_attributed_to_the_parent_node_with_its_task_id() -> None:
    nodes = replay("nested").nodes()
    research = [n for n in nodes if n.node == "research"]
    assert len(research) == 1 and research[0].task_id == "5f9f0da2-0eb3-eff9-4c1c-4f3999b05505"
    assert research[0].basis == "lifecycle" and research[0].calls[0].model == "fake-inner"
    assert research[0].end_ns is not None  # the namespace's lifecycle `completed`


def test_root_lifecycle_failed_is_a_run_error_with_the_servers_message() -> None:
    tl = replay("boom")
    failure = tl.verdict(Expectations(), interrupt_expected=False)
    assert failure is not None and failure.kind == FailureKind.RUN_ERROR
    assert "simulated provider failure after 5 chunks" in failure.message
    assert tl.tokens == 5


def test_a_tool_call_block_start_is_a_token_and_an_empty_text_block_start_is_not() -> None:
    def msg(data: dict[str, object], event_id: str = "1-0") -> V2MessageEvent:
        env = {"type": "event", "event_id": event_id, "seq": 1, "method": "messages",
               "params": {"namespace": [], "timestamp": 1, "data": data}}  # fmt: skip
        ev = decode_v2_event("messages", orjson.dumps(env))
        assert isinstance(ev, V2MessageEvent)
        return ev

    tool = {"type": "tool_call_chunk", "id": "c", "name": "get_weather", "args": ""}
    assert msg({"event": "content-block-start", "index": 0, "content": tool}).is_token
    text = {"type": "text", "text": ""}
    assert not msg({"event": "content-block-start", "index": 0, "content": text}).is_token
    finish = msg({"event": "message-finish", "usage": {"output_tokens": 4},
                  "metadata": {"model_name": "m", "model_provider": "p"}})  # fmt: skip
    assert (finish.output_tokens, finish.model, finish.provider) == (4, "m", "p")


def test_only_the_event_id_suffix_marks_a_second_envelope_of_one_source() -> None:
    assert derived("1795985071013-0.2")
    assert not derived("1795985071013-0")
    assert not derived("synth:01a2290d-58cc-72ee-9d27-a5cf35794792:lc||running")
    assert not derived(None)


@pytest.mark.parametrize("data", [b'{"event":"x"}', b"[1,2]", b'{"type":"error","id":1}'])
def test_a_body_that_is_not_a_v2_envelope_is_a_protocol_error(data: bytes) -> None:
    with pytest.raises(StreamProtocolError):
        decode_v2_event("messages", data)


def test_a_legacy_message_tuple_is_a_protocol_error_on_the_v2_decoder() -> None:
    with pytest.raises(StreamProtocolError, match="v2 envelope"):
        decode_v2_event("messages", b'[{"type":"AIMessageChunk"},{}]')


def test_a_refused_run_start_keeps_the_wrapped_http_status() -> None:
    """`run.start` errors come back as HTTP 200 with the status inside the message."""
    # The capture is the body, then the HTTP status the server answered with.
    body, _, status = (DATA / "v2-err-unknown-assistant.body").read_bytes().strip().rpartition(b" ")
    assert status == b"200"
    refused = _command_error(body)
    assert refused is not None and refused.http_status == 422
    assert refused.kind == FailureKind.HTTP_STATUS and "Invalid assistant" in refused.message
    assert _command_error(b'{"type":"success","id":1,"result":{"run_id":"r"}}') is None


def test_the_v2_marker_on_the_legacy_protocol_is_rejected_at_load() -> None:
    base = {"name": "t", "url": "http://127.0.0.1:1", "assistant_id": "agent",
            "config": {"configurable": {"__event_streaming_v2": True}}}  # fmt: skip
    with pytest.raises(ValueError, match="use `protocol: v2`"):
        Target.model_validate({**base, "protocol": "legacy"})
    with pytest.raises(ValueError, match="use `protocol: v2`"):
        Target.model_validate(base)  # legacy is the default
    assert Target.model_validate({**base, "protocol": "auto"}).protocol == "auto"


def test_an_ending_named_by_the_server_explains_an_incomplete_stream() -> None:
    incomplete = Failure(FailureKind.INCOMPLETE, "stream ended early: node 'agent' started")
    timed_out = explain_ending(incomplete, "timeout", interrupt_expected=False)
    assert timed_out is not None and "job timeout" in timed_out.message
    assert timed_out.kind == FailureKind.INCOMPLETE
    assert explain_ending(incomplete, "interrupted", interrupt_expected=True) is None
    missing = explain_ending(None, "success", interrupt_expected=True)
    assert missing is not None and missing.kind == FailureKind.EXPECTATION
    assert explain_ending(None, None, interrupt_expected=False) is None
