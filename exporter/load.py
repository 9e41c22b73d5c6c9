"""Load mode: many concurrent probe streams, with TTFT and ITL reported per node.

Bounds (issue 6): at most `concurrency` streams open at once; no stream starts after `duration_s`
or after `max_streams`; the first `concurrency` starts are spread evenly over one second so the
server does not see a thundering herd. Every stream is a full probe, timed exactly as the daemon
times it; results are kept in memory and written after the run, so no file I/O competes with the
sockets while stamps are taken.
"""

from __future__ import annotations

import asyncio
import gc
import resource
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from exporter.config import Target
from exporter.probe import probe
from exporter.result import ProbeResult
from exporter.runtime import run_async
from exporter.stats import quantile
from exporter.stream import Transport, make_client, ssl_context

__all__ = ["LoadOptions", "LoadRun", "drive", "run_load"]

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


@dataclass
class LoadRun:
    """What a load run did: results in start order, and the bounds it kept."""

    results: list[ProbeResult]
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
    verify = None
    if target.url.startswith("https://"):
        verify = ssl_context(target.ca_file, insecure=target.insecure_skip_verify)
    client = make_client(
        transport=options.transport,
        verify=verify,
        connect_timeout_s=target.timeout.connect,
        max_connections=options.concurrency,
    )
    sem = asyncio.Semaphore(options.concurrency)
    results: dict[int, ProbeResult] = {}
    tasks: set[asyncio.Task[None]] = set()
    open_now = 0
    max_open = 0
    t0 = time.monotonic()
    cpu0 = _cpu_s()
    last_start = 0.0

    async def one(index: int) -> None:
        nonlocal open_now
        try:
            result = await probe(target, client=client, transport=options.transport)
            results[index] = result
            if on_done is not None:
                on_done(result)
        finally:
            open_now -= 1
            sem.release()

    started = 0
    # NOTE: a full garbage collection over hundreds of retained results blocks the loop for
    # tens of milliseconds, and every read that arrives meanwhile is stamped that late. The run
    # is bounded, and our objects are freed by reference counting, so the cycle collector is
    # paused for the run and run once at its end (docs/PERFORMANCE.md).
    gc.disable()
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
        gc.enable()
        gc.collect()
    return LoadRun(
        results=[results[i] for i in sorted(results)],
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

    from exporter.report import ms

    ttft: dict[str, list[float]] = defaultdict(list)
    gaps: dict[str, list[float]] = defaultdict(list)
    rates: dict[str, list[float]] = defaultdict(list)
    tokens: Counter[str] = Counter()
    for r in run.results:
        for n in r.nodes:
            if n.ttft_s is not None:
                ttft[n.node].append(n.ttft_s)
            for c in n.calls:
                gaps[n.node].extend(c.itl_s)
                tokens[n.node] += c.tokens
                if c.tokens >= 2:
                    rates[n.node].append((c.tokens - 1) / ((c.token_ns[-1] - c.token_ns[0]) / 1e9))
    failures = Counter(r.failure.kind.value for r in run.results if r.failure is not None)
    run_ttft = [r.ttft_s for r in run.results if r.ttft_s is not None]
    ok = sum(1 for r in run.results if r.success)
    head = Text(
        f"{len(run.results)} streams ({ok} ok) in {run.wall_s:.1f} s, at most {run.max_open} open"
        f" (limit {options.concurrency}); run TTFT p50 {ms(quantile(run_ttft, 0.5))}"
        f" p99 {ms(quantile(run_ttft, 0.99))}",
        style="bold",
    )
    table = Table(show_edge=False, box=None, header_style="bold", pad_edge=False)
    for col in ("node", "TTFT p50", "p90", "p99", "ITL p50", "p90", "p99", "tokens", "tok/s"):
        table.add_column(col, justify="left" if col == "node" else "right")
    for node in sorted(set(ttft) | set(gaps)):
        t, g = ttft[node], gaps[node]
        rate = sum(rates[node]) / len(rates[node]) if rates[node] else None
        table.add_row(
            node,
            ms(quantile(t, 0.5)),
            ms(quantile(t, 0.9)),
            ms(quantile(t, 0.99)),
            ms(quantile(g, 0.5)),
            ms(quantile(g, 0.9)),
            ms(quantile(g, 0.99)),
            str(tokens[node]),
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
    if options.trace_out:
        with open(options.trace_out, "wb") as fh:
            for result in run.results:
                fh.write(orjson.dumps(trace_line(result)) + b"\n")
    Console().print(report(run, options))
    if options.json_summary:
        summary = {
            "cpu_s": round(run.cpu_s, 4),
            "wall_s": round(run.wall_s, 4),
            "maxrss_kb": _vm_hwm_kb(),
            "streams": len(run.results),
            "failed": failed,
            "max_open": run.max_open,
        }
        sys.stdout.write(orjson.dumps(summary).decode() + "\n")
        sys.stdout.flush()
    return 0 if failed == 0 else 1
