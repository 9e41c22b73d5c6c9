"""`load --workers W`: W processes against the scripted server on loopback, merged into one
report, one JSON summary and one trace file; a worker that fails or dies fails the run and is
named; Ctrl-C stops every worker; the flag is validated."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from exporter.core.stats import quantile
from tests.support.cli import run_cli
from tests.support.scripted_server import RunInfo, ScriptedServer, langgraph_stream

pytestmark = pytest.mark.anyio

NS = 1_000_000_000


class Server:
    """The scripted server: every stream a fresh run id, token gaps varying by stream (so each
    worker's ITL distribution differs and only merged raw samples give the merged percentiles)."""

    def __init__(self, srv: ScriptedServer, tokens: int = 5, gap_s: float = 0.01) -> None:
        self.srv = srv
        self.run_ids: list[str] = []
        self.tokens = tokens
        self.gap_s = gap_s
        srv.route_stateless(self.script)

    def script(self, _req: Any) -> Any:
        run = RunInfo(run_id=str(uuid.uuid4()))
        k = len(self.run_ids)
        self.run_ids.append(run.run_id)
        gap_s = self.gap_s * (1 + k % 4)
        return langgraph_stream(
            ["agent"], tokens=self.tokens, first_token_s=0.05, gap_s=gap_s, run=run
        )

    @property
    def url(self) -> str:
        return self.srv.url


@pytest.fixture
async def server() -> Any:
    async with ScriptedServer() as srv:
        yield Server(srv)


async def start_cli(*args: str, **kw: Any) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter", "load", "--no-progress", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, **kw,
    )  # fmt: skip


async def load_cli(*args: str) -> tuple[int, bytes, bytes]:
    return await run_cli("load", "--no-progress", *args, timeout_s=120)


async def run_load(
    server: Server, trace: Path, workers: int, concurrency: int = 4, max_streams: int = 8
) -> dict[str, Any]:
    """One `load` run to completion; its JSON summary (exit 0 asserted)."""
    code, out, err = await load_cli(
        "--url", server.url, "--assistant", "agent", "--concurrency", str(concurrency),
        "--duration", "30s", "--max-streams", str(max_streams), "--workers", str(workers),
        "--trace-out", str(trace), "--json-summary",
    )  # fmt: skip
    assert code == 0, err.decode()
    summary: dict[str, Any] = orjson.loads(out.splitlines()[-1])
    return summary


def traces(path: Path) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def worker_pids(parent: int) -> list[int]:
    """The spawned worker processes of `parent` (not its multiprocessing resource tracker)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = next(int(x.split()[1]) for x in status.splitlines() if x.startswith("PPid:"))
        if ppid == parent and b"spawn_main" in cmdline:
            pids.append(int(entry.name))
    return sorted(pids)


def alive(pid: int) -> bool:
    """Running (a zombie, exited but not yet reaped, does not count)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


async def until(condition: Any, timeout_s: float, what: str) -> None:
    """Poll `condition()` every 20 ms; fail naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout_s} s: {what}"
        await asyncio.sleep(0.02)


# ------------------------------------------------------------------------ merged results


async def test_two_workers_run_the_same_streams_and_events_as_one(
    server: Server, tmp_path: Path
) -> None:
    """With --max-streams 8, `--workers 2` runs 8 streams like `--workers 1`: the same count of
    requests, streams, events and tokens."""
    one = await run_load(server, tmp_path / "one.jsonl", workers=1)
    requests_one = len(server.run_ids)
    two = await run_load(server, tmp_path / "two.jsonl", workers=2)
    assert requests_one == len(server.run_ids) - requests_one == 8
    assert (one["streams"], one["ok"]) == (two["streams"], two["ok"]) == (8, 8)
    events_one = sum(len(t["recv_ns"]) for t in traces(tmp_path / "one.jsonl"))
    events_two = sum(len(t["recv_ns"]) for t in traces(tmp_path / "two.jsonl"))
    assert events_one == events_two > 0
    assert one["nodes"]["agent"]["tokens"] == two["nodes"]["agent"]["tokens"] == 8 * 5
    assert two["workers"] == 2 and "workers" not in one


async def test_the_merged_trace_has_every_stream_exactly_once(
    server: Server, tmp_path: Path
) -> None:
    """`--workers 2 --trace-out F`: one file, one line per stream the server ran, each run id
    once; the workers' part files are gone."""
    trace = tmp_path / "trace.jsonl"
    await run_load(server, trace, workers=2)
    run_ids = [t["run_id"] for t in traces(trace)]
    assert sorted(run_ids) == sorted(server.run_ids) and len(set(run_ids)) == 8
    assert sorted(os.listdir(tmp_path)) == ["trace.jsonl"]


async def test_the_merged_summary_sums_counts_and_takes_percentiles_of_all_samples(
    server: Server, tmp_path: Path
) -> None:
    """The summary of a 2-worker run: counts are the sums over all streams, per-node ITL and
    TTFT percentiles are those of every stream's samples (as the trace lines give them), CPU is
    the workers' plus the parent's, memory comes as max and sum."""
    trace = tmp_path / "trace.jsonl"
    s = await run_load(server, trace, workers=2, concurrency=3, max_streams=9)
    lines = traces(trace)
    calls = [c for t in lines for c in t["calls"] if c["node"] == "agent"]
    itl = [g for c in calls for g in c["itl_s"]]
    ttft = [c["ttft_s"] for c in calls]
    agent = s["nodes"]["agent"]
    assert s["streams"] == s["ok"] == len(lines) == 9
    assert agent["tokens"] == sum(c["tokens"] for c in calls) == 9 * 5
    for q in (0.5, 0.9, 0.99):
        key = f"p{int(q * 100)}"
        assert agent["itl_s"][key] == round(quantile(itl, q) or 0.0, 6), key
        assert agent["ttft_s"][key] == round(quantile(ttft, q) or 0.0, 6), key
    assert len(s["worker_cpu_s"]) == 2
    assert s["cpu_s"] == pytest.approx(sum(s["worker_cpu_s"]) + s["parent_cpu_s"], abs=2e-4)
    assert s["maxrss_kb_sum"] > s["maxrss_kb_max"] > 0 and "maxrss_kb" not in s


@pytest.mark.timing
async def test_the_first_starts_ramp_over_one_second_across_workers(server: Server) -> None:
    """C=4 over 2 workers: the run's first 4 requests still arrive spread over one second, the
    i-th at least i/4 s after the first (the workers interleave their ramp slots)."""
    code, _, err = await load_cli(
        "--url", server.url, "--assistant", "agent", "--concurrency", "4",
        "--duration", "30s", "--max-streams", "4", "--workers", "2",
    )  # fmt: skip
    assert code == 0, err.decode()
    arrived = sorted(r.received_ns for r in server.srv.requests)
    assert len(arrived) == 4
    for i, t in enumerate(arrived):
        # 50 ms: the two workers get the parent's go one after the other; the spread being
        # tested is 250 ms per start.
        measured_s = (t - arrived[0]) / NS
        assert measured_s >= i / 4 - 0.05, f"request {i} arrived {measured_s:.3f} s after the first"


# ------------------------------------------------------------------------ failures and stops


async def test_a_failing_worker_fails_the_run_and_is_named(server: Server, tmp_path: Path) -> None:
    """Worker 1 cannot write its trace part (a directory is in the way): exit 1 within
    seconds of a 30 s run, stderr names worker 1 and its error, no stream ran, no summary,
    no trace file left behind."""
    trace = tmp_path / "trace.jsonl"
    (tmp_path / "trace.jsonl.worker1").mkdir()
    t0 = time.monotonic()
    code, out, err = await load_cli(
        "--url", server.url, "--assistant", "agent", "--concurrency", "2",
        "--duration", "30s", "--workers", "2", "--trace-out", str(trace), "--json-summary",
    )  # fmt: skip
    elapsed_s = time.monotonic() - t0
    text = err.decode()
    assert code == 1, text
    assert "load: worker 1 of 2 (pid " in text and "IsADirectoryError" in text, text
    assert elapsed_s < 20, f"the failed run took {elapsed_s:.1f} s"
    assert server.run_ids == [] and b"{" not in out
    assert not trace.exists() and not (tmp_path / "trace.jsonl.worker0").exists()


async def test_a_killed_worker_fails_the_run_and_the_other_is_stopped(
    tmp_path: Path,
) -> None:
    """SIGKILL to one of two workers mid-run (10 s streams, 30 s run): exit 1 within seconds,
    stderr names that worker's pid and the signal, and the other worker is gone too."""
    async with ScriptedServer() as srv:
        server = Server(srv, tokens=200, gap_s=0.05)
        proc = await start_cli(
            "--url", server.url, "--assistant", "agent", "--concurrency", "2",
            "--duration", "30s", "--workers", "2", "--json-summary",
        )  # fmt: skip
        await until(lambda: len(server.run_ids) >= 2, 30, "both workers streaming")
        pids = worker_pids(proc.pid)
        assert len(pids) == 2, pids
        os.kill(pids[1], signal.SIGKILL)
        t0 = time.monotonic()
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        elapsed_s = time.monotonic() - t0
    text = err.decode()
    assert proc.returncode == 1, text
    assert f"(pid {pids[1]}) was killed by SIGKILL before its results" in text, text
    assert elapsed_s < 10, f"exited {elapsed_s:.1f} s after the kill"
    assert not alive(pids[0]), "the other worker still runs"
    assert b"{" not in out


async def test_ctrl_c_stops_every_worker(tmp_path: Path) -> None:
    """SIGINT to the whole process group, as a terminal's Ctrl-C sends it, mid-run: exit 130
    within seconds of a 30 s run and no worker left running."""
    async with ScriptedServer() as srv:
        server = Server(srv, tokens=200, gap_s=0.05)
        proc = await start_cli(
            "--url", server.url, "--assistant", "agent", "--concurrency", "2",
            "--duration", "30s", "--workers", "2", start_new_session=True,
        )  # fmt: skip
        await until(lambda: len(server.run_ids) >= 2, 30, "both workers streaming")
        pids = worker_pids(proc.pid)
        assert len(pids) == 2, pids
        os.killpg(proc.pid, signal.SIGINT)
        t0 = time.monotonic()
        _, err = await asyncio.wait_for(proc.communicate(), 60)
        elapsed_s = time.monotonic() - t0
    assert proc.returncode == 130, err.decode()
    assert elapsed_s < 10, f"exited {elapsed_s:.1f} s after Ctrl-C"
    assert [p for p in pids if alive(p)] == []


# ------------------------------------------------------------------------ the flag


def load_args(*extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", "load", "--url", "http://127.0.0.1:9",
         "--assistant", "a", "--duration", "1", *extra],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_workers_must_be_a_positive_whole_number(value: str) -> None:
    """`--workers 0`, `-1`, `two`: exit 2, the message names the flag and what is wrong."""
    proc = load_args("--concurrency", "4", f"--workers={value}")
    assert proc.returncode == 2
    assert "argument --workers:" in proc.stderr, proc.stderr
    assert "must be at least 1" in proc.stderr or "not a whole number" in proc.stderr


def test_more_workers_than_concurrency_is_a_usage_error() -> None:
    """`--workers 3 --concurrency 2`: exit 2, naming both flags; nothing runs."""
    proc = load_args("--concurrency", "2", "--workers", "3")
    assert proc.returncode == 2
    assert "--workers" in proc.stderr and "--concurrency 2" in proc.stderr, proc.stderr
    assert "at least one stream slot" in proc.stderr


@pytest.mark.parametrize(
    "flags", [("--concurrency", "0"), ("--concurrency", "2", "--workers", "3")], ids=str
)
def test_load_usage_errors_are_worded_like_argparse(flags: tuple[str, ...]) -> None:
    """Every `load` usage error starts `langgraph-stream-exporter load: error:`, as argparse's
    own do (`--workers 0`), so the user sees which command refused what."""
    proc = load_args(*flags)
    assert proc.returncode == 2
    assert proc.stderr.startswith("langgraph-stream-exporter load: error: argument --"), proc.stderr


async def test_workers_on_an_unreachable_port_stop_bounded() -> None:
    """`--workers 2` on a port nothing listens on, 30 s at concurrency 2: exit 1 within
    seconds, each worker stopped after its first failures, the connect error on stderr."""
    from tests.support.daemon import free_port

    t0 = time.monotonic()
    code, out, err = await load_cli(
        "--url", f"http://127.0.0.1:{free_port()}", "--assistant", "agent",
        "--concurrency", "2", "--duration", "30s", "--workers", "2", "--json-summary",
    )  # fmt: skip
    elapsed_s = time.monotonic() - t0
    assert code == 1
    s = orjson.loads(out.splitlines()[-1])
    assert s["gave_up"] is True and s["ok"] == 0
    # Per worker: give_up_after = max(5, its share 1) failures, plus its one open slot.
    assert 10 <= s["streams"] <= 12, s["streams"]
    assert s["failures_by_kind"] == {"connect": s["streams"]}
    text = err.decode()
    assert "stopped: none of a worker's first 5 streams succeeded" in text, text
    assert "connect to 127.0.0.1" in text
    assert elapsed_s < 20, f"took {elapsed_s:.1f} s"
