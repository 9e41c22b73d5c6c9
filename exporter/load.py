"""Load mode: many concurrent probe streams, with TTFT and ITL reported per node.

Bounds: at most `concurrency` streams open at once; no stream starts after `duration_s`
or after `max_streams`; the first `concurrency` starts are spread evenly over one second so the
server does not see a thundering herd. A load run never hammers a target that only fails: when
none of the first `give_up_after` streams succeeded it stops starting new ones, and after a run
of consecutive failures it waits before each start, doubling the wait up to `BACKOFF_MAX_S`.
Every stream is a full probe, timed exactly as the daemon
times it. A finished stream is folded into the per-node aggregates and, with `--trace-out`, into
its serialised trace line; the result itself is dropped, so memory grows by a few kilobytes per
stream, and no file I/O competes with the sockets while stamps are taken.

With `workers` > 1 the run is split over that many processes (`run_workers`): each drives its
share of the concurrency and of `max_streams` on its own event loop, and the parent merges their
records, raw per-node samples and trace files into one run.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import multiprocessing
import resource
import shutil
import signal
import sys
import time
import traceback
from array import array
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from exporter.config import Target
from exporter.core.result import ProbeResult
from exporter.core.stats import quantile
from exporter.core.words import counted
from exporter.http.client import Transport, client_for
from exporter.probe import probe
from exporter.runtime import freeze_startup_objects, run_async

__all__ = [
    "Aggregate",
    "LoadOptions",
    "LoadRun",
    "StreamRecord",
    "WorkerFailed",
    "drive",
    "merge_runs",
    "run_load",
    "run_workers",
    "shares",
]

RAMP_S = 1.0
#: Minimum streams that must all fail, none succeed, before a run gives up.
GIVE_UP_AFTER_MIN = 5
BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 5.0
#: Distinct failure messages kept for the report (the server's own words, e.g. a 422 body).
MAX_ERRORS_SHOWN = 3


def _keep_error(errors: list[tuple[str, str]], error: tuple[str, str]) -> None:
    """Add `error` (kind, message) unless it is already kept or `MAX_ERRORS_SHOWN` are."""
    if len(errors) < MAX_ERRORS_SHOWN and error not in errors:
        errors.append(error)


@dataclass(frozen=True)
class LoadOptions:
    concurrency: int
    duration_s: float
    max_streams: int | None = None
    trace_out: str | None = None
    json_summary: bool = False
    progress: bool = True
    transport: Transport = "stamping"
    workers: int = 1  # processes; each drives its share of concurrency and max_streams
    # A worker's place in the run's one start ramp: its index, and the whole run's concurrency.
    worker: int = 0
    ramp_concurrency: int | None = None

    @property
    def give_up_after(self) -> int:
        """Failed streams, none succeeded, after which no new stream starts."""
        return max(GIVE_UP_AFTER_MIN, self.concurrency)


@dataclass(frozen=True, slots=True)
class StreamRecord:
    """What a load run keeps of one stream."""

    t_request_ns: int
    t_end_ns: int
    failure: str | None  # the failure kind, or None
    ttft_s: float | None  # run TTFT
    first_event_s: float | None = None  # time to the first event (`metadata`)
    tokens: int = 0

    @property
    def success(self) -> bool:
        return self.failure is None


def _new_doubles() -> array[float]:
    return array("d")


def _doubles() -> defaultdict[str, array[float]]:
    # A module-level factory, not a lambda: a worker's aggregate is pickled back to the parent.
    return defaultdict(_new_doubles)


@dataclass
class Aggregate:
    """Per-node distributions over every stream of a run, for the report.

    Arrays of doubles, not lists of floats: 8 bytes a value instead of 32, and no long-lived
    float objects scattered among each stream's short-lived ones (peak RSS, PERFORMANCE.md).
    """

    ttft_s: defaultdict[str, array[float]] = field(default_factory=_doubles)
    itl_s: defaultdict[str, array[float]] = field(default_factory=_doubles)
    rates: defaultdict[str, array[float]] = field(default_factory=_doubles)
    tokens: Counter[str] = field(default_factory=Counter)

    def add(self, result: ProbeResult) -> None:
        for n in result.nodes:
            if n.ttft_s is not None:
                self.ttft_s[n.node].append(n.ttft_s)
            for c in n.calls:
                self.itl_s[n.node].extend(c.itl_s)
                self.tokens[n.node] += c.tokens
                span_s = (c.token_ns[-1] - c.token_ns[0]) / 1e9 if c.tokens >= 2 else 0.0
                if span_s > 0:  # tokens that arrived in one read have no rate of their own
                    self.rates[n.node].append((c.tokens - 1) / span_s)

    def merge(self, other: Aggregate) -> None:
        """Fold in another run's raw samples (a worker's): the percentiles of the merged
        aggregate are those of every sample, not an average of per-worker percentiles."""
        for mine, theirs in (
            (self.ttft_s, other.ttft_s),
            (self.itl_s, other.itl_s),
            (self.rates, other.rates),
        ):
            for node, values in theirs.items():
                mine[node].extend(values)
        self.tokens.update(other.tokens)


@dataclass
class LoadRun:
    """What a load run did: one record per stream in start order, and the bounds it kept."""

    records: list[StreamRecord]
    aggregate: Aggregate
    trace_lines: int  # `--trace-out` lines written, one per stream, in the order they finished
    max_open: int
    wall_s: float
    cpu_s: float
    last_start_s: float  # seconds after the run began when the last stream started
    gave_up: bool = False  # stopped early: none of the first streams succeeded
    errors: list[tuple[str, str]] = field(default_factory=list)  # first distinct (kind, message)
    # time.monotonic_ns() when the run began; CLOCK_MONOTONIC is system-wide, so the workers'
    # starts and ends are comparable and give the merged run its common wall time.
    t0_ns: int = 0
    workers: int = 1
    worker_cpu_s: tuple[float, ...] = ()  # merged runs: each worker's `cpu_s`
    parent_cpu_s: float = 0.0  # merged runs: the parent's CPU (spawning, merging, the trace)
    maxrss_kb_by_process: tuple[int, ...] = ()  # merged runs: workers' VmHWM, then the parent's
    # merged runs: per worker, seconds it was runnable but waited for a CPU during its run
    # (workers sharing a CPU wait for each other: their reads are stamped that much later)
    worker_runqueue_wait_s: tuple[float | None, ...] = ()


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _runqueue_wait_s() -> float | None:
    """Seconds this process has spent runnable but not running (Linux schedstat), or None."""
    try:
        return int(Path("/proc/self/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def _vm_hwm_kb() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


async def drive(
    target: Target,
    options: LoadOptions,
    *,
    on_done: Any = None,
    ready: Callable[[], None] | None = None,
) -> LoadRun:
    """Run the bounded load loop; `on_done(result)` is called as each stream finishes.

    `ready()`, when given, is called once everything is set up, right before the run's clock
    starts; a worker blocks in it until the parent says go, so that all workers start together.
    """
    # Two connections per v2 stream: the subscription and its `run.start` (docs/V2.md §2).
    client = client_for(
        target, transport=options.transport, max_connections=2 * options.concurrency
    )
    sem = asyncio.Semaphore(options.concurrency)
    records: dict[int, StreamRecord] = {}
    # NOTE: each trace line goes to the file as its stream ends, through a 1 MiB buffer (a
    # write(2) every ~100 streams). Holding the lines until the end cost 20 MB of heap at 600
    # streams, more than three times their size (docs/PERFORMANCE.md).
    trace: BinaryIO | None = None
    if options.trace_out:
        # Opened before any stream starts and closed after the last; no `with`: it spans the loop.
        trace = open(options.trace_out, "wb", buffering=1 << 20)  # noqa: ASYNC230, SIM115
    trace_lines = 0
    aggregate = Aggregate()
    tasks: set[asyncio.Task[None]] = set()
    open_now = 0
    max_open = 0
    # NOTE: a full garbage collection that walks every object of the process blocks the loop,
    # and every read that arrives meanwhile is stamped that late. Objects from start-up are
    # frozen out of it, and a finished stream leaves only a small record behind, so the
    # collections that remain walk little more than the open streams (docs/PERFORMANCE.md).
    freeze_startup_objects(collect_first=True)  # before t0: set-up, not the measured run
    if ready is not None:
        ready()
    t0_ns = time.monotonic_ns()
    t0 = t0_ns / 1e9
    cpu0 = _cpu_s()
    last_start = 0.0
    ok = failed = consecutive_failures = 0
    errors: list[tuple[str, str]] = []

    async def one(index: int) -> None:
        nonlocal open_now, trace_lines, ok, failed, consecutive_failures
        try:
            result = await probe(target, client=client, transport=options.transport)
            failure = None if result.failure is None else result.failure.kind.value
            if result.failure is None:
                ok += 1
                consecutive_failures = 0
            else:
                failed += 1
                consecutive_failures += 1
                _keep_error(errors, (result.failure.kind.value, result.failure.message[:500]))
            records[index] = StreamRecord(
                result.t_request_ns,
                result.t_end_ns,
                failure,
                result.ttft_s,
                result.since_request_s(result.t_first_event_ns),
                result.tokens,
            )
            aggregate.add(result)
            if trace is not None:
                trace.write(orjson.dumps(trace_line(result), option=orjson.OPT_APPEND_NEWLINE))
                trace_lines += 1
            if on_done is not None:
                on_done(result)
        finally:
            open_now -= 1
            sem.release()

    started = 0
    gave_up = False
    try:
        while options.max_streams is None or started < options.max_streams:
            await sem.acquire()
            if ok == 0 and failed >= options.give_up_after:
                gave_up = True  # nothing works: stop rather than flood the target
                sem.release()
                break
            excess = consecutive_failures - options.concurrency
            if excess >= 0:
                # Every open slot failed in a row: wait, doubling, before the next start.
                wait_s = min(BACKOFF_MAX_S, BACKOFF_FIRST_S * 2 ** min(excess, 16))
                wait_s = min(wait_s, options.duration_s - (time.monotonic() - t0))
                if wait_s > 0:
                    await asyncio.sleep(wait_s)
            now = time.monotonic()
            if started < options.concurrency:
                # Across workers the slots interleave (worker k takes k, k + W, …), so the
                # whole run's first C starts are spread over RAMP_S as in one process.
                slot = started * options.workers + options.worker
                ramp_at = t0 + RAMP_S * slot / (options.ramp_concurrency or options.concurrency)
                if ramp_at > now:
                    await asyncio.sleep(ramp_at - now)
                    now = time.monotonic()
            if now - t0 >= options.duration_s:
                sem.release()
                break
            open_now += 1
            max_open = max(max_open, open_now)
            last_start = now - t0
            task = asyncio.create_task(one(started))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            started += 1
        if tasks:
            await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await client.aclose()
        if trace is not None:
            trace.close()
        gc.unfreeze()
    return LoadRun(
        records=[records[i] for i in sorted(records)],
        aggregate=aggregate,
        trace_lines=trace_lines,
        max_open=max_open,
        wall_s=time.monotonic() - t0,
        cpu_s=_cpu_s() - cpu0,
        last_start_s=last_start,
        gave_up=gave_up,
        errors=errors,
        t0_ns=t0_ns,
    )


def trace_line(result: ProbeResult) -> dict[str, Any]:
    """One `--trace-out` line: arrival stamps of every event and the per-call timings."""
    d = result.to_dict()
    calls = [{"node": n["node"], **c} for n in d["nodes"] for c in n["calls"]]
    return {
        "run_id": result.run_id,
        "t_request_ns": result.t_request_ns,
        "recv_ns": list(result.events.recv_ns),
        "nodes": list(result.events.node),
        "calls": calls,
        "outcome": result.outcome,
        "failure_kind": None if result.failure is None else result.failure.kind.value,
        "failure_message": None if result.failure is None else result.failure.message[:500],
        "error": None if result.failure is None else result.failure.kind.value,  # = failure_kind
    }


def _percentiles(values: Any) -> dict[str, float | None]:
    return {
        f"p{int(q * 100)}": None if (v := quantile(values, q)) is None else round(v, 6)
        for q in (0.5, 0.9, 0.99)
    }


def summary(run: LoadRun, options: LoadOptions) -> dict[str, Any]:
    """The `--json-summary` object: what CI gates on.

    Shape: `streams`, `ok`, `failed`, `failures_by_kind` {kind: count}, `errors` [{kind,
    message}] (first distinct), `gave_up`; `run_ttft_s` and `first_event_s` {p50, p90, p99} in
    seconds; `nodes` {node: {ttft_s, itl_s: {p50, p90, p99}, tokens,
    decode_rate_tok_s_per_stream}}; `throughput_tok_s` (all tokens / wall time); `max_open`,
    `cpu_s`, `wall_s`, `maxrss_kb`.

    A run over several workers (`workers` > 1) says so in `workers`; its `wall_s` is the common
    wall time (first worker's start to last worker's end), `cpu_s` the sum over the workers and
    the parent (`worker_cpu_s` [s per worker], `parent_cpu_s`), `max_open` the sum of each
    worker's most open streams, and memory comes as `maxrss_kb_max` (the largest process's
    VmHWM) and `maxrss_kb_sum` (all processes' VmHWM added up) instead of `maxrss_kb`;
    `worker_runqueue_wait_s` [s per worker, null where unknown] is how long each worker was
    runnable but waiting for a CPU during its run (Linux schedstat).
    """
    agg = run.aggregate
    failures = Counter(r.failure for r in run.records if r.failure is not None)
    tokens = sum(r.tokens for r in run.records)
    nodes = {}
    for node in sorted(set(agg.ttft_s) | set(agg.itl_s)):
        rates = agg.rates[node]
        nodes[node] = {
            "ttft_s": _percentiles(agg.ttft_s[node]),
            "itl_s": _percentiles(agg.itl_s[node]),
            "tokens": agg.tokens[node],
            "decode_rate_tok_s_per_stream": round(sum(rates) / len(rates), 3) if rates else None,
        }
    out = {
        "streams": len(run.records),
        "ok": sum(1 for r in run.records if r.success),
        "failed": sum(failures.values()),
        "failures_by_kind": dict(failures.most_common()),
        "errors": [{"kind": k, "message": m} for k, m in run.errors],
        "gave_up": run.gave_up,
        "run_ttft_s": _percentiles([r.ttft_s for r in run.records if r.ttft_s is not None]),
        "first_event_s": _percentiles(
            [r.first_event_s for r in run.records if r.first_event_s is not None]
        ),
        "nodes": nodes,
        "throughput_tok_s": round(tokens / run.wall_s, 3) if run.wall_s > 0 else None,
        "max_open": run.max_open,
        "concurrency": options.concurrency,
        "cpu_s": round(run.cpu_s, 4),
        "wall_s": round(run.wall_s, 4),
    }
    if run.workers == 1:
        out["maxrss_kb"] = _vm_hwm_kb()
    else:
        out["workers"] = run.workers
        out["worker_cpu_s"] = [round(c, 4) for c in run.worker_cpu_s]
        out["parent_cpu_s"] = round(run.parent_cpu_s, 4)
        out["maxrss_kb_max"] = max(run.maxrss_kb_by_process)
        out["maxrss_kb_sum"] = sum(run.maxrss_kb_by_process)
        out["worker_runqueue_wait_s"] = [
            None if w is None else round(w, 4) for w in run.worker_runqueue_wait_s
        ]
    return out


def report(run: LoadRun, options: LoadOptions) -> Any:
    """A rich renderable: per-node TTFT and ITL percentiles, throughput, failures by kind."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from exporter.core.report import ms

    agg = run.aggregate
    failures = Counter(r.failure for r in run.records if r.failure is not None)
    run_ttft = [r.ttft_s for r in run.records if r.ttft_s is not None]
    ok = sum(1 for r in run.records if r.success)
    tokens = sum(r.tokens for r in run.records)
    throughput = tokens / run.wall_s if run.wall_s > 0 else 0.0
    workers = f", {counted(run.workers, 'worker')}" if run.workers > 1 else ""
    head = Text(
        f"{counted(len(run.records), 'stream')} ({ok} ok) in {run.wall_s:.1f} s,"
        f" at most {run.max_open} open"
        f" (limit {options.concurrency}{workers}); run TTFT p50 {ms(quantile(run_ttft, 0.5))}"
        f" p99 {ms(quantile(run_ttft, 0.99))}; throughput {throughput:.1f} tok/s (all streams)",
        style="bold",
    )
    table = Table(
        show_edge=False,
        box=None,
        header_style="bold",
        pad_edge=False,
        caption="decode tok/s/stream: mean of each call's (tokens - 1) / (last - first token)",
        caption_justify="left",
    )
    cols = ("node", "TTFT p50", "p90", "p99", "ITL p50", "p90", "p99", "tokens")
    for col in (*cols, "decode tok/s/stream"):
        table.add_column(col, justify="left" if col == "node" else "right")
    for node in sorted(set(agg.ttft_s) | set(agg.itl_s)):
        t, g, rates = agg.ttft_s[node], agg.itl_s[node], agg.rates[node]
        rate = sum(rates) / len(rates) if rates else None
        table.add_row(
            node,
            ms(quantile(t, 0.5)),
            ms(quantile(t, 0.9)),
            ms(quantile(t, 0.99)),
            ms(quantile(g, 0.5)),
            ms(quantile(g, 0.9)),
            ms(quantile(g, 0.99)),
            str(agg.tokens[node]),
            "–" if rate is None else f"{rate:.1f}",
        )
    parts: list[Any] = [head, table]
    if failures:
        parts.append(
            Text("failures: " + ", ".join(f"{k} {v}" for k, v in failures.most_common()), "red")
        )
    return Group(*parts)


def error_lines(run: LoadRun, options: LoadOptions) -> list[str]:
    """What went wrong, for stderr: the stop, then the first distinct messages."""
    lines = []
    if run.gave_up and run.workers > 1:
        # Each worker gives up on its own streams: the first `give_up_after` of its share.
        first = worker_options(options)[0].give_up_after
        lines.append(
            f"load: stopped: none of a worker's first {counted(first, 'stream')} succeeded"
            " (not hammering a target that only fails)"
        )
    elif run.gave_up:
        lines.append(
            f"load: stopped: none of the first {counted(options.give_up_after, 'stream')}"
            " succeeded"
            " (not hammering a target that only fails)"
        )
    for kind, message in run.errors:
        # A message may already name its kind ("connect: connect to …"): say it once.
        said = message if message.startswith(f"{kind}:") else f"{kind}: {message}"
        lines.append(f"load: {said}")
    return lines


# --------------------------------------------------------------------------------------------
# Several workers
# --------------------------------------------------------------------------------------------

#: Seconds every worker gets to start (interpreter, imports, client) before the run is abandoned.
WORKER_START_TIMEOUT_S = 60.0
#: Beyond `duration_s` plus the target's total timeout: the last streams' cleanup and the
#: results' way back to the parent.
WORKER_GRACE_S = 30.0
#: How often the parent reads the workers' progress counters while it waits for them.
POLL_S = 0.1


class WorkerFailed(RuntimeError):
    """A worker of a multi-worker run failed or died; the others were stopped.

    `args[0]` is one line naming the worker; `detail` is its traceback when it sent one.
    """

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


def shares(total: int, parts: int) -> list[int]:
    """`total` split over `parts` as evenly as possible, larger shares first: (5, 2) -> [3, 2]."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def part_path(trace_out: str, index: int) -> str:
    """Where worker `index` writes its trace lines; the parent concatenates and removes them."""
    return f"{trace_out}.worker{index}"


def worker_options(options: LoadOptions) -> list[LoadOptions]:
    """Each worker's options: its share of concurrency and max_streams, its own trace part, its
    slots in the start ramp. Shares are larger first, so worker k's ramp slots k, k + W, … all
    fall below the run's concurrency."""
    n = options.workers
    streams = shares(options.max_streams, n) if options.max_streams is not None else [None] * n
    return [
        replace(
            options,
            concurrency=c,
            max_streams=m,
            trace_out=None if options.trace_out is None else part_path(options.trace_out, i),
            json_summary=False,
            progress=False,
            worker=i,
            ramp_concurrency=options.concurrency,
        )
        for i, (c, m) in enumerate(zip(shares(options.concurrency, n), streams, strict=True))
    ]


def merge_runs(runs: Sequence[LoadRun]) -> LoadRun:
    """One run from the workers' runs.

    Records in start order; raw per-node samples merged (`Aggregate.merge`); `wall_s` from the
    first worker's start to the last worker's end; `cpu_s` the workers' sum (the caller adds its
    own); `max_open` the sum of each worker's most open streams (an upper bound on the streams
    open at once, at most the total concurrency); `gave_up` when any worker gave up.
    """
    t0_ns = min(r.t0_ns for r in runs)
    end_ns = max(r.t0_ns + round(r.wall_s * 1e9) for r in runs)
    aggregate = Aggregate()
    errors: list[tuple[str, str]] = []
    for r in runs:
        aggregate.merge(r.aggregate)
        for error in r.errors:
            _keep_error(errors, error)
    return LoadRun(
        records=sorted((rec for r in runs for rec in r.records), key=lambda x: x.t_request_ns),
        aggregate=aggregate,
        trace_lines=sum(r.trace_lines for r in runs),
        max_open=sum(r.max_open for r in runs),
        wall_s=(end_ns - t0_ns) / 1e9,
        cpu_s=sum(r.cpu_s for r in runs),
        last_start_s=max((r.t0_ns - t0_ns) / 1e9 + r.last_start_s for r in runs),
        gave_up=any(r.gave_up for r in runs),
        errors=errors,
        t0_ns=t0_ns,
        workers=len(runs),
        worker_cpu_s=tuple(r.cpu_s for r in runs),
    )


@dataclass(frozen=True)
class _WorkerDone:
    run: LoadRun
    maxrss_kb: int
    runqueue_wait_s: float | None


def _worker_main(
    index: int, target: Target, options: LoadOptions, conn: Connection, counters: Any
) -> None:
    """One worker process: drive its share, then send back its run or what went wrong.

    Messages to the parent: ("ready", None) once set up, then ("done", _WorkerDone) or
    ("error", (one line, traceback)); from the parent: ("go", None).
    """
    # Ctrl-C reaches the whole foreground process group; the parent alone stops the workers.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    waited0_s: float | None = None

    def ready() -> None:
        nonlocal waited0_s
        conn.send(("ready", None))
        if not conn.poll(WORKER_START_TIMEOUT_S):
            raise TimeoutError(f"no go from the parent within {WORKER_START_TIMEOUT_S:g} s")
        conn.recv()
        waited0_s = _runqueue_wait_s()

    def on_done(result: ProbeResult) -> None:
        # Progress for the parent's display: this worker's slots only, so no lock.
        counters[2 * index] += 1
        counters[2 * index + 1] += result.failure is not None

    try:
        run = run_async(drive(target, options, on_done=on_done, ready=ready))
        waited1_s = _runqueue_wait_s()
        waited_s = None if waited0_s is None or waited1_s is None else waited1_s - waited0_s
        conn.send(("done", _WorkerDone(run, _vm_hwm_kb(), waited_s)))
    except BaseException as exc:  # the parent names this worker and stops the others
        with contextlib.suppress(OSError):
            conn.send(("error", (f"{type(exc).__name__}: {exc}", traceback.format_exc())))
        raise SystemExit(1) from None


def _how_it_ended(proc: BaseProcess) -> str:
    proc.join(5)  # its pipe closed: it is exiting, if it has not already
    code = proc.exitcode
    if code is None:
        return "closed its pipe"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _collect(
    procs: Sequence[BaseProcess],
    conns: Sequence[Connection],
    counters: Any,
    run_bound_s: float,
    on_progress: Callable[[int, int], None] | None,
) -> list[_WorkerDone]:
    """Wait for every worker: all ready, then go, then each one's result; bounded in time."""
    n = len(procs)
    ready = [False] * n
    done: list[_WorkerDone | None] = [None] * n
    started = False
    deadline = time.monotonic() + WORKER_START_TIMEOUT_S

    def name(i: int) -> str:
        return f"worker {i} of {n} (pid {procs[i].pid})"

    while any(d is None for d in done):
        left_s = deadline - time.monotonic()
        if left_s <= 0:
            late = [name(i) for i in range(n) if not (done[i] if started else ready[i])]
            what = f"finish within {run_bound_s:g} s" if started else "start"
            raise WorkerFailed(f"{', '.join(late)} did not {what}")
        watched: dict[Any, int] = {}
        for i in range(n):
            if done[i] is None:
                watched[conns[i]] = i
                watched[procs[i].sentinel] = i
        for obj in wait(list(watched), min(POLL_S, left_s)):
            i = watched[obj]
            if done[i] is not None:
                continue
            if isinstance(obj, int):  # the process ended; a last message may still be queued
                if not conns[i].poll():
                    raise WorkerFailed(f"{name(i)} {_how_it_ended(procs[i])} before its results")
                continue
            try:
                kind, payload = conns[i].recv()
            except EOFError:
                raise WorkerFailed(
                    f"{name(i)} {_how_it_ended(procs[i])} before its results"
                ) from None
            if kind == "ready":
                ready[i] = True
            elif kind == "done":
                done[i] = payload
            else:
                line, detail = payload
                raise WorkerFailed(f"{name(i)} failed: {line}", detail)
        if not started and all(ready):
            for conn in conns:
                conn.send(("go", None))
            started = True
            deadline = time.monotonic() + run_bound_s
        if on_progress is not None:
            on_progress(sum(counters[0::2]), sum(counters[1::2]))
    return [d for d in done if d is not None]


def _stop(procs: Sequence[BaseProcess]) -> None:
    """SIGTERM every worker still running (they do not handle it: they end at once), then reap."""
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    for proc in procs:
        proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join()


def run_workers(
    target: Target,
    options: LoadOptions,
    *,
    on_progress: Callable[[int, int], None] | None = None,
) -> LoadRun:
    """`options.workers` processes, each driving its share (`worker_options`), merged into one run.

    The workers are spawned (a fresh interpreter each: no loop, lock or socket inherited), set
    up, and start together when all are ready. Each writes its trace lines to its own part file
    (`part_path`); the parent appends the parts to `trace_out` in worker order and removes them.
    `on_progress(done, failed)` is called about every `POLL_S` with the streams finished so far.
    Bounded: workers must be ready within `WORKER_START_TIMEOUT_S` and done within
    `duration_s` + the target's total timeout + `WORKER_GRACE_S`.

    Raises `WorkerFailed` naming the worker when one raises, dies or overruns; the others are
    stopped, the part files and the trace file removed. Ctrl-C (KeyboardInterrupt) stops them
    all the same way and propagates.
    """
    # NOTE: multiprocessing.Process and a Pipe each rather than a ProcessPoolExecutor: the pool
    # reports a dead worker as BrokenProcessPool on every future, without saying which one,
    # and its tasks cannot say "ready" and wait for a common go. Spawned, not forked: a fresh
    # interpreter inherits no event loop, lock or socket from the parent.
    ctx = multiprocessing.get_context("spawn")
    cpu0 = _cpu_s()
    counters = ctx.RawArray("q", 2 * options.workers)
    # Opened first: a bad path fails before any worker starts.
    trace = open(options.trace_out, "wb") if options.trace_out else None  # noqa: SIM115
    procs: list[BaseProcess] = []
    conns: list[Connection] = []
    finished = False
    try:
        for i, share in enumerate(worker_options(options)):
            mine, theirs = ctx.Pipe()
            proc = ctx.Process(
                target=_worker_main,
                args=(i, target, share, theirs, counters),
                name=f"load-worker-{i}",
                daemon=True,
            )
            proc.start()
            theirs.close()  # the child's end: when the child is gone, our end reads EOF
            procs.append(proc)
            conns.append(mine)
        bound_s = options.duration_s + target.timeout.total + WORKER_GRACE_S
        results = _collect(procs, conns, counters, bound_s, on_progress)
        if trace is not None and options.trace_out is not None:
            for i in range(len(results)):
                with open(part_path(options.trace_out, i), "rb") as part:
                    shutil.copyfileobj(part, trace, 1 << 20)
        finished = True
    finally:
        _stop(procs)
        for conn in conns:
            conn.close()
        if options.trace_out is not None:
            for i in range(options.workers):
                # Cleanup must not hide the run's own error (e.g. a part path that is a dir).
                with contextlib.suppress(OSError):
                    Path(part_path(options.trace_out, i)).unlink()
        if trace is not None:
            trace.close()
            if not finished:
                Path(trace.name).unlink(missing_ok=True)
    run = merge_runs([r.run for r in results])
    run.parent_cpu_s = _cpu_s() - cpu0
    run.cpu_s += run.parent_cpu_s
    run.maxrss_kb_by_process = (*(r.maxrss_kb for r in results), _vm_hwm_kb())
    run.worker_runqueue_wait_s = tuple(r.runqueue_wait_s for r in results)
    return run


def run_load(target: Target, options: LoadOptions) -> int:
    """Entry point of `langgraph-stream-exporter load`; exit 0 if every stream succeeded."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    err = Console(stderr=True)
    show = options.progress and err.is_terminal
    progress = Progress(
        TextColumn("load"),
        BarColumn(),
        TextColumn("{task.fields[done]} done, {task.fields[failed]} failed"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not show,
    )
    bar = progress.add_task("load", total=options.max_streams, failed=0, done=counted(0, "stream"))
    failed = done = 0

    def on_done(result: ProbeResult) -> None:
        nonlocal failed, done
        failed += result.failure is not None
        done += 1
        progress.update(bar, advance=1, failed=failed, done=counted(done, "stream"))

    def on_progress(done: int, failed: int) -> None:
        progress.update(bar, completed=done, failed=failed, done=counted(done, "stream"))

    with progress:
        if options.workers == 1:
            run = run_async(drive(target, options, on_done=on_done))
        else:
            try:
                run = run_workers(target, options, on_progress=on_progress)
            except WorkerFailed as exc:
                sys.stderr.write(f"load: {exc}; stopped the other workers\n")
                if exc.detail:
                    sys.stderr.write(exc.detail)
                return 1
            failed = sum(1 for r in run.records if not r.success)
    console = Console()
    if not console.is_terminal:
        console = Console(width=120)  # piped: do not squeeze the table into 80 columns
    console.print(report(run, options))
    for line in error_lines(run, options):
        sys.stderr.write(line + "\n")
    if options.json_summary:
        sys.stdout.write(orjson.dumps(summary(run, options)).decode() + "\n")
        sys.stdout.flush()
    return 0 if failed == 0 and not run.gave_up else 1
