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
#: Minimum streams that must all fail, none succeed, before a run gives up.
GIVE_UP_AFTER_MIN = 5
BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 5.0
#: Distinct failure messages kept for the report (the server's own words, e.g. a 422 body).
MAX_ERRORS_SHOWN = 3


@dataclass(frozen=True)
class LoadOptions:
    concurrency: int
    duration_s: float
    max_streams: int | None = None
    trace_out: str | None = None
    json_summary: bool = False
    progress: bool = True
    transport: Transport = "stamping"

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
    gave_up: bool = False  # stopped early: none of the first streams succeeded
    errors: list[tuple[str, str]] = field(default_factory=list)  # first distinct (kind, message)


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
    t0 = time.monotonic()
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
                error = (result.failure.kind.value, result.failure.message[:500])
                if len(errors) < MAX_ERRORS_SHOWN and error not in errors:
                    errors.append(error)
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
        gave_up=gave_up,
        errors=errors,
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
    return {
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
        "maxrss_kb": _vm_hwm_kb(),
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
    tokens = sum(r.tokens for r in run.records)
    throughput = tokens / run.wall_s if run.wall_s > 0 else 0.0
    head = Text(
        f"{len(run.records)} streams ({ok} ok) in {run.wall_s:.1f} s, at most {run.max_open} open"
        f" (limit {options.concurrency}); run TTFT p50 {ms(quantile(run_ttft, 0.5))}"
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
    if run.gave_up:
        lines.append(
            f"load: stopped: none of the first {options.give_up_after} streams succeeded"
            " (not hammering a target that only fails)"
        )
    for kind, message in run.errors:
        lines.append(f"load: {kind}: {message}")
    return lines


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
    for line in error_lines(run, options):
        sys.stderr.write(line + "\n")
    if options.json_summary:
        sys.stdout.write(orjson.dumps(summary(run, options)).decode() + "\n")
        sys.stdout.flush()
    return 0 if failed == 0 and not run.gave_up else 1
