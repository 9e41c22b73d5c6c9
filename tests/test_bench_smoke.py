"""Smoke test of the benchmark harness: bench server + reference client, 2 streams for 3 s.

It checks that the harness's join works end to end, not performance: the bounds are loose.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench import harness

# A short stream (about 1 s, heartbeat every 0.5 s) so that 3 s of load runs several streams.
SHORT = [
    "--tokens-a", "20", "--tokens-b", "16", "--merge-ms", "100", "--heartbeat-s", "0.5",
]  # fmt: skip
LOOSE_NS = 50_000_000  # 50 ms


@pytest.fixture(scope="module")
def level(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One level, c=2 for 3 s: the reference client's phase as the harness reports it."""
    trace = Path(tmp_path_factory.mktemp("bench")) / "ref.jsonl"
    server = harness.start_server(SHORT)
    try:
        cmd = harness.client_cmd(harness.reference_base(), server.url, 2, 3.0, trace)
        result = harness.run_phase(server, cmd, trace, cpus=None, timeout_s=60)
    finally:
        server.stop()
    return result


@pytest.mark.slow
def test_join_finds_every_event_the_server_sent(level: dict[str, Any]) -> None:
    """Every event the server logged is matched by run id and index in the client's traces."""
    assert level["streams"] >= 2
    assert level["events_sent"] > 0
    assert (level["missing_events"], level["lost_streams"], level["extra_events"]) == (0, 0, 0)


@pytest.mark.slow
def test_every_event_error_is_below_50_ms(level: dict[str, Any]) -> None:
    """Receive minus true send stays within a loose 50 ms for every joined event."""
    err = level["error_ms"]
    assert err["n"] == level["events_sent"]
    assert -50 < err["min"] <= err["max"] < 50


@pytest.mark.slow
def test_nodes_and_calls_match_the_server(level: dict[str, Any]) -> None:
    """Node attribution is exact and every LLM call's TTFT and gaps are compared."""
    assert level["node_mismatches"] == 0
    assert (level["calls_missing"], level["token_count_mismatches"]) == (0, 0)
    assert level["ttft_error_ms"]["n"] == 2 * level["streams"]
    assert level["itl_error_ms"]["max"] < 50


@pytest.mark.slow
def test_heartbeats_are_sent_but_not_counted(level: dict[str, Any]) -> None:
    """The server sends heartbeat comments, and they do not shift the event indices."""
    assert level["heartbeats_sent"] >= level["streams"]
    assert level["stream_errors"] == {}


@pytest.mark.slow
def test_client_reports_cost(level: dict[str, Any]) -> None:
    """The client's summary line gives CPU per 10k events and peak RSS."""
    assert level["status"] == "ran"
    assert level["cpu_s_per_10k_events"] > 0
    assert level["peak_rss_mb"] > 0


def _server_stream(send: list[int], nodes: list[str | None]) -> dict[str, Any]:
    return {
        "run_id": "r1",
        "t0_ns": send[0],
        "sched_ns": send,
        "send_ns": send,
        "write_ns": [0] * len(send),
        "nodes": nodes,
        "kinds": "MST",
        "calls": [{"msg_id": "m1", "node": "a", "model": "x", "start_idx": 1, "token_idx": [2]}],
        "heartbeats": 0,
        "buffered": 0,
        "aborted": False,
    }


def test_analyze_counts_a_dropped_event_as_missing() -> None:
    """An event the server sent but the client never reported is counted as missing."""
    srv = _server_stream([0, 1_000, 2_000], [None, None, "a"])
    trace = {"run_id": "r1", "recv_ns": [10, 1_010], "nodes": [None, None], "calls": []}
    result = harness.analyze([srv], [trace])
    assert (result["missing_events"], result["calls_missing"]) == (1, 1)


def test_analyze_counts_a_wrong_node_and_measures_error() -> None:
    """A token reported under another node is a mismatch; its error is still recv - send."""
    srv = _server_stream([0, 1_000_000, 2_000_000], [None, None, "a"])
    call = {"msg_id": "m1", "tokens": 1, "ttft_s": 0.002, "itl_s": []}
    trace = {
        "run_id": "r1",
        "recv_ns": [0, 1_000_000, 3_000_000],
        "nodes": [None, None, "b"],
        "calls": [call],
    }
    result = harness.analyze([srv], [trace])
    assert result["node_mismatches"] == 1
    assert result["error_ms"]["max"] == 1.0
    assert result["ttft_error_ms"]["max"] == 1.0
