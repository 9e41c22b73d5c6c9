"""Benchmark harness library: run the server and a load client as processes, join their logs.

``bench/run.py`` drives it for every concurrency level; ``tests/test_bench_smoke.py`` uses it
for one short level. It imports only the standard library so both can load it.

The join: the server logs, per stream, the true send time of every event by index (0 =
``metadata``); a client trace gives, per stream, the receive time of every event by the same
index. Matching on (run_id, index) gives each event's timing error ``recv - send``, and shows
missing events and wrong node attribution. Per LLM call, the client's TTFT and ITL are
compared with the same quantities computed from the server's send times.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
SERVER = BENCH_DIR / "server.py"
REFERENCE = BENCH_DIR / "reference_client.py"
HOST = "127.0.0.1"


RT_PRIORITY = 10  # SCHED_FIFO priority for --realtime runs; low, above every normal task


def place(pid: int, cpus: set[int] | None, realtime: bool) -> None:
    """Pin a just-started process to cpus and, if asked, make it SCHED_FIFO.

    Threads the process starts later inherit both. Errors mean it already exited (its result
    says why) or that we may not raise priority (then the run is simply not realtime).
    """
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if cpus:
            os.sched_setaffinity(pid, cpus)
        if realtime:
            os.sched_setscheduler(pid, os.SCHED_FIFO, os.sched_param(RT_PRIORITY))


def realtime_allowed() -> bool:
    """Whether this process may hand out SCHED_FIFO (root or CAP_SYS_NICE)."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(RT_PRIORITY))
    except (PermissionError, OSError):
        return False
    os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    return True


def pick_cpus() -> tuple[set[int] | None, set[int] | None]:
    """Server on one CPU, client on another, when there are two; else no pinning."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return {cpus[0]}, {cpus[1]}


@dataclass
class ServerProc:
    """A running bench server process."""

    proc: subprocess.Popen[bytes]
    port: int
    loop: str

    @property
    def url(self) -> str:
        """Base URL of the server."""
        return f"http://{HOST}:{self.port}"

    def get(self, path: str, timeout_s: float = 60.0) -> bytes:
        """GET a control route (``/-/sendlog``, ``/-/stats``) on a fresh connection."""
        conn = http.client.HTTPConnection(HOST, self.port, timeout=timeout_s)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                raise RuntimeError(f"GET {path}: HTTP {resp.status}")
            return body
        finally:
            conn.close()

    def sendlog(self) -> list[dict[str, Any]]:
        """Fetch and clear the send log of every stream finished so far."""
        return [json.loads(line) for line in self.get("/-/sendlog").splitlines() if line]

    def stats(self) -> dict[str, Any]:
        """The server's counters and CPU so far."""
        result: dict[str, Any] = json.loads(self.get("/-/stats"))
        return result

    def stop(self) -> dict[str, Any]:
        """SIGTERM the server; return its final stats line."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        for line in reversed(out.decode().splitlines()):
            if line.startswith('{"stats"'):
                stats: dict[str, Any] = json.loads(line)["stats"]
                return stats
        return {}


def start_server(
    args: Sequence[str] = (),
    cpus: set[int] | None = None,
    uvloop: bool = True,
    realtime: bool = False,
) -> ServerProc:
    """Start ``bench/server.py`` on a free loopback port and wait for its ready line."""
    cmd = [sys.executable, str(SERVER), "--port", "0", *(["--uvloop"] if uvloop else []), *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    place(proc.pid, cpus, realtime)
    assert proc.stdout is not None
    line = proc.stdout.readline()  # the ready line; the server prints it once it listens
    if not line:
        proc.wait()
        proc.stdout.close()
        raise RuntimeError(f"bench server exited with {proc.returncode} before listening")
    ready = json.loads(line)
    return ServerProc(proc, int(ready["port"]), str(ready["loop"]))


@dataclass
class ClientRun:
    """What one load-client process left behind."""

    returncode: int
    summary: dict[str, Any]
    proc_cpu_s: float  # whole process lifetime, from wait4 (startup and trace writing too)
    proc_maxrss_kb: int
    traces: list[dict[str, Any]]
    wall_s: float
    stderr_tail: str = ""
    timed_out: bool = False


def run_client(
    cmd: Sequence[str],
    trace_path: Path,
    cpus: set[int] | None = None,
    timeout_s: float = 300.0,
    realtime: bool = False,
) -> ClientRun:
    """Run a load client to completion (killed after timeout_s) and read its outputs."""
    t0 = time.monotonic()
    err_path = trace_path.with_suffix(".stderr")
    out_path = trace_path.with_suffix(".stdout")
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        proc = subprocess.Popen(list(cmd), stdout=out, stderr=err)
    place(proc.pid, cpus, realtime)
    timed_out = threading.Event()

    def kill() -> None:
        timed_out.set()
        proc.kill()

    timer = threading.Timer(timeout_s, kill)
    timer.start()
    try:
        # wait4 instead of Popen.wait: it also returns the child's rusage (CPU, peak RSS).
        _, status, ru = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall_s = time.monotonic() - t0
    summary: dict[str, Any] = {}
    for line in reversed(out_path.read_text(errors="replace").splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                candidate = json.loads(line)
            except ValueError:
                continue
            if isinstance(candidate, dict) and "cpu_s" in candidate:
                summary = candidate
                break
    traces: list[dict[str, Any]] = []
    if trace_path.exists():
        with open(trace_path) as f:
            traces = [json.loads(line) for line in f if line.strip()]
    return ClientRun(
        returncode=proc.returncode,
        summary=summary,
        proc_cpu_s=ru.ru_utime + ru.ru_stime,
        proc_maxrss_kb=ru.ru_maxrss,
        traces=traces,
        wall_s=wall_s,
        stderr_tail=err_path.read_text(errors="replace")[-2000:],
        timed_out=timed_out.is_set(),
    )


def system_busy_s() -> float:
    """CPU seconds all processes on the machine have used so far (from /proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal ...: everything but idle and iowait.
    busy = sum(fields[:3]) + sum(fields[5:8])
    return busy / os.sysconf("SC_CLK_TCK")


def quantile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank quantile of already sorted values (None when empty)."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, round(q * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


def dist_ms(values_ns: list[int] | list[float], absolute: bool = False) -> dict[str, Any]:
    """p50/p99/p99.9/max/min of nanosecond values, in milliseconds."""
    vals = sorted(abs(v) for v in values_ns) if absolute else sorted(values_ns)
    if not vals:
        return {"n": 0, "p50": None, "p99": None, "p999": None, "max": None, "min": None}

    def ms(v: float | None) -> float | None:
        return None if v is None else round(v / 1e6, 4)

    return {
        "n": len(vals),
        "p50": ms(quantile(vals, 0.50)),
        "p99": ms(quantile(vals, 0.99)),
        "p999": ms(quantile(vals, 0.999)),
        "max": ms(vals[-1]),
        "min": ms(vals[0]),
    }


@dataclass
class Join:
    """Accumulators for joining one client's traces with the server's send log."""

    err_ns: list[int] = field(default_factory=list)
    ttft_err_ns: list[float] = field(default_factory=list)
    itl_err_ns: list[float] = field(default_factory=list)
    missing: int = 0
    extra: int = 0
    node_mismatch: int = 0
    calls_missing: int = 0
    token_count_mismatch: int = 0
    unmatched_traces: int = 0
    lost_streams: int = 0


def analyze(server_streams: list[dict[str, Any]], traces: list[dict[str, Any]]) -> dict[str, Any]:
    """Join a client's traces with the server's send log of the same phase."""
    srv = {s["run_id"]: s for s in server_streams}
    j = Join()
    errors: Counter[str] = Counter()
    seen: set[str] = set()
    for t in traces:
        if t.get("error"):
            errors[str(t["error"])] += 1
        s = srv.get(t.get("run_id") or "")
        if s is None:
            j.unmatched_traces += 1
            continue
        seen.add(s["run_id"])
        recv: list[int] = t["recv_ns"]
        send: list[int] = s["send_ns"]
        n = min(len(recv), len(send))
        j.missing += len(send) - n
        j.extra += len(recv) - n
        j.err_ns.extend(recv[i] - send[i] for i in range(n))
        nodes = t.get("nodes") or []
        j.node_mismatch += sum(
            1 for i in range(n) if (nodes[i] if i < len(nodes) else None) != s["nodes"][i]
        )
        _join_calls(j, s, t)
    for rid, s in srv.items():
        if rid not in seen:
            j.lost_streams += 1
            j.missing += len(s["send_ns"])
    sched_late = [
        snd - sch
        for s in server_streams
        for snd, sch in zip(s["send_ns"], s["sched_ns"], strict=True)
    ]
    events = sum(len(t["recv_ns"]) for t in traces)
    return {
        "streams": len(traces),
        "server_streams": len(server_streams),
        "events_received": events,
        "events_sent": sum(len(s["send_ns"]) for s in server_streams),
        "error_ms": dist_ms(j.err_ns),
        "ttft_error_ms": dist_ms(j.ttft_err_ns, absolute=True),
        "itl_error_ms": dist_ms(j.itl_err_ns, absolute=True),
        "stream_errors": dict(errors),
        "missing_events": j.missing,
        "extra_events": j.extra,
        "node_mismatches": j.node_mismatch,
        "calls_missing": j.calls_missing,
        "token_count_mismatches": j.token_count_mismatch,
        "unmatched_traces": j.unmatched_traces,
        "lost_streams": j.lost_streams,
        "server_lateness_ms": dist_ms(sched_late),
        "server_write_ms": dist_ms([w for s in server_streams for w in s.get("write_ns", [])]),
        "server_buffered_writes": sum(s.get("buffered", 0) for s in server_streams),
        "server_aborted_streams": sum(1 for s in server_streams if s.get("aborted")),
        "heartbeats_sent": sum(s.get("heartbeats", 0) for s in server_streams),
    }


def _join_calls(j: Join, s: dict[str, Any], t: dict[str, Any]) -> None:
    """TTFT (node TTFT: first token - the node's tasks start) and ITL errors per LLM call."""
    client_calls = {c.get("msg_id"): c for c in t.get("calls") or []}
    send = s["send_ns"]
    for call in s["calls"]:
        tok = call["token_idx"]
        if not tok:
            continue  # the merge node's whole message is not an LLM call
        c = client_calls.get(call["msg_id"])
        if c is None:
            j.calls_missing += 1
            continue
        if call["start_idx"] >= 0 and c.get("ttft_s") is not None:
            true_ttft = send[tok[0]] - send[call["start_idx"]]
            j.ttft_err_ns.append(float(c["ttft_s"]) * 1e9 - true_ttft)
        true_gaps = [send[b] - send[a] for a, b in itertools.pairwise(tok)]
        itl = c.get("itl_s") or []
        if c.get("tokens") != len(tok) or len(itl) != len(true_gaps):
            j.token_count_mismatch += 1
            continue
        j.itl_err_ns.extend(float(g) * 1e9 - tg for g, tg in zip(itl, true_gaps, strict=True))


def client_metrics(run: ClientRun, analysis: dict[str, Any]) -> dict[str, Any]:
    """CPU per 10k events and peak RSS, from the client's own summary and from wait4.

    A multi-worker product run (`load --workers W`) reports CPU summed over its processes and
    memory as `maxrss_kb_sum` / `maxrss_kb_max`: *peak_rss_mb* is then the sum (what the run
    occupied), *peak_rss_max_process_mb* the largest process. Its wait4 figures include the
    workers, which the parent reaped.
    """
    events = analysis["events_received"]
    cpu = run.summary.get("cpu_s")
    rss_kb = run.summary.get("maxrss_kb") or run.summary.get("maxrss_kb_sum")
    rss_max_kb = run.summary.get("maxrss_kb") or run.summary.get("maxrss_kb_max")
    return {
        "returncode": run.returncode,
        "timed_out": run.timed_out,
        "summary": run.summary,
        "workers": run.summary.get("workers", 1),
        "cpu_s": cpu,
        "cpu_s_per_10k_events": round(cpu / events * 1e4, 4) if cpu and events else None,
        "events_per_cpu_s": round(events / cpu) if cpu and events else None,
        "worker_cpu_s": run.summary.get("worker_cpu_s"),
        "parent_cpu_s": run.summary.get("parent_cpu_s"),
        "process_cpu_s": round(run.proc_cpu_s, 4),
        "process_cpu_s_per_10k_events": (
            round(run.proc_cpu_s / events * 1e4, 4) if events else None
        ),
        "peak_rss_mb": (round(rss_kb / 1024, 1) if rss_kb else round(run.proc_maxrss_kb / 1024, 1)),
        "peak_rss_max_process_mb": (
            round(rss_max_kb / 1024, 1) if rss_max_kb else round(run.proc_maxrss_kb / 1024, 1)
        ),
        "process_wall_s": round(run.wall_s, 3),
    }


def run_phase(
    server: ServerProc,
    cmd: Sequence[str],
    trace_path: Path,
    cpus: set[int] | None,
    timeout_s: float,
    realtime: bool = False,
) -> dict[str, Any]:
    """One client against the running server: run it, fetch that phase's log, join."""
    server.sendlog()  # drop anything left from an earlier phase
    cpu0 = server.stats()["cpu_s"]
    busy0 = system_busy_s()
    run = run_client(cmd, trace_path, cpus, timeout_s, realtime)
    busy1 = system_busy_s()
    # Streams the client abandoned finish on the server only when it notices the closed
    # socket; a short grace lets them land in this phase's log.
    deadline = time.monotonic() + 10
    while server.stats()["open_streams"] and time.monotonic() < deadline:
        time.sleep(0.1)
    streams = server.sendlog()
    cpu1 = server.stats()["cpu_s"]
    analysis = analyze(streams, run.traces)
    server_cpu_s = cpu1 - cpu0
    # CPU that neither the server nor the client used during the phase: other tenants of the
    # machine, whose scheduling noise shows up as timing error. Reported, not subtracted.
    other = (busy1 - busy0) - server_cpu_s - run.proc_cpu_s
    failed = run.returncode != 0 and not run.summary
    return {
        "status": "failed" if failed else "ran",
        **analysis,
        **client_metrics(run, analysis),
        "server_cpu_s": round(server_cpu_s, 4),
        "other_cpu_s": round(max(other, 0.0), 2),
        "other_cpu_share": round(max(other, 0.0) / run.wall_s / (os.cpu_count() or 1), 3),
        "stderr_tail": run.stderr_tail if run.returncode else "",
        "sched": "SCHED_FIFO" if realtime else "SCHED_OTHER",
    }


def client_cmd(
    base: Sequence[str],
    url: str,
    concurrency: int,
    duration_s: float,
    trace_path: Path,
    max_streams: int | None = None,
) -> list[str]:
    """The shared ``load`` command line for the reference client and the product."""
    cmd = [
        *base,
        "--url",
        url,
        "--assistant",
        "parallel",
        "--concurrency",
        str(concurrency),
        "--duration",
        str(duration_s),
        "--trace-out",
        str(trace_path),
        "--json-summary",
    ]
    if max_streams is not None:
        cmd += ["--max-streams", str(max_streams)]
    return cmd


def reference_base() -> list[str]:
    """How to start the reference client."""
    return [sys.executable, str(REFERENCE)]


def product_base(workers: int = 1) -> list[str] | None:
    """How to start the product's load mode, or None when it is not usable yet.

    `workers` > 1 adds `--workers W` (None when this product has no such flag). Its worker
    processes inherit the CPU pinning and scheduling `place` gives the product's process:
    they start after it has imported its modules, well after `place` ran.
    """
    exe = Path(sys.executable).parent / "langgraph-stream-exporter"
    if not exe.exists():
        return None
    try:
        probe = subprocess.run(
            [str(exe), "load", "--help"], capture_output=True, timeout=60, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if probe.returncode != 0:
        return None
    base = [str(exe), "load"]
    if b"--no-progress" in probe.stdout:
        base.append("--no-progress")  # a progress display is not part of the measured work
    if workers > 1:
        if b"--workers" not in probe.stdout:
            return None
        base += ["--workers", str(workers)]
    return base


def git_commit(root: Path) -> str:
    """The checked-out commit (with "+dirty" when the tree has changes), for the record."""
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "no commit"
    return head + ("+dirty" if dirty else "")


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_mb = 0
    try:
        with open("/proc/meminfo") as f:
            mem_mb = int(f.readline().split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "mem_mb": mem_mb,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "loadavg": os.getloadavg(),
    }
