"""Streaming-timing benchmark: reference client vs the product, concurrency 1 to 400.

For every level it starts ``bench/server.py`` in its own process, runs the raw-socket
reference client and then the product's ``load`` mode against it (one after the other, each
with the server's send log fetched between them), joins each client's traces with the send
log, and writes ``bench/results/<timestamp>.json`` and the results tables in
``docs/PERFORMANCE.md``. Levels 1 to 200 fill the level table; level 400 runs the product
twice, with ``--workers 1`` and ``--workers 2``, and fills the second table ("400 streams: 1
and 2 workers"). ``--levels 400`` runs only that part and leaves the level table as it is.
Run it with ``make bench``; it takes about 4 minutes with the product (under 15 by
construction: each phase is bounded by --duration plus one stream).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import harness  # bench/ is sys.path[0] when this file is run as a script

ROOT = harness.BENCH_DIR.parent
DOC = ROOT / "docs" / "PERFORMANCE.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
WORKERS_BEGIN, WORKERS_END = "<!-- bench-workers:begin -->", "<!-- bench-workers:end -->"
LEVELS = (1, 10, 50, 100, 200)
#: Levels that run the product with each of WORKERS, for the second table.
WORKER_LEVELS = (400,)
WORKERS = (1, 2)

# The goals a run is judged by (docs/PERFORMANCE.md).
GOAL_P99_MS = 1.0
GOAL_CPU_RATIO = 1.5  # product CPU per 10k events / reference, at 50 and 200 streams
GOAL_RSS_MB = 80.0  # product peak RSS at 200 streams
# At WORKER_LEVELS, against the reference of the same level, for every worker count:
GOAL_W_P99_RATIO = 1.3  # product p99 timestamp error / reference's
GOAL_W_CPU_RATIO = 1.2  # product CPU per 10k events / reference's
GOAL_W_EFFICIENCY = 0.9  # events per CPU-second with 2 workers / with 1, at least


def run_level(
    c: int,
    duration_s: float,
    clients: list[tuple[str, list[str] | None]],
    workdir: Path,
    server_args: list[str],
    uvloop: bool = True,
    realtime: bool = False,
) -> dict[str, Any]:
    """One concurrency level: server up, each client in turn (name, command base), server down.

    Every client process, and the workers a multi-worker product starts, is pinned to the
    client CPU: with several workers the comparison is of CPU efficiency, not of cores.
    """
    server_cpus, client_cpus = harness.pick_cpus()
    server = harness.start_server(server_args, server_cpus, uvloop, realtime)
    # Bounded: every client stops starting streams after duration_s, and one stream lasts
    # about 5.1 s; the timeout only catches a hung client.
    timeout_s = duration_s + 120
    level: dict[str, Any] = {"concurrency": c, "server_loop": server.loop}
    try:
        for name, base in clients:
            if base is None:
                level[name] = {"status": "not available"}
                continue
            trace = workdir / f"c{c}-{name}.jsonl"
            cmd = harness.client_cmd(base, server.url, c, duration_s, trace)
            print(f"  c={c} {name} ...", flush=True)
            r = harness.run_phase(server, cmd, trace, client_cpus, timeout_s, realtime)
            level[name] = r
            if r["status"] == "ran":
                print("  " + one_line(r), flush=True)
            else:
                print(f"  {name} failed (exit {r['returncode']}): {r['stderr_tail'][-300:]}")
    finally:
        level["server"] = server.stop()
    return level


def one_line(r: dict[str, Any]) -> str:
    """A progress line for the console."""
    e = r["error_ms"]
    return (
        f"streams={r['streams']} events={r['events_received']} err p50={e['p50']} "
        f"p99={e['p99']} max={e['max']} ms cpu/10k={r['cpu_s_per_10k_events']} "
        f"rss={r['peak_rss_mb']}MB missing={r['missing_events']} "
        f"node_mismatch={r['node_mismatches']} errors={r['stream_errors']} "
        f"server_late_p99={r['server_lateness_ms']['p99']}"
    )


def clean(r: dict[str, Any]) -> bool:
    """No stream errors, no missing events, node attribution exact."""
    return (
        not r["stream_errors"]
        and r["missing_events"] == 0
        and r["extra_events"] == 0
        and r["node_mismatches"] == 0
        and r["lost_streams"] == 0
        and r["unmatched_traces"] == 0
        and r["calls_missing"] == 0
        and r["token_count_mismatches"] == 0
    )


def goals(levels: list[dict[str, Any]], client: str) -> list[dict[str, Any]]:
    """Evaluate the benchmark's goals for one client ("product", or "reference" as a baseline)."""
    out: list[dict[str, Any]] = []
    by_c = {lv["concurrency"]: lv for lv in levels}
    ran = [lv for lv in levels if lv.get(client, {}).get("status") == "ran"]
    if not ran:
        return [{"goal": "all", "value": f"{client}: not available", "pass": None}]
    worst = max(ran, key=lambda lv: lv[client]["error_ms"]["p99"] or 0.0)
    p99 = worst[client]["error_ms"]["p99"]
    out.append(
        {
            "goal": f"p99 event timestamp error <= {GOAL_P99_MS} ms at every level",
            "value": f"worst p99 {p99} ms (c={worst['concurrency']})",
            "pass": p99 is not None and p99 <= GOAL_P99_MS,
        }
    )
    for c in (50, 200):
        lv = by_c.get(c)
        if lv is None or client == "reference":
            continue
        ref = lv["reference"].get("cpu_s_per_10k_events")
        prod = lv[client].get("cpu_s_per_10k_events") if lv[client].get("status") == "ran" else None
        ratio = round(prod / ref, 2) if prod and ref else None
        out.append(
            {
                "goal": f"CPU per 10k events <= {GOAL_CPU_RATIO}x reference at c={c}",
                "value": f"{prod} vs {ref} s (x{ratio})",
                "pass": ratio is not None and ratio <= GOAL_CPU_RATIO,
            }
        )
    if 200 in by_c and by_c[200].get(client, {}).get("status") == "ran":
        rss = by_c[200][client]["peak_rss_mb"]
        out.append(
            {
                "goal": f"peak RSS <= {GOAL_RSS_MB:.0f} MB at c=200",
                "value": f"{rss} MB",
                "pass": rss is not None and rss <= GOAL_RSS_MB,
            }
        )
    bad = [lv["concurrency"] for lv in ran if not clean(lv[client])]
    out.append(
        {
            "goal": "no stream errors, no missing events, node attribution exact",
            "value": "clean at every level" if not bad else f"problems at c={bad}",
            "pass": not bad,
        }
    )
    return out


def product_names(workers: Sequence[int] = WORKERS) -> list[str]:
    """Result keys of the product runs at a worker level: "product" (1 worker), "product_w2" …"""
    return ["product" if w == 1 else f"product_w{w}" for w in workers]


def worker_goals(levels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The second table's goals, per worker level and product run, against that level's
    reference; and the 2-worker run's events per CPU-second against the 1-worker run's."""
    out: list[dict[str, Any]] = []
    for lv in levels:
        c = lv["concurrency"]
        ref = lv.get("reference", {})
        ref_ran = ref.get("status") == "ran"
        runs = {n: lv[n] for n in product_names() if lv.get(n, {}).get("status") == "ran"}
        for r in runs.values():
            w = r["workers"]
            ref_p99 = ref["error_ms"]["p99"] if ref_ran else None
            p99 = r["error_ms"]["p99"]
            ratio = round(p99 / ref_p99, 2) if p99 is not None and ref_p99 else None
            out.append(
                {
                    "goal": f"{w} worker(s), c={c}: p99 error <= {GOAL_W_P99_RATIO}x reference",
                    "value": f"{p99} vs {ref_p99} ms (x{ratio})",
                    "pass": ratio is not None and ratio <= GOAL_W_P99_RATIO,
                }
            )
            ref_cpu = ref.get("cpu_s_per_10k_events") if ref_ran else None
            cpu = r["cpu_s_per_10k_events"]
            ratio = round(cpu / ref_cpu, 2) if cpu and ref_cpu else None
            out.append(
                {
                    "goal": f"{w} worker(s), c={c}: CPU per 10k events <= "
                    f"{GOAL_W_CPU_RATIO}x reference",
                    "value": f"{cpu} vs {ref_cpu} s (x{ratio})",
                    "pass": ratio is not None and ratio <= GOAL_W_CPU_RATIO,
                }
            )
            out.append(
                {
                    "goal": f"{w} worker(s), c={c}: p99 error <= {GOAL_P99_MS} ms "
                    "(all streams on one client CPU)",
                    "value": f"{p99} ms",
                    "pass": p99 is not None and p99 <= GOAL_P99_MS,
                }
            )
            out.append(
                {
                    "goal": f"{w} worker(s), c={c}: no stream errors, no missing events, "
                    "node attribution exact",
                    "value": "clean" if clean(r) else "problems",
                    "pass": clean(r),
                }
            )
        one, two = runs.get("product"), runs.get("product_w2")
        if one is not None and two is not None:
            ratio = (
                round(two["events_per_cpu_s"] / one["events_per_cpu_s"], 3)
                if one["events_per_cpu_s"] and two["events_per_cpu_s"]
                else None
            )
            out.append(
                {
                    "goal": f"c={c}: events per CPU-second with 2 workers within "
                    f"{1 - GOAL_W_EFFICIENCY:.0%} of 1 worker",
                    "value": f"{two['events_per_cpu_s']} vs {one['events_per_cpu_s']} (x{ratio})",
                    "pass": ratio is not None and ratio >= GOAL_W_EFFICIENCY,
                }
            )
    return out


def fmt(v: Any) -> str:
    """Table cell: floats to three decimals, None as a dash."""
    if v is None:
        return "–"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def header(result: dict[str, Any]) -> list[str]:
    """The run and machine lines above a table."""
    m = result["machine"]
    p = result["params"]
    return [
        f"Run: {result['date']} · `{result['results_file']}` · product "
        f"`{' '.join(Path(x).name for x in p['product_cmd'] or []) or 'not available'}` "
        f"at {p['commit']}",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['mem_mb']} MB RAM, "
        f"Python {m['python']}, Linux {m['kernel']}, load average at start "
        f"{', '.join(f'{x:.2f}' for x in m['loadavg'])}. Server loop: {p['server_loop']}; "
        f"reference client: uvloop + orjson; pinning: {p['pinning']}; "
        f"scheduling: {p['sched']}. "
        f"{p['duration_s']} s of stream starts per client per level.",
        "",
    ]


def render_workers(result: dict[str, Any]) -> str:
    """The Markdown block between the bench-workers markers: "400 streams: 1 and 2 workers"."""
    lines = [
        *header(result),
        "| streams | client | workers | runs | events | ev/s | error p50 / p99 / max (ms) "
        "| TTFT err p99 (ms) | ITL err p99 (ms) | CPU s / 10k ev | ev / CPU s "
        "| CPU s: workers + parent | whole-process CPU s | peak RSS MB: sum (largest) "
        "| errors · missing · node mismatch | server late p99 (ms) | other CPU |",
        "| --: | --- | --: | --: | --: | --: | --- | --: | --: | --: | --: | --- | --: | --- "
        "| --- | --: | --: |",
    ]
    for lv in result["worker_levels"]:
        for name in ("reference", *product_names()):
            r = lv.get(name, {})
            client = "reference" if name == "reference" else "product"
            status = _status(r)
            if status is not None:
                lines.append(f"| {lv['concurrency']} | {name} | – | {status} |" + " |" * 13)
                continue
            e, rate, errs = _basics(r)
            split = (
                " + ".join(f"{x:.2f}" for x in r["worker_cpu_s"]) + f" + {r['parent_cpu_s']:.2f}"
                if r.get("worker_cpu_s")
                else fmt(r["cpu_s"])
            )
            lines.append(
                f"| {lv['concurrency']} | {client} | {r['workers']} | {r['streams']} "
                f"| {r['events_received']} | {fmt(rate)} "
                f"| {fmt(e['p50'])} / {fmt(e['p99'])} / {fmt(e['max'])} "
                f"| {fmt(r['ttft_error_ms']['p99'])} | {fmt(r['itl_error_ms']['p99'])} "
                f"| {fmt(r['cpu_s_per_10k_events'])} | {fmt(r['events_per_cpu_s'])} | {split} "
                f"| {fmt(r['process_cpu_s'])} "
                f"| {r['peak_rss_mb']} ({r['peak_rss_max_process_mb']}) "
                f"| {errs} · {r['missing_events']} · {r['node_mismatches']} "
                f"| {fmt(r['server_lateness_ms']['p99'])} | {r['other_cpu_share']:.0%} |"
            )
    lines += goal_table(result["goals"]["workers"])
    return "\n".join(lines)


def goal_table(goals: list[dict[str, Any]]) -> list[str]:
    """The goal rows under a results table: goal, measured value, pass."""
    marks = {True: "yes", False: "**no**", None: "–"}
    rows = [f"| {g['goal']} | {g['value']} | {marks[g['pass']]} |" for g in goals]
    return ["", "| goal | product | pass |", "| --- | --- | --- |", *rows]


def _status(r: dict[str, Any]) -> str | None:
    """None for a client that ran, else what to print in its row instead of numbers."""
    status: str = r.get("status", "–")
    if status == "ran":
        return None
    return f"failed (exit {r['returncode']})" if status == "failed" else status


def _basics(r: dict[str, Any]) -> tuple[dict[str, Any], int | None, int]:
    """A ran client's error distribution (ms), events per second and stream errors."""
    wall = (r.get("summary") or {}).get("wall_s")
    rate = round(r["events_received"] / wall) if wall else None
    return r["error_ms"], rate, sum(r["stream_errors"].values()) + r["lost_streams"]


def render(result: dict[str, Any]) -> str:
    """The Markdown block that goes between the bench markers."""
    lines = [
        *header(result),
        "| streams | client | runs | events | ev/s | error p50 / p99 / max (ms) "
        "| TTFT err p99 (ms) | ITL err p99 (ms) | CPU s / 10k ev | peak RSS (MB) "
        "| errors · missing · node mismatch | server late p99 (ms) | other CPU |",
        "| --: | --- | --: | --: | --: | --- | --: | --: | --: | --: | --- | --: | --: |",
    ]
    for lv in result["levels"]:
        for name in ("reference", "product"):
            r = lv.get(name, {})
            status = _status(r)
            if status is not None:
                lines.append(f"| {lv['concurrency']} | {name} | {status} |" + " |" * 10)
                continue
            e, rate, errs = _basics(r)
            lines.append(
                f"| {lv['concurrency']} | {name} | {r['streams']} | {r['events_received']} "
                f"| {fmt(rate)} | {fmt(e['p50'])} / {fmt(e['p99'])} / {fmt(e['max'])} "
                f"| {fmt(r['ttft_error_ms']['p99'])} | {fmt(r['itl_error_ms']['p99'])} "
                f"| {fmt(r['cpu_s_per_10k_events'])} | {r['peak_rss_mb']} "
                f"| {errs} · {r['missing_events']} · {r['node_mismatches']} "
                f"| {fmt(r['server_lateness_ms']['p99'])} | {r['other_cpu_share']:.0%} |"
            )
    lines += goal_table(result["goals"]["product"])
    lines.append("")
    ref = result["goals"]["reference"]
    lines.append(
        "Reference client against the same goals: "
        + "; ".join(f"{g['goal']}: {g['value']}" for g in ref)
        + "."
    )
    return "\n".join(lines)


def update_doc(block: str, doc: Path = DOC, begin: str = BEGIN, end: str = END) -> None:
    """Replace the text between a pair of bench markers in docs/PERFORMANCE.md."""
    text = doc.read_text() if doc.exists() else f"# Performance\n\n{begin}\n{end}\n"
    if begin not in text or end not in text:
        text += f"\n{begin}\n{end}\n"
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    doc.write_text(f"{head}{begin}\n{block}\n{end}{tail}")


def main(argv: list[str] | None = None) -> int:
    """Run every level, write the results file and the doc table."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument(
        "--levels",
        default=",".join(map(str, LEVELS + WORKER_LEVELS)),
        help=f"concurrency levels; {', '.join(map(str, WORKER_LEVELS))} runs the product with "
        f"--workers {' and '.join(map(str, WORKERS))} (the second table)",
    )
    ap.add_argument("--duration", type=float, default=15.0, help="seconds of stream starts")
    ap.add_argument("--no-product", action="store_true", help="run the reference client only")
    ap.add_argument("--no-doc", action="store_true", help="do not rewrite docs/PERFORMANCE.md")
    ap.add_argument("--asyncio-server", action="store_true", help="server on asyncio, not uvloop")
    ap.add_argument(
        "--product-args",
        default="",
        help="extra arguments for the product's load command, e.g. '--transport aiohttp'",
    )
    ap.add_argument(
        "--sched",
        choices=["auto", "fifo", "normal"],
        default="auto",
        help="auto: SCHED_FIFO for server and clients when permitted (root), else normal",
    )
    args = ap.parse_args(argv)
    realtime = args.sched == "fifo" or (args.sched == "auto" and harness.realtime_allowed())
    levels = [int(x) for x in args.levels.split(",")]
    extra = args.product_args.split()
    products: dict[int, list[str] | None] = {}
    for w in WORKERS:
        base = None if args.no_product else harness.product_base(w)
        products[w] = None if base is None else [*base, *extra]
    product = products[1]
    server_cpus, client_cpus = harness.pick_cpus()
    pinning = (
        f"server on CPU {sorted(server_cpus)[0]}, client on CPU {sorted(client_cpus)[0]}"
        if server_cpus and client_cpus
        else "none (one CPU)"
    )
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    results_dir = harness.BENCH_DIR / "results"
    results_dir.mkdir(exist_ok=True)
    out = results_dir / f"{stamp}.json"
    machine = harness.machine_info()
    print(f"bench: levels {levels}, product {'available' if product else 'not available'}")
    server_args: list[str] = []
    result: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "results_file": str(out.relative_to(ROOT)),
        "machine": machine,
        "params": {
            "levels": levels,
            "duration_s": args.duration,
            "server_loop": "asyncio" if args.asyncio_server else "uvloop",
            "pinning": pinning,
            "sched": f"SCHED_FIFO priority {harness.RT_PRIORITY}" if realtime else "SCHED_OTHER",
            "product_cmd": product,
            "commit": harness.git_commit(ROOT),
        },
        "levels": [],
        "worker_levels": [],
    }
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        for c in levels:
            print(f"level c={c}", flush=True)
            clients: list[tuple[str, list[str] | None]] = [("reference", harness.reference_base())]
            if c in WORKER_LEVELS:
                clients += list(zip(product_names(), products.values(), strict=True))
            else:
                clients.append(("product", product))
            lv = run_level(
                c,
                args.duration,
                clients,
                Path(tmp),
                server_args,
                uvloop=not args.asyncio_server,
                realtime=realtime,
            )
            result["worker_levels" if c in WORKER_LEVELS else "levels"].append(lv)
    result["goals"] = {
        "product": goals(result["levels"], "product"),
        "reference": goals(result["levels"], "reference"),
        "workers": worker_goals(result["worker_levels"]),
    }
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")
    for g in result["goals"]["workers"]:
        print(f"  {'pass' if g['pass'] else 'MISS'}: {g['goal']}: {g['value']}")
    if not args.no_doc:
        # Only the tables whose part ran: `--levels 400` keeps the level table as it was.
        if result["levels"]:
            update_doc(render(result))
        if result["worker_levels"]:
            update_doc(render_workers(result), begin=WORKERS_BEGIN, end=WORKERS_END)
        print(f"updated {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
