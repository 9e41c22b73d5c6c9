"""Daemon scale benchmark: the exporter's cost as targets grow, and what a scrape does to it.

For each level (10, 100, 300, 1000 targets by default) it starts ``bench/scale_server.py``
(every run: 5 nodes of 20 tokens, 30 ms apart) and the daemon (``python -m exporter run``)
with that many targets probed every 30 s, waits one interval so every target has results,
then scrapes ``/metrics`` like Prometheus (OpenMetrics, gzip) every 15 s. It reports per level
the daemon's CPU per probe, RSS, the exposition's size and scrape time, and how late the
daemon stamped tokens that the server sent while a scrape ran (receive - true send, joined by
run id and event index as in ``bench/run.py``). Writes ``bench/results/scale-<ts>.json`` and
the scale table in ``docs/PERFORMANCE.md``. Bounded: about 100 s per level, ~7 minutes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import harness  # bench/ is sys.path[0] when this file is run as a script
import yaml

ROOT = harness.BENCH_DIR.parent
DOC = ROOT / "docs" / "PERFORMANCE.md"
BEGIN, END = "<!-- scale:begin -->", "<!-- scale:end -->"
LEVELS = (10, 100, 300, 1000)
INTERVAL_S = 30.0  # the targets file's default probe interval
SCRAPE_EVERY_S = 15.0
ACCEPT = "application/openmetrics-text;version=1.0.0;q=0.9,text/plain;version=0.0.4;q=0.5"

# The goals at 1000 targets (docs/PERFORMANCE.md "Daemon scale").
GOAL_SCRAPE_MS = 250.0
GOAL_LATE_P99_MS = 1.0
GOAL_RSS_MB = 250.0


def proc_cpu_s(pid: int) -> float:
    """User + system CPU of a process so far, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_mem_mb(pid: int) -> dict[str, float]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = round(int(line.split()[1]) / 1024, 1)
    return out


def get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[bytes, Any]:
    conn = http.client.HTTPConnection(harness.HOST, port, timeout=120)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        return resp.read(), resp
    finally:
        conn.close()


def scrape(port: int) -> dict[str, Any]:
    """One Prometheus-like scrape; times are monotonic ns, comparable with the daemon's."""
    t0 = time.monotonic_ns()
    data, resp = get(port, "/metrics", {"Accept": ACCEPT, "Accept-Encoding": "gzip"})
    t1 = time.monotonic_ns()
    gzipped = resp.getheader("content-encoding") == "gzip"
    plain = gzip.decompress(data) if gzipped else data
    return {
        "t0_ns": t0,
        "t1_ns": t1,
        "wall_ms": round((t1 - t0) / 1e6, 1),
        "bytes_sent": len(data),
        "bytes": len(plain),
        "lines": plain.count(b"\n"),
        "gzip": gzipped,
        "status": resp.status,
    }


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"daemon exited {proc.returncode}")
        try:
            if get(port, "/readyz")[1].status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("daemon not ready")


def fetch_results(port: int, since_wall_s: float, seen: set[str]) -> list[dict[str, Any]]:
    """Full results (with per-event receive stamps) of probes that finished after a time."""
    listing = json.loads(get(port, "/-/probes")[0])
    out = []
    for entry in listing["recent"]:
        pid = entry.get("id")
        if not pid or pid in seen or entry.get("finished_at", 0) < since_wall_s:
            continue
        seen.add(pid)
        data, resp = get(port, f"/-/probes/{pid}")
        if resp.status == 200:
            out.append(json.loads(data))
    return out


def lateness(
    results: list[dict[str, Any]],
    send_log: Path,
    windows: list[tuple[int, int]],
    reads: list[tuple[int, int]],
) -> dict[str, Any]:
    """Token receive - send per token: for tokens sent during a scrape, and for all tokens
    but those sent while the benchmark read results from the daemon (`reads`)."""
    sent = {}
    with send_log.open() as f:
        for line in f:
            rec = json.loads(line)
            sent[rec["run_id"]] = rec
    during: list[int] = []
    every: list[int] = []
    unmatched = 0
    for r in results:
        rec = sent.get(r.get("run_id") or "")
        recv = r["events"]["recv_ns"]
        if rec is None or len(rec["sent_ns"]) < len(recv):
            unmatched += 1
            continue
        for i, recv_ns in enumerate(recv):
            if not (rec["tags"][i] or "").startswith("token:"):
                continue
            send_ns = rec["sent_ns"][i]
            late = recv_ns - send_ns
            if any(t0 <= send_ns <= t1 for t0, t1 in windows):
                during.append(late)
            if not any(t0 <= send_ns <= t1 for t0, t1 in reads):
                every.append(late)
    return {
        "during_scrape": harness.dist_ms(during),
        "all": harness.dist_ms(every),
        "results_joined": len(results) - unmatched,
        "results_unmatched": unmatched,
    }


def run_level(n: int, scrapes: int, workdir: Path, realtime: bool) -> dict[str, Any]:
    server_cpus, daemon_cpus = harness.pick_cpus()
    send_log = workdir / f"send-{n}.jsonl"
    server = subprocess.Popen(
        [sys.executable, str(harness.BENCH_DIR / "scale_server.py"), "--send-log", str(send_log)],
        stdout=subprocess.PIPE,
    )
    harness.place(server.pid, server_cpus, realtime)
    assert server.stdout is not None
    url = server.stdout.readline().decode().strip()
    config = {
        "defaults": {"interval": f"{INTERVAL_S:g}s", "assistant_id": "agent",
                     "labels": {"team": "bench"}},
        "targets": [{"name": f"agent-{i:04d}", "url": url} for i in range(n)],
    }  # fmt: skip
    cfg = workdir / f"config-{n}.yaml"
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    port = harness_free_port()
    env = {
        **os.environ,
        "LGSE_ORPHAN_SWEEP": "false",
        "LGSE_LOG_LEVEL": "warning",
        "LGSE_MAX_CONCURRENCY": "256",
        # Enough recent results to hold every probe that overlaps a scrape until it is read
        # (about 7 s of results at 1000 targets).
        "LGSE_HISTORY_SIZE": "250",
    }
    log = (workdir / f"daemon-{n}.log").open("wb")
    daemon = subprocess.Popen(
        [sys.executable, "-m", "exporter", "run", "--config", str(cfg),
         "--listen", f"{harness.HOST}:{port}"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT,
    )  # fmt: skip
    # The daemon runs under the normal scheduler, as in production; only the server is
    # SCHED_FIFO, so that it sends on time (docs/PERFORMANCE.md "Daemon scale method").
    harness.place(daemon.pid, daemon_cpus, False)
    level: dict[str, Any] = {"targets": n, "nodes": 5, "tokens_per_node": 20}
    try:
        wait_ready(port, daemon)
        time.sleep(INTERVAL_S)  # every target probed once: full histograms, every node
        level["cold_scrape"] = scrape(port)  # renders every target's block the first time
        print(f"  n={n} cold scrape {level['cold_scrape']['wall_ms']} ms", flush=True)
        cpu0, runs0 = proc_cpu_s(daemon.pid), stats_runs(url)
        t_start = time.monotonic()
        results: list[dict[str, Any]] = []
        seen: set[str] = set()
        rows = []
        reads: list[tuple[int, int]] = []
        for k in range(scrapes):
            time.sleep(max(0.0, t_start + (k + 1) * SCRAPE_EVERY_S - 10 - time.monotonic()))
            wall0 = time.time()
            row = scrape(port)
            rows.append(row)
            time.sleep(4.0)  # the probes that overlapped the scrape have finished
            f0 = time.monotonic_ns()
            results.extend(fetch_results(port, wall0 - 1, seen))
            # Reading results runs on the daemon's loop too: its own lateness is left out.
            reads.append((f0, time.monotonic_ns()))
            print(f"  n={n} scrape {k + 1}: {row['wall_ms']} ms, {row['bytes_sent']} B", flush=True)
        cpu1, runs1 = proc_cpu_s(daemon.pid), stats_runs(url)
        level["mem_mb"] = proc_mem_mb(daemon.pid)
        level["scrapes"] = rows
        level["probes"] = runs1 - runs0
        level["cpu_s"] = round(cpu1 - cpu0, 2)
        level["cpu_ms_per_probe"] = round(1000 * (cpu1 - cpu0) / max(1, runs1 - runs0), 2)
        level["window_s"] = round(time.monotonic() - t_start, 1)
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)
        log.close()
        server.terminate()
        server.wait(timeout=60)
    walls = sorted(r["wall_ms"] for r in level["scrapes"])
    level["scrape_ms"] = {"p50": harness.quantile(walls, 0.5), "max": walls[-1]}
    windows = [(r["t0_ns"], r["t1_ns"]) for r in level["scrapes"]]
    level["lateness"] = lateness(results, send_log, windows, reads)
    return level


def harness_free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind((harness.HOST, 0))
        port: int = s.getsockname()[1]
        return port


def stats_runs(url: str) -> int:
    port = int(url.rsplit(":", 1)[1])
    return int(json.loads(get(port, "/bench/stats")[0])["runs"])


def table(run: dict[str, Any]) -> str:
    m = run["machine"]
    out = [
        f"Run: {run['started']} · `bench/results/{run['file']}` · daemon at {run['commit']}",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), Python {m['python']}, load average "
        f"at start {', '.join(f'{x:.2f}' for x in m['loadavg'])}. Probes every "
        f"{INTERVAL_S:g} s, 5 nodes × 20 tokens each; OpenMetrics + gzip scrape every "
        f"{SCRAPE_EVERY_S:g} s. Server on one CPU"
        f"{' (SCHED_FIFO)' if run['realtime'] else ''}, daemon on the other (normal "
        "scheduler).",
        "",
        "| targets | probes/s | CPU ms / probe | RSS (MB) | `/metrics` lines | `/metrics` MB "
        "(gzip MB) | cold scrape (ms) | scrape p50 / max (ms) | stamp late p99 during "
        "scrapes (ms, n) | stamp late p99 all (ms) |",
        "| --: | --: | --: | --: | --: | --: | --: | --: | --: | --: |",
    ]
    for lv in run["levels"]:
        last = lv["scrapes"][-1]
        late = lv["lateness"]
        out.append(
            f"| {lv['targets']} | {lv['probes'] / lv['window_s']:.1f} | "
            f"{lv['cpu_ms_per_probe']} | {lv['mem_mb'].get('VmRSS')} | {last['lines']} | "
            f"{last['bytes'] / 1e6:.1f} ({last['bytes_sent'] / 1e6:.2f}) | "
            f"{lv['cold_scrape']['wall_ms']} | {lv['scrape_ms']['p50']} / "
            f"{lv['scrape_ms']['max']} | {late['during_scrape']['p99']} "
            f"({late['during_scrape']['n']}) | {late['all']['p99']} |"
        )
    top = max(run["levels"], key=lambda lv: lv["targets"])
    late = top["lateness"]
    added_ms = (late["during_scrape"]["p99"] or 0) - (late["all"]["p99"] or 0)
    checks = [
        (f"scrape <= {GOAL_SCRAPE_MS:g} ms at {top['targets']} targets (max of the steady "
         "scrapes)", f"{top['scrape_ms']['max']} ms", top["scrape_ms"]["max"] <= GOAL_SCRAPE_MS),
        ("gzip when the scraper accepts it", "yes" if top["scrapes"][-1]["gzip"] else "no",
         top["scrapes"][-1]["gzip"]),
        (f"tokens sent during a scrape stamped <= {GOAL_LATE_P99_MS:g} ms late, p99",
         f"{top['lateness']['during_scrape']['p99']} ms",
         (top["lateness"]["during_scrape"]["p99"] or 0) <= GOAL_LATE_P99_MS),
        (f"what a scrape adds to stamping lateness (p99 during scrapes - p99 all) <= "
         f"{GOAL_LATE_P99_MS:g} ms", f"{added_ms:.2f} ms", added_ms <= GOAL_LATE_P99_MS),
        (f"RSS <= {GOAL_RSS_MB:g} MB", f"{top['mem_mb'].get('VmRSS')} MB",
         (top["mem_mb"].get("VmRSS") or 0) <= GOAL_RSS_MB),
    ]  # fmt: skip
    out += ["", "| goal (at the largest level) | measured | pass |", "| --- | --- | --- |"]
    out += [f"| {g} | {v} | {'yes' if ok else 'no'} |" for g, v, ok in checks]
    return "\n".join(out)


def write_doc(text: str) -> None:
    doc = DOC.read_text()
    start, end = doc.index(BEGIN) + len(BEGIN), doc.index(END)
    DOC.write_text(doc[:start] + "\n" + text + "\n" + doc[end:])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--levels", default=",".join(map(str, LEVELS)), help="targets per level")
    p.add_argument("--scrapes", type=int, default=4, help="steady scrapes per level")
    p.add_argument("--no-doc", action="store_true", help="do not rewrite docs/PERFORMANCE.md")
    p.add_argument("--no-realtime", action="store_true", help="no SCHED_FIFO even if allowed")
    args = p.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    started = dt.datetime.now(dt.UTC).replace(microsecond=0)
    run: dict[str, Any] = {
        "started": started.isoformat(),
        "commit": harness.git_commit(ROOT),
        "machine": harness.machine_info(),
        # As bench/run.py: SCHED_FIFO when allowed, so other tenants' processes do not
        # time-slice the server or the daemon (docs/PERFORMANCE.md "Isolation").
        "realtime": harness.realtime_allowed() and not args.no_realtime,
        "levels": [],
    }
    with tempfile.TemporaryDirectory(prefix="lgse-scale-") as tmp:
        for n in levels:
            print(f"level {n} targets ...", flush=True)
            run["levels"].append(run_level(n, args.scrapes, Path(tmp), run["realtime"]))
    out_dir = harness.BENCH_DIR / "results"
    out_dir.mkdir(exist_ok=True)
    run["file"] = f"scale-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    (out_dir / run["file"]).write_text(json.dumps(run, indent=1))
    text = table(run)
    print(text)
    if not args.no_doc:
        write_doc(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
