"""Soak run: the real daemon probing 50 targets for a bounded time, sampled from outside.

What runs (all on 127.0.0.1, all bounded; `make soak SOAK_DURATION=<seconds>`):

* `soak/server.py` in its own process: LangGraph-wire streams for every target (healthy
  stateless and thread-mode runs, plus a few `run_error`, HTTP 500 and stalling targets, so the
  failure, timeout and cleanup paths are soaked as well as the happy path);
* an OTLP receiver in this process (gRPC), so the daemon's span batch export runs too;
* the daemon itself (`python -m exporter run`, tests/support/daemon.py), every target on a 5 s
  interval.

Every `--sample-every` seconds (10 s) the runner reads from outside the daemon process:
RSS (`VmRSS` of /proc/<pid>/status), open fds (`/proc/<pid>/fd`, sockets counted apart), threads,
CPU share, and the latency of `GET /healthz`. The daemon answers `/healthz` from the same event
loop that runs the probes, so its latency, pinged every 0.5 s from a separate thread, is a fair
proxy for event-loop lag (it also includes a loopback round trip, ~0.2 ms). It also scrapes
`/metrics` (probes counted, skips) and `/-/probes` (how late scheduled probes started).

Verdict: after the warm-up (the first 20% of the run), RSS and fds must be flat: the median of the
last third of the samples within 10% of the median of the first post-warm-up third (fds are
checked in total and without sockets, whose number follows the probes in flight). Plus: no
`internal` failure or sink error, no skipped probe, every scheduled probe started < 1 s late, and
the daemon exits 0 on SIGTERM.

The result table goes into docs/RELIABILITY.md between the `soak:begin`/`soak:end` markers (the
rest of that file is left as it is); raw samples go to soak/results/last.json.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
from prometheus_client.openmetrics.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from exporter import __version__  # noqa: E402  (needs the path above)
from tests.support.daemon import DaemonProcess  # noqa: E402
from tests.support.otlp_receiver import OTLPReceiver  # noqa: E402

DOC = ROOT / "docs" / "RELIABILITY.md"
RESULTS = ROOT / "soak" / "results" / "last.json"
BEGIN, END = "<!-- soak:begin -->", "<!-- soak:end -->"
CLK_TCK = os.sysconf("SC_CLK_TCK")
OPENMETRICS = {"Accept": "application/openmetrics-text; version=1.0.0"}


# ------------------------------------------------------------------ targets


def target_kinds(n: int) -> list[str]:
    """Per target index, its server behaviour: mostly healthy, with every failure path present."""
    kinds = ["ok"] * n
    special = ["thread", "thread", "boom", "boom", "http500", "stall"]
    for i, kind in enumerate(special[: max(0, n - 1)]):
        kinds[n - 1 - i] = kind
    return kinds


def daemon_config(server_url: str, n: int, interval_s: float) -> dict[str, Any]:
    targets: list[dict[str, Any]] = []
    for i, kind in enumerate(target_kinds(n)):
        name = f"{kind}-{i:02d}"
        target: dict[str, Any] = {
            "name": name,
            "url": f"{server_url}/{name}",
            "assistant_id": "agent",
        }
        if kind == "thread":
            target["mode"] = "thread"
        if kind == "stall":
            # Stalls after the metadata event; ends on the idle deadline, inside the interval.
            target["timeout"] = {"idle": "3s", "total": "4s"}
        targets.append(target)
    return {
        "defaults": {
            "interval": f"{interval_s:g}s",
            "timeout": {"idle": "8s", "total": f"{max(10.0, interval_s):g}s"},
            "labels": {"env": "soak"},
        },
        "targets": targets,
    }


# ------------------------------------------------------------------ sampling


def proc_status(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "Threads"):
            out[key] = int(value.split()[0])
    return out


def fds(pid: int) -> tuple[int, int]:
    """(open fds, of which sockets)."""
    total = sockets = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        total += 1
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:"):
                sockets += 1
        except OSError:
            pass  # closed between listdir and readlink
    return total, sockets


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14, 15 of proc(5))


class Pinger(threading.Thread):
    """`GET /healthz` every `every_s` on a keep-alive connection; latencies since the last take."""

    def __init__(self, url: str, every_s: float = 0.5) -> None:
        super().__init__(name="healthz-pinger", daemon=True)
        self.url = url
        self.every_s = every_s
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._ms: list[float] = []
        self.errors = 0

    def run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self.stop.wait(self.every_s):  # bounded by stop, set by the runner
                t0 = time.perf_counter()
                try:
                    ok = client.get(self.url + "/healthz").status_code == 200
                except httpx.HTTPError:
                    ok = False
                ms = (time.perf_counter() - t0) * 1000
                with self._lock:
                    if ok:
                        self._ms.append(ms)
                    else:
                        self.errors += 1

    def take(self) -> list[float]:
        with self._lock:
            out, self._ms = self._ms, []
        return out


def metric_sum(text: str, name: str, **match: str) -> float:
    total = 0.0
    for family in text_string_to_metric_families(text):  # type: ignore[no-untyped-call]
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in match.items()):
                total += s.value
    return total


@dataclass
class Sample:
    t_s: float
    rss_kb: int
    hwm_kb: int
    threads: int
    fds: int
    sockets: int
    cpu_pct: float
    healthz_p50_ms: float | None
    healthz_max_ms: float | None
    healthz_n: int
    scrape_ms: float  # one OpenMetrics /metrics scrape, as Prometheus would make it
    probes: int  # runs_total over all targets
    failures: int  # runs_total{outcome="failure"}
    skipped: int
    max_late_s: float  # largest started - planned of scheduled probes in `/-/probes`


@dataclass
class Soak:
    args: dict[str, Any]
    machine: dict[str, Any]
    samples: list[Sample] = field(default_factory=list)
    requests: dict[str, int] = field(default_factory=dict)
    exit_code: int | None = None
    stop_s: float | None = None
    log_errors: list[str] = field(default_factory=list)
    internal_failures: int = 0
    sink_errors: int = 0
    otlp_spans: int = 0
    verdict: dict[str, Any] = field(default_factory=dict)


def _commit() -> str:
    def git(*a: str) -> str:
        out = subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, check=False)
        return out.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no", "exporter")
    return head + (" + uncommitted exporter/ changes" if dirty else "")


def machine() -> dict[str, Any]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.partition(":")[2].strip()
            break
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "exporter": __version__,
        "commit": _commit(),
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
    }


# ------------------------------------------------------------------ the run


def start_server(max_seconds: float) -> tuple[subprocess.Popen[bytes], str]:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "soak" / "server.py"), "--max-seconds", f"{max_seconds:g}"],
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"soak server exited {proc.wait()}")
    return proc, f"http://127.0.0.1:{orjson.loads(line)['port']}"


def run(args: argparse.Namespace) -> Soak:
    soak = Soak(args=vars(args).copy(), machine=machine())
    server, server_url = start_server(args.duration + 300)
    workdir = Path(tempfile.mkdtemp(prefix="lgse-soak-"))
    try:
        with OTLPReceiver() as rx:
            env = {"LGSE_MAX_CONCURRENCY": str(args.targets)}
            if not args.no_otlp:
                env |= {
                    "OTEL_EXPORTER_OTLP_ENDPOINT": rx.grpc_endpoint,
                    "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                    "OTEL_EXPORTER_OTLP_INSECURE": "true",
                }
            config = daemon_config(server_url, args.targets, args.interval)
            daemon = DaemonProcess(config, workdir, env=env).start()
            assert daemon.proc is not None
            pid = daemon.proc.pid
            print(f"soak: daemon pid {pid} on {daemon.url}, {args.targets} targets, "
                  f"{args.duration:g}s, log {daemon.log_path}", flush=True)  # fmt: skip
            pinger = Pinger(daemon.url)
            pinger.start()
            t0 = time.monotonic()
            last_ticks, last_t = cpu_ticks(pid), t0
            try:
                with httpx.Client(base_url=daemon.url, timeout=30) as client:
                    n = 0
                    while True:  # bounded: one sample per period until the duration is over
                        n += 1
                        next_t = t0 + n * args.sample_every
                        if next_t > t0 + args.duration + 1e-6:
                            break
                        time.sleep(max(0.0, next_t - time.monotonic()))
                        now = time.monotonic()
                        st, (nfd, nsock), ticks = proc_status(pid), fds(pid), cpu_ticks(pid)
                        cpu = 100.0 * (ticks - last_ticks) / CLK_TCK / (now - last_t)
                        last_ticks, last_t = ticks, now
                        ms = sorted(pinger.take())
                        # OpenMetrics, as Prometheus asks for it (exemplars: the largest render).
                        t_scrape = time.perf_counter()
                        metrics = client.get("/metrics", headers=OPENMETRICS).text
                        scrape_ms = (time.perf_counter() - t_scrape) * 1000
                        page = client.get("/-/probes").json()
                        late = [
                            s["started"] - s["planned"]
                            for starts in page["schedule"].values()
                            for s in starts
                            if s["started"] >= time.time() - args.sample_every
                        ]
                        sample = Sample(
                            t_s=round(now - t0, 1),
                            rss_kb=st["VmRSS"],
                            hwm_kb=st["VmHWM"],
                            threads=st["Threads"],
                            fds=nfd,
                            sockets=nsock,
                            cpu_pct=round(cpu, 1),
                            healthz_p50_ms=round(statistics.median(ms), 2) if ms else None,
                            healthz_max_ms=round(ms[-1], 2) if ms else None,
                            healthz_n=len(ms),
                            scrape_ms=round(scrape_ms, 1),
                            probes=int(metric_sum(metrics, "langgraph_probe_runs_total")),
                            failures=int(
                                metric_sum(metrics, "langgraph_probe_runs_total", outcome="failure")
                            ),
                            skipped=int(
                                metric_sum(metrics, "langgraph_probe_probes_skipped_total")
                            ),
                            max_late_s=round(max(late, default=0.0), 4),
                        )
                        soak.samples.append(sample)
                        soak.internal_failures = int(
                            metric_sum(metrics, "langgraph_probe_runs_total", reason="internal")
                        )
                        soak.sink_errors = int(
                            metric_sum(metrics, "langgraph_probe_sink_errors_total")
                        )
                        soak.otlp_spans += len(rx.spans())
                        rx.clear()  # keep this process flat too
                        print(_row(sample), flush=True)
            finally:
                pinger.stop.set()
                pinger.join()
                t_stop = time.monotonic()
                daemon.signal(signal.SIGTERM)
                try:
                    soak.exit_code = daemon.wait(60)
                except subprocess.TimeoutExpired:
                    daemon.stop()
                soak.stop_s = round(time.monotonic() - t_stop, 2)
                soak.otlp_spans += len(rx.spans())
        soak.requests = httpx.get(server_url + "/-/stats", timeout=10).json()["requests"]
        for line in daemon.log().splitlines():
            if line.startswith("{"):
                record = orjson.loads(line)
                if record.get("level") in ("error", "critical"):
                    soak.log_errors.append(line[:300])
            elif "Traceback" in line:
                soak.log_errors.append(line[:300])
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    soak.verdict = verdict(soak, args)
    return soak


# ------------------------------------------------------------------ verdict and report


def _median(values: list[int]) -> float:
    return float(statistics.median(values))


def _value(s: Sample, key: str) -> int:
    return s.fds - s.sockets if key == "other_fds" else int(getattr(s, key))


def verdict(soak: Soak, args: argparse.Namespace) -> dict[str, Any]:
    samples = soak.samples
    post = [s for s in samples if s.t_s >= args.warmup * args.duration]
    checks: dict[str, Any] = {}
    if len(post) >= 4:
        # Medians over the first and the last third after warm-up: one sample catches whatever
        # probes happen to be in flight (each holds a socket), a third of them evens that out.
        k = max(3, len(post) // 3)
        head, tail = post[:k], post[-k:]
        for key in ("rss_kb", "fds", "other_fds"):
            base = _median([_value(s, key) for s in head])
            end = _median([_value(s, key) for s in tail])
            change = (end - base) / base if base else 0.0
            checks[f"{key}_flat"] = {
                "post_warmup": base,
                "end": end,
                "change_pct": round(100 * change, 1),
                "ok": change <= 0.10,  # shrinking is fine
            }
        # A least-squares slope says more than two end points about a slow leak.
        xs = [s.t_s / 60 for s in post]
        ys = [s.rss_kb for s in post]
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
            (x - mx) ** 2 for x in xs
        )
        checks["rss_slope_kb_per_min"] = round(slope, 1)
    else:
        checks["too_short"] = {"ok": False, "samples_after_warmup": len(post)}
    late = max((s.max_late_s for s in samples), default=0.0)
    checks["schedule"] = {"max_late_s": late, "ok": late < 1.0}
    skipped = samples[-1].skipped if samples else 0
    checks["no_skips"] = {"skipped": skipped, "ok": skipped == 0}
    checks["no_internal_errors"] = {
        "internal_failures": soak.internal_failures,
        "sink_errors": soak.sink_errors,
        "error_log_lines": len(soak.log_errors),
        "ok": soak.internal_failures == 0 and soak.sink_errors == 0 and not soak.log_errors,
    }
    checks["clean_exit"] = {"exit_code": soak.exit_code, "stop_s": soak.stop_s,
                            "ok": soak.exit_code == 0}  # fmt: skip
    if samples:
        # Every probe is counted once: at most one probe per target can be in flight at a scrape.
        received = sum(soak.requests.values())
        counted = samples[-1].probes
        checks["counted_once"] = {
            "requests_received": received,
            "probes_counted_at_last_sample": counted,
            "ok": counted <= received <= counted + 2 * args.targets,
        }
    ok = all(v["ok"] for v in checks.values() if isinstance(v, dict) and "ok" in v)
    return {"ok": ok, "checks": checks}


def _fmt(v: float | None, spec: str = ".1f") -> str:
    return "–" if v is None else format(v, spec)


def _row(s: Sample) -> str:
    return (
        f"| {s.t_s:6.0f} | {s.rss_kb / 1024:6.1f} | {s.fds:4d} | {s.sockets:4d} | {s.threads:3d} "
        f"| {s.cpu_pct:5.1f} | {_fmt(s.healthz_p50_ms, '.2f')} | {_fmt(s.healthz_max_ms, '.2f')} "
        f"| {s.scrape_ms:5.0f} | {s.max_late_s * 1000:6.1f} | {s.probes:6d} | {s.failures:5d} "
        f"| {s.skipped:3d} |"
    )


HEADER = (
    "| t (s) | RSS (MiB) | fds | sockets | threads | CPU % | /healthz p50 (ms) "
    "| /healthz max (ms) | /metrics scrape (ms) | max start lateness (ms) | probes | failed "
    "| skipped |\n"
    "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
)


def report(soak: Soak, args: argparse.Namespace) -> str:
    m = soak.machine
    v = soak.verdict
    c = v["checks"]
    kinds = target_kinds(args.targets)
    mix = ", ".join(f"{kinds.count(k)} {k}" for k in dict.fromkeys(kinds))
    short = " (a **short run**, not the default 15 minutes)" if args.duration < 900 else ""
    lines = [
        BEGIN,
        f"### Soak run: {args.duration / 60:.1f} min{short}, {m['date_utc']} UTC",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB RAM, Linux {m['kernel']}, "
        f"Python {m['python']}, exporter {m['exporter']} ({m['commit']}). The soak server, "
        "this runner (with the OTLP receiver and the /healthz pinger) and the daemon share "
        "these cores.",
        "",
        f"Load: {args.targets} targets ({mix}), every {args.interval:g} s, OTLP "
        f"{'off' if args.no_otlp else 'on (gRPC, to a receiver in the runner)'}; "
        f"a sample every {args.sample_every:g} s; warm-up = first {args.warmup:.0%}. "
        f"Command: `make soak SOAK_DURATION={args.duration:g}`.",
        "",
        HEADER,
        *(_row(s) for s in soak.samples),
        "",
        "| check | result | ok |",
        "| --- | --- | --- |",
    ]
    for name, check in c.items():
        if isinstance(check, dict):
            detail = ", ".join(f"{k}={val}" for k, val in check.items() if k != "ok")
            lines.append(f"| {name} | {detail} | {'yes' if check.get('ok') else '**no**'} |")
        else:
            lines.append(f"| {name} | {check} | |")
    lines += [
        "",
        f"Spans received by the OTLP receiver: {soak.otlp_spans}. "
        f"Requests received by the soak server: {sum(soak.requests.values())}.",
        "",
        f"**Verdict: {'PASS' if v['ok'] else 'FAIL'}.**",
    ]
    if soak.log_errors:
        lines += ["", "Error log lines (first 5):", "", "```", *soak.log_errors[:5], "```"]
    lines.append(END)
    return "\n".join(lines) + "\n"


def write_doc(section: str) -> None:
    text = (
        DOC.read_text()
        if DOC.exists()
        else "# Reliability\n\n## Soak\n\n" + BEGIN + "\n" + END + "\n"
    )
    if BEGIN in text and END in text:
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
        text = head + section.rstrip("\n") + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section
    DOC.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Bounded soak of the exporter daemon.")
    parser.add_argument("--duration", type=float,
                        default=float(os.environ.get("SOAK_DURATION", "900")),
                        help="seconds of probing (default $SOAK_DURATION or 900)")  # fmt: skip
    parser.add_argument("--targets", type=int, default=50)
    parser.add_argument("--interval", type=float, default=5.0, help="probe interval, seconds")
    parser.add_argument("--sample-every", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=0.2, help="share of the run ignored")
    parser.add_argument("--no-otlp", action="store_true", help="do not export spans")
    parser.add_argument("--no-doc", action="store_true", help="do not rewrite the doc")
    args = parser.parse_args(argv)
    if args.duration < 3 * args.sample_every:
        parser.error("--duration must cover at least three samples")
    print(HEADER, flush=True)
    soak = run(args)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_bytes(orjson.dumps(asdict(soak), option=orjson.OPT_INDENT_2))
    section = report(soak, args)
    if not args.no_doc:
        write_doc(section)
    print(section)
    return 0 if soak.verdict["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
