"""Load mode: the driver's bounds on a scripted server, and per-node ITL under load on a real
`langgraph dev`."""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from exporter.config import Target
from exporter.load import LoadOptions, StreamRecord, drive
from tests.support.scripted_server import ScriptedServer, langgraph_stream

NS = 1_000_000_000


def target(url: str) -> Target:
    return Target.model_validate(
        {"name": "load", "url": url, "assistant_id": "agent", "protocol": "legacy"}
    )


def max_overlap(results: list[StreamRecord]) -> int:
    """Most streams open at once, from each stream's own request and end stamps."""
    edges = sorted(
        [(r.t_request_ns, 1) for r in results] + [(r.t_end_ns, -1) for r in results],
        key=lambda e: (e[0], e[1]),
    )
    now = peak = 0
    for _, step in edges:
        now += step
        peak = max(peak, now)
    return peak


@pytest.fixture
async def server():
    async with ScriptedServer() as srv:
        # Each stream lasts about 0.4 s: many generations of streams fit in a short run.
        srv.route_stateless(lambda req: langgraph_stream(tokens=5, first_token_s=0.2, gap_s=0.04))
        yield srv


pytestmark = pytest.mark.anyio


async def test_never_more_than_concurrency_streams_open(server: ScriptedServer) -> None:
    """With C=3 over 1.5 s, at no instant are more than 3 streams open."""
    run = await drive(
        target(server.url), LoadOptions(concurrency=3, duration_s=1.5, progress=False)
    )
    assert len(run.records) > 3  # several generations ran
    assert max_overlap(run.records) <= 3
    assert run.max_open <= 3
    assert all(r.success for r in run.records)


async def test_no_stream_starts_after_the_duration(server: ScriptedServer) -> None:
    """Every request was sent within the duration; the run then waits for open streams."""
    run = await drive(
        target(server.url), LoadOptions(concurrency=2, duration_s=1.0, progress=False)
    )
    first = min(r.t_request_ns for r in run.records)
    last = max(r.t_request_ns for r in run.records)
    assert (last - first) / NS < 1.0
    assert run.last_start_s < 1.0


async def test_stops_starting_after_max_streams(server: ScriptedServer) -> None:
    """With N=4 and a long duration, exactly 4 streams run and the run ends early."""
    run = await drive(
        target(server.url),
        LoadOptions(concurrency=2, duration_s=60, max_streams=4, progress=False),
    )
    assert len(run.records) == 4
    assert len(server.requests) == 4
    assert run.wall_s < 10


async def test_first_starts_are_spread_over_one_second(server: ScriptedServer) -> None:
    """The first C starts ramp over one second: the i-th is at least i/C s after the first."""
    c = 4
    run = await drive(
        target(server.url),
        LoadOptions(concurrency=c, duration_s=3, max_streams=c, progress=False),
    )
    starts = sorted(r.t_request_ns for r in run.records)
    for i, t in enumerate(starts):
        # 20 ms: the first stream's one-off set-up (first request built, first connect) delays
        # its t_request more than the others'; the spread being tested is 250 ms per start.
        assert (t - starts[0]) / NS >= i / c - 0.02


@pytest.mark.integration
def test_load_reports_each_parallel_node_gap_under_concurrency(
    langgraph_server: str, tmp_path: Path
) -> None:
    """`load` at concurrency 10 on the parallel graph: each node's ITL p50 is its gap ± 3 ms."""
    trace = tmp_path / "streams.jsonl"
    proc = subprocess.run(
        [sys.executable, "-m", "exporter", "load", "--url", langgraph_server,
         "--assistant", "parallel", "--concurrency", "10", "--duration", "4",
         "--trace-out", str(trace), "--json-summary", "--no-progress", "--protocol", "legacy"],
        capture_output=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout.decode() + proc.stderr.decode()
    summary = orjson.loads(proc.stdout.splitlines()[-1])
    assert summary["max_open"] <= 10 and summary["failed"] == 0
    gaps: dict[str, list[float]] = {}
    lines = trace.read_bytes().splitlines()
    assert len(lines) == summary["streams"] >= 10
    for line in lines:
        stream = orjson.loads(line)
        assert stream["error"] is None
        assert stream["nodes"][0] is None and len(stream["recv_ns"]) == len(stream["nodes"])
        for call in stream["calls"]:
            gaps.setdefault(call["node"], []).extend(call["itl_s"])
    assert abs(statistics.median(gaps["writer_a"]) - 0.030) <= 0.003
    assert abs(statistics.median(gaps["writer_b"]) - 0.045) <= 0.003
    report = proc.stdout.decode()
    assert "writer_a" in report and "writer_b" in report


def test_aggregate_skips_rate_of_a_call_read_in_one_burst() -> None:
    """Two tokens stamped by the same read have no tokens/s of their own (no division by 0)."""
    from exporter.core.result import CallTiming, NodeExecution, ProbeResult
    from exporter.load import Aggregate

    call = CallTiming("m", None, None, (5, 5), 0, None, True)
    node = NodeExecution("agent", "t", 0, 10, None, (call,), "tasks", 0)
    result = ProbeResult(
        target="t", url="u", assistant_id="a", mode="stateless", t_request_ns=0,
        wall_request_ns=0, t_end_ns=10, failure=None, nodes=(node,),
    )  # fmt: skip
    agg = Aggregate()
    agg.add(result)
    assert agg.tokens["agent"] == 2 and list(agg.itl_s["agent"]) == [0.0]
    assert len(agg.rates["agent"]) == 0
