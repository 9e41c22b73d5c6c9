"""Load mode: many concurrent probe streams, with TTFT and ITL reported per node.

Bounds: at most `concurrency` streams open at once; no stream starts after `duration_s`
or after `max_streams`; the first `concurrency` starts are spread evenly over one second so the
server does not see a thundering herd. Every stream is a full probe, timed exactly as the daemon
times it. A finished stream is folded into the per-node aggregates and, with `--trace-out`, into
its serialised trace line; the result itself is dropped, so memory grows by a few kilobytes per
stream, and no file I/O competes with the sockets while stamps are taken.
"""

from __future__ import annotations

import asyncio
import gc
import resource
import sys
import time
from array import array
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from exporter.config import Target
from exporter.core.result import ProbeResult
from exporter.core.stats import quantile
from exporter.http.client import Transport, client_for
from exporter.probe import probe
from exporter.runtime import freeze_startup_objects, run_async

__all__ = ["Aggregate", "LoadOptions", "LoadRun", "StreamRecord", "drive", "run_load"]

RAMP_S = 1.0


@dataclass(frozen=True)
class LoadOptions:
    concurrency: int
    duration_s: float
    max_streams: int | None = None
    trace_out: str | None = None
    json_summary: bool = False
    progress: bool = True
    transport: Transport = "stamping"


@dataclass(frozen=True, slots=True)
class StreamRecord:
    """What a load run keeps of one stream."""

    t_request_ns: int
    t_end_ns: int
    failure: str | None  # the failure kind, or None
    ttft_s: float | None  # run TTFT

    @property
    def success(self) -> bool:
        return self.failure is None


def _doubles() -> defaultdict[str, array[float]]:
    return defaultdict(lambda: array("d"))


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


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


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
) -> LoadRun:
    """Run the bounded load loop; `on_done(result)` is called as each stream finishes."""
    client = client_for(target, transport=options.transport, max_connections=options.concurrency)
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
    t0 = time.monotonic()
    cpu0 = _cpu_s()
    last_start = 0.0

    async def one(index: int) -> None:
        nonlocal open_now, trace_lines
        try:
            result = await probe(target, client=client, transport=options.transport)
            failure = None if result.failure is None else result.failure.kind.value
            records[index] = StreamRecord(
                result.t_request_ns, result.t_end_ns, failure, result.ttft_s
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
    try:
        while options.max_streams is None or started < options.max_streams:
            await sem.acquire()
            now = time.monotonic()
            if started < options.concurrency:
                ramp_at = t0 + RAMP_S * started / options.concurrency
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
        "error": None if result.failure is None else result.failure.kind.value,
    }


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
    head = Text(
        f"{len(run.records)} streams ({ok} ok) in {run.wall_s:.1f} s, at most {run.max_open} open"
        f" (limit {options.concurrency}); run TTFT p50 {ms(quantile(run_ttft, 0.5))}"
        f" p99 {ms(quantile(run_ttft, 0.99))}",
        style="bold",
    )
    table = Table(show_edge=False, box=None, header_style="bold", pad_edge=False)
    for col in ("node", "TTFT p50", "p90", "p99", "ITL p50", "p90", "p99", "tokens", "tok/s"):
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


def run_load(target: Target, options: LoadOptions) -> int:
    """Entry point of `langgraph-stream-exporter load`; exit 0 if every stream succeeded."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    err = Console(stderr=True)
    show = options.progress and err.is_terminal
    progress = Progress(
        TextColumn("load"),
        BarColumn(),
        TextColumn("{task.completed} streams done, {task.fields[failed]} failed"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
        disable=not show,
    )
    bar = progress.add_task("load", total=options.max_streams, failed=0)
    failed = 0

    def on_done(result: ProbeResult) -> None:
        nonlocal failed
        failed += result.failure is not None
        progress.update(bar, advance=1, failed=failed)

    with progress:
        run = run_async(drive(target, options, on_done=on_done))
    Console().print(report(run, options))
    if options.json_summary:
        summary = {
            "cpu_s": round(run.cpu_s, 4),
            "wall_s": round(run.wall_s, 4),
            "maxrss_kb": _vm_hwm_kb(),
            "streams": len(run.records),
            "failed": failed,
            "max_open": run.max_open,
        }
        sys.stdout.write(orjson.dumps(summary).decode() + "\n")
        sys.stdout.flush()
    return 0 if failed == 0 else 1
