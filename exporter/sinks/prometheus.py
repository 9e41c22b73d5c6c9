"""Prometheus exposition of probe results (README "How it measures"), from one custom collector.

Everything is kept per target, so a target removed by a reload loses all its series at once
(`retain`), histograms and counters included; Prometheus handles the counter reset. Histograms
carry the probe's trace id as an exemplar (OpenMetrics), the same id the probe sent as
`traceparent` and the OTLP sink used for its root span.

Example exposition (abridged):

    # TYPE langgraph_probe_inter_token_latency_seconds histogram
    langgraph_probe_inter_token_latency_seconds_bucket{target="demo-agent",assistant="agent",
        node="agent",le="0.05"} 16.0 # {trace_id="4bf9..."} 0.0304 1.7e9
    # TYPE langgraph_probe_success gauge
    langgraph_probe_success{target="demo-agent",assistant="agent"} 1.0
"""

from __future__ import annotations

import dataclasses
import platform
import struct
import threading
import time
import zlib
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import cast

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import Exemplar, Metric, Sample
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as _generate_openmetrics
from prometheus_client.utils import floatToGoString as _float_to_go
from zlib_ng.zlib_ng import crc32_combine

from exporter import __version__
from exporter.core.errors import FailureKind
from exporter.core.result import BUFFERED_GAP_S, ProbeResult
from exporter.core.stats import quantile
from exporter.sinks import SKIP_REASONS, Trigger

__all__ = ["NS", "PrometheusSink", "probe_exposition"]

#: prometheus_client's value formatting (Go's, for `le` and values); typed here.
_go_float = cast(Callable[[float], str], _float_to_go)

NS = "langgraph_probe_"
OTHER_NODE = "__other__"

#: TTFT and durations: 0.01 … 81.92 doubling, plus the usual SLO thresholds.
LATENCY_BUCKETS = tuple(
    sorted({round(0.01 * 2**i, 2) for i in range(14)} | {0.5, 1.0, 2.0, 5.0, 163.84})
)
#: Gaps and TPOT. Real inter-token latency mostly lies between 5 and 50 ms, so that range has a
#: bound every 5 ms: a regression from 15 to 45 ms moves p95 across several buckets.
GAP_BUCKETS = (
    0.001, 0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.035, 0.04, 0.045, 0.05,
    0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip

_RUN_HISTS = {
    "time_to_headers_seconds": "Response headers minus the run request.",
    "time_to_first_event_seconds": "The `metadata` event minus the run request (queueing).",
    "time_to_first_token_seconds": (
        "First token of any kind (reasoning included) minus the run request (run TTFT)."
    ),
    "time_to_first_answer_token_seconds": (
        "First non-reasoning token (text or tool call) minus the run request."
    ),
    "run_duration_seconds": "End of the stream minus the run request.",
}
_NODE_HISTS = {
    "node_time_to_first_token_seconds": ("First token minus the node's tasks start.", False),
    "node_time_to_first_answer_token_seconds": (
        "First non-reasoning token minus the node's tasks start.",
        False,
    ),
    "inter_token_latency_seconds": ("Gap between consecutive tokens of one LLM call.", True),
    "time_per_output_token_seconds": ("(last - first token) / (output tokens - 1).", True),
    "node_duration_seconds": ("Node tasks end minus tasks start.", False),
    # Protocol v2 only: server time beside client time (docs/V2.md §4).
    "server_inter_token_latency_seconds": (
        "Gap between consecutive tokens of one LLM call on the server's clock (v2).",
        True,
    ),
    "delivery_jitter_seconds": (
        "|received gap - server gap| between consecutive tokens (v2): steady server gaps with"
        " a wide jitter mean the delivery, not the model, is uneven.",
        True,
    ),
}


class _Hist:
    __slots__ = ("bounds", "counts", "exemplar_text", "exemplars", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.exemplars: list[Exemplar | None] = [None] * (len(bounds) + 1)
        # Each exemplar's OpenMetrics text, made by the first render that needs it.
        self.exemplar_text: list[str | None] = [None] * (len(bounds) + 1)
        self.sum = 0.0

    def copy(self) -> _Hist:
        new = _Hist.__new__(_Hist)
        new.bounds, new.counts, new.sum = self.bounds, list(self.counts), self.sum
        new.exemplars = list(self.exemplars)
        new.exemplar_text = list(self.exemplar_text)
        return new

    def observe(self, value: float, trace_id: str | None, now_s: float) -> None:
        i = bisect_left(self.bounds, value)
        self.counts[i] += 1
        self.sum += value
        if trace_id:
            self.exemplars[i] = Exemplar({"trace_id": trace_id}, value, now_s)
            self.exemplar_text[i] = None

    def samples(self, name: str, labels: dict[str, str]) -> Iterator[Sample]:
        acc = 0
        for i, le in enumerate((*self.bounds, float("inf"))):
            acc += self.counts[i]
            le_s = "+Inf" if le == float("inf") else repr(float(le))
            yield Sample(name + "_bucket", {**labels, "le": le_s}, acc, None, self.exemplars[i])
        yield Sample(name + "_count", labels, acc, None, None)
        yield Sample(name + "_sum", labels, self.sum, None, None)

    def render(self, prefixes: _Prefixes, openmetrics: bool) -> str:
        """The lines `samples()` gives, formatted as prometheus_client would (exemplars: OM)."""
        lines = []
        acc = 0
        exemplars = self.exemplars if openmetrics else self._no_exemplars
        head, tail = prefixes.bucket_head, prefixes.bucket_tail
        for i, (le, count, ex) in enumerate(zip(prefixes.les, self.counts, exemplars, strict=True)):
            acc += count
            value = f"{acc}.0" if acc < 1_000_000 else _go_float(acc)
            if ex is None:
                lines.append(f"{head}{le}{tail}{value}\n")
            else:
                text = self.exemplar_text[i]
                if text is None:
                    text = self.exemplar_text[i] = _exemplar(ex)
                lines.append(f"{head}{le}{tail}{value}{text}\n")
        value = f"{acc}.0" if acc < 1_000_000 else _go_float(acc)
        lines.append(f"{prefixes.count}{value}\n{prefixes.sum}{_go_float(self.sum)}\n")
        return "".join(lines)

    @property
    def _no_exemplars(self) -> list[None]:
        return [None] * len(self.counts)


def _exemplar(ex: Exemplar) -> str:
    labels = "{" + _label_str(ex.labels) + "}"
    if ex.timestamp is None:
        return f" # {labels} {_go_float(ex.value)}"
    return f" # {labels} {_go_float(ex.value)} {ex.timestamp}"


@dataclass
class _TargetState:
    assistant: str
    labels: dict[str, str]
    run_hists: dict[str, _Hist] = field(default_factory=dict)
    node_hists: dict[tuple[str, str], _Hist] = field(default_factory=dict)
    phase_hists: dict[str, _Hist] = field(default_factory=dict)
    reasoning_tokens: dict[str, int] = field(default_factory=dict)
    runs: dict[tuple[str, str], int] = field(default_factory=dict)
    on_demand_runs: dict[tuple[str, str], int] = field(default_factory=dict)
    tokens: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)
    nodes: set[str] = field(default_factory=set)
    last: ProbeResult | None = None
    last_success_s: float | None = None
    last_ratio: dict[str, float] = field(default_factory=dict)
    # Kept across probes that fail before a handshake (a timeout must not hide the expiry).
    cert_not_after_s: float | None = None
    # Exposition cache (`PrometheusSink.exposition`): bumped by every change of this state;
    # a rendering per format (text, OpenMetrics) is reused while its version matches.
    version: int = 0
    rendered: dict[tuple[bool, bool], _Rendered] = field(default_factory=dict)
    prefixes: dict[tuple[str, str], _Prefixes] = field(default_factory=dict)

    def snapshot(self) -> _TargetState:
        """A copy that later `record()` calls do not change (cheap: counts, not samples)."""
        return dataclasses.replace(
            self,
            run_hists={k: h.copy() for k, h in self.run_hists.items()},
            node_hists={k: h.copy() for k, h in self.node_hists.items()},
            phase_hists={k: h.copy() for k, h in self.phase_hists.items()},
            reasoning_tokens=dict(self.reasoning_tokens),
            runs=dict(self.runs),
            on_demand_runs=dict(self.on_demand_runs),
            tokens=dict(self.tokens),
            skipped=dict(self.skipped),
            nodes=set(self.nodes),
            last_ratio=dict(self.last_ratio),
        )


class PrometheusSink:
    """Accumulates results per target and exposes them through its own registry."""

    name = "prometheus"

    def __init__(self, *, max_nodes_per_target: int = 50, location: str = "") -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._max_nodes = max_nodes_per_target
        # `LGSE_LOCATION`: one more label on every series of this sink (docs/SCALING.md).
        self._const_labels = {"location": location} if location else {}
        #: (shard, shards, targets of this shard, targets in the file): `set_shard`.
        self.shard: tuple[int, int, int, int] = (0, 1, 0, 0)
        self._lock = threading.Lock()
        self._targets: dict[str, _TargetState] = {}
        self._sink_errors: dict[str, int] = {}
        self._orphans_deleted = 0
        self.reload_ok = 1.0
        self.reload_ok_timestamp_s = time.time()
        self.in_flight: Callable[[], int] = lambda: 0
        # (openmetrics, gzip) of every scrape so far: the renderings `refresh()` keeps ready.
        self._kinds_scraped: set[tuple[bool, bool]] = set()
        self.registry.register(self)
        # The exporter's own health: process_resident_memory_bytes, _cpu_seconds_total, _open_fds.
        self._process: ProcessCollector | None = ProcessCollector(registry=self.registry)

    # --------------------------------------------------------------- feeding

    def declare(self, target: str, assistant: str, labels: dict[str, str]) -> None:
        """Make a target's series exist (at zero) before its first probe, so rate() sees it.

        A target whose assistant or static labels changed starts afresh: its old series would
        otherwise linger under the old label values.
        """
        with self._lock:
            st = self._targets.get(target)
            if st is None or st.labels != labels or st.assistant != assistant:
                st = self._targets[target] = _TargetState(assistant, labels)
            st.version += 1
            # Every counter exists at zero before its first increment, so rate() and the
            # dashboard see a healthy exporter as 0, not "no data".
            for runs in (st.runs, st.on_demand_runs):
                runs.setdefault(("success", ""), 0)
                for kind in FailureKind:
                    runs.setdefault(("failure", kind.value), 0)
            for reason in SKIP_REASONS:
                st.skipped.setdefault(reason, 0)

    def declare_sinks(self, sinks: Iterable[str]) -> None:
        """Make `sink_errors_total{sink}` exist at zero for every configured sink."""
        with self._lock:
            for sink in sinks:
                self._sink_errors.setdefault(sink, 0)

    def retain(self, targets: Iterable[str]) -> None:
        """Forget every series of targets no longer configured."""
        keep = set(targets)
        with self._lock:
            for name in list(self._targets):
                if name not in keep:
                    del self._targets[name]

    def count_skip(self, target: str, reason: str) -> None:
        with self._lock:
            st = self._targets.get(target)
            if st is not None:
                st.version += 1
                st.skipped[reason] = st.skipped.get(reason, 0) + 1

    def count_sink_error(self, sink: str) -> None:
        with self._lock:
            self._sink_errors[sink] = self._sink_errors.get(sink, 0) + 1

    def count_orphans_deleted(self, count: int) -> None:
        """Probe threads a dead exporter left on a server, deleted by the sweeper."""
        with self._lock:
            self._orphans_deleted += count

    def set_shard(self, shard: int, shards: int, targets: int, configured: int) -> None:
        """This replica's shard of `shards`, its target count and the file's (shard_* gauges)."""
        self.shard = (shard, shards, targets, configured)

    def set_reload(self, ok: bool) -> None:
        self.reload_ok = 1.0 if ok else 0.0
        if ok:
            self.reload_ok_timestamp_s = time.time()

    def _node(self, st: _TargetState, node: str) -> str:
        if node in st.nodes:
            return node
        if len(st.nodes) < self._max_nodes:
            st.nodes.add(node)
            return node
        return OTHER_NODE

    def record(self, result: ProbeResult, trigger: Trigger = "scheduled") -> None:
        """Count a result. An on-demand result (`GET /probe`) only counts in
        `on_demand_runs_total`: it stays out of the SLO series (`runs_total`, the histograms,
        `success`, ...), so nobody who can reach `/probe` can skew them (docs/RELIABILITY.md)."""
        now_s = time.time()
        tid = result.trace_id
        reason = "" if result.failure is None else result.failure.kind.value
        key = (result.outcome, reason)
        with self._lock:
            st = self._targets.get(result.target)
            if st is None:
                return  # not (or no longer) configured
            st.version += 1
            if trigger == "on_demand":
                st.on_demand_runs[key] = st.on_demand_runs.get(key, 0) + 1
                return
            st.last = result
            st.runs[key] = st.runs.get(key, 0) + 1
            if result.success:
                st.last_success_s = now_s
            if result.tls_cert_not_after_s is not None:
                st.cert_not_after_s = result.tls_cert_not_after_s
            rel = result.since_request_s
            for metric, value in (
                ("time_to_headers_seconds", rel(result.t_headers_ns)),
                ("time_to_first_event_seconds", rel(result.t_first_event_ns)),
                ("time_to_first_token_seconds", rel(result.t_first_token_ns)),
                ("time_to_first_answer_token_seconds", rel(result.t_first_answer_ns)),
                ("run_duration_seconds", result.duration_s),
            ):
                if value is not None:
                    hist = st.run_hists.setdefault(metric, _Hist(LATENCY_BUCKETS))
                    hist.observe(value, tid, now_s)
            for phase, value in result.phase_durations_s().items():
                hist = st.phase_hists.setdefault(phase, _Hist(GAP_BUCKETS))
                hist.observe(value, tid, now_s)
            st.last_ratio = {}
            gaps_by_node: dict[str, list[float]] = {}
            for ex in result.nodes:
                node = self._node(st, ex.node)

                def obs(metric: str, value: float | None, node: str = node) -> None:
                    if value is None:
                        return
                    buckets = GAP_BUCKETS if _NODE_HISTS[metric][1] else LATENCY_BUCKETS
                    hist = st.node_hists.setdefault((metric, node), _Hist(buckets))
                    hist.observe(value, tid, now_s)

                obs("node_time_to_first_token_seconds", ex.ttft_s)
                obs("node_time_to_first_answer_token_seconds", ex.answer_ttft_s)
                obs("node_duration_seconds", ex.duration_s)
                for call in ex.calls:
                    for gap in call.itl_s:
                        obs("inter_token_latency_seconds", gap)
                    obs("time_per_output_token_seconds", call.tpot_s)
                    for gap in call.server_itl_s:
                        obs("server_inter_token_latency_seconds", gap)
                    for jitter in call.jitter_s:
                        obs("delivery_jitter_seconds", abs(jitter))
                    gaps_by_node.setdefault(node, []).extend(call.itl_s)
                if ex.tokens:
                    st.tokens[node] = st.tokens.get(node, 0) + ex.tokens
                if ex.reasoning_tokens:
                    st.reasoning_tokens[node] = (
                        st.reasoning_tokens.get(node, 0) + ex.reasoning_tokens
                    )
            for node, gaps in gaps_by_node.items():
                if gaps:
                    st.last_ratio[node] = sum(1 for g in gaps if g < BUFFERED_GAP_S) / len(gaps)

    def close(self) -> None:
        """Nothing to flush: Prometheus pulls."""

    # --------------------------------------------------------------- exposition

    def collect(self) -> Iterable[Metric]:
        # The registry path (`generate_latest(sink.registry)`); `/metrics` uses `exposition()`,
        # which returns the same series from cached per-target bytes. Only the copy holds the
        # lock, so `record()` on the loop never waits for a render.
        with self._lock:
            targets = {name: st.snapshot() for name, st in self._targets.items()}
            sink_error_counts = dict(self._sink_errors)
        yield from self._collect(targets, sink_error_counts)
        yield self._orphans_metric()

    def describe(self) -> Iterable[Metric]:
        return []

    def _collect(
        self, targets: dict[str, _TargetState], sink_error_counts: dict[str, int]
    ) -> Iterator[Metric]:
        fams = {n: Metric(NS + n, doc, kind) for n, doc, kind in _TARGET_FAMILIES}
        for name, st in targets.items():
            labels = self._labels(name, st)
            for fam, samples in _target_samples(labels, st).items():
                fams[fam].samples.extend(samples)
            for fam, _key, hist_labels, hist in _target_hists(labels, st):
                fams[fam].samples.extend(hist.samples(NS + fam, hist_labels))
        yield from fams.values()
        yield from self._global_metrics(sink_error_counts)

    def _labels(self, name: str, st: _TargetState) -> dict[str, str]:
        return {"target": name, "assistant": st.assistant, **st.labels, **self._const_labels}

    def _global_metrics(self, sink_error_counts: dict[str, int]) -> Iterator[Metric]:
        """The exporter's own families: one series each (or one per sink), not per target."""
        const = self._const_labels

        def fam(name: str, doc: str, kind: str) -> Metric:
            return Metric(NS + name, doc, kind)

        in_flight = fam("probes_in_flight", "Probes running now.", "gauge")
        in_flight.add_sample(NS + "probes_in_flight", dict(const), self.in_flight())
        yield in_flight
        reload_ok = fam(
            "config_last_reload_successful", "1 if the last config load succeeded.", "gauge"
        )
        reload_ok.add_sample(NS + "config_last_reload_successful", dict(const), self.reload_ok)
        reload_ts = fam(
            "config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful config load.",
            "gauge",
        )
        reload_ts.add_sample(
            NS + "config_last_reload_success_timestamp_seconds",
            dict(const),
            self.reload_ok_timestamp_s,
        )
        sink_errors = fam("sink_errors", "Exceptions raised by sinks, by sink.", "counter")
        for sink, count in sorted(sink_error_counts.items()):
            sink_errors.add_sample(NS + "sink_errors_total", {**const, "sink": sink}, count)
        yield from (reload_ok, reload_ts, sink_errors)
        build = fam("build_info", "Always 1; the exporter's version and Python version.", "gauge")
        build.add_sample(
            NS + "build_info",
            {**const, "version": __version__, "python": platform.python_version()},
            1,
        )
        yield build
        shard, shards, own, configured = self.shard
        info = fam(
            "shard_info",
            "Always 1; this replica's shard (0-based) and the shard count (docs/SCALING.md).",
            "gauge",
        )
        info.add_sample(NS + "shard_info", {**const, "shard": str(shard), "shards": str(shards)}, 1)
        n_shards = fam("shards", "Replicas that split the targets file between them.", "gauge")
        n_shards.add_sample(NS + "shards", dict(const), shards)
        mine = fam("shard_targets", "Targets this replica probes (its shard).", "gauge")
        mine.add_sample(NS + "shard_targets", dict(const), own)
        total = fam("shard_configured_targets", "Targets in the targets file, all shards.", "gauge")
        total.add_sample(NS + "shard_configured_targets", dict(const), configured)
        yield from (info, n_shards, mine, total)

    # ------------------------------------------------------- cached exposition

    def exposition(self, *, openmetrics: bool, gzip: bool = False) -> bytes:
        """The whole `/metrics` body: what `generate_latest(self.registry)` returns, cheaply.

        `openmetrics` picks OpenMetrics 1.0 (with exemplars) over text 0.0.4; `gzip` returns
        one gzip member (RFC 1952). Each target's series are rendered once per change of that
        target (a new result) and kept per family, as bytes or, for gzip, as compressed deflate
        segments; a scrape only joins them under one header per family (docs/PERFORMANCE.md
        "Daemon scale"). The body of `exposition_chunks`, joined.
        """
        return b"".join(self.exposition_chunks(openmetrics=openmetrics, gzip=gzip))

    def exposition_chunks(self, *, openmetrics: bool, gzip: bool = False) -> Iterator[bytes]:
        """`exposition()` in pieces of at most `SLICE_PARTS` cached parts (or one render);
        an empty piece only marks a pause.

        The daemon sends each piece as it comes and runs its event loop between two, so a
        scrape of 1000 targets delays a read's stamp by one piece's work (well under 1 ms)
        rather than by the whole scrape, or by a thread's hold of the GIL (docs/PERFORMANCE.md
        "Daemon scale").
        """
        kind = (openmetrics, gzip)
        with self._lock:
            self._kinds_scraped.add(kind)
        blocks: list[_Rendered] = []
        for _ in self._render_changed(kind, blocks):
            yield b""
        with self._lock:
            sink_error_counts = dict(self._sink_errors)
        tail = [*self._global_metrics(sink_error_counts), self._orphans_metric()]
        if self._process is not None:
            tail.extend(self._process.collect())
        encode = _generate_openmetrics if openmetrics else generate_latest
        rest = encode(_Collected(tail))
        if openmetrics:
            rest = rest.removesuffix(b"# EOF\n") + b"# EOF\n"
        crc = size = 0
        if gzip:
            yield _GZIP_HEADER
        for fam, _doc, _kind in _TARGET_FAMILIES:
            # A family without samples still gets its header, as prometheus_client writes it.
            parts = [_header(fam, kind)]
            parts.extend(b.parts[fam] for b in blocks if fam in b.parts)
            for i in range(0, len(parts), SLICE_PARTS):
                piece = parts[i : i + SLICE_PARTS]
                if gzip:
                    crc, size = _gzip_advance(crc, size, piece)
                yield b"".join([p.data for p in piece])
        if not gzip:
            yield rest
            return
        last = _part(rest, gzip=True)
        crc, size = _gzip_advance(crc, size, [last])
        yield last.data + _DEFLATE_END + struct.pack("<II", crc, size & 0xFFFFFFFF)

    def refresh(self) -> None:
        """Render now every changed target, in each format scraped so far."""
        for _ in self.refresh_steps():
            pass

    def refresh_steps(self) -> Iterator[None]:
        """`refresh()` a step at a time (see `_render_changed` for where it pauses).

        The daemon drives it on the event loop every second, running the loop between two
        steps (docs/PERFORMANCE.md "Daemon scale"): one step (~0.4 ms) delays a read's stamp
        at most that long, where a rendering thread would take the GIL from the loop for a
        whole switch interval, and the CPU for longer, at every read it wakes for. A scrape
        that comes before a refresh renders what is still missing itself.
        """
        with self._lock:
            kinds = list(self._kinds_scraped)
        for kind in kinds:
            yield from self._render_changed(kind, [])

    def _render_changed(self, kind: tuple[bool, bool], blocks: list[_Rendered]) -> Iterator[None]:
        """Append every target's block in `kind` to `blocks`, rendering those that changed.

        Pauses (yields) between rendering a target and compressing it, after compressing it,
        and after every `SLICE_PARTS` targets taken from the cache.
        """
        with self._lock:
            names = list(self._targets)
        for name in names:
            with self._lock:
                st = self._targets.get(name)
                if st is None:
                    continue
                cached = st.rendered.get(kind)
                if cached is None or cached.version != st.version:
                    version = st.version
                    lines = self._render_target(name, st, kind[0])
                else:
                    lines = None
            if lines is not None:
                yield  # rendering and compressing a target take ~0.4 ms each: a pause between
                # Compressed outside the lock; a result recorded meanwhile bumped the version,
                # so these bytes serve this scrape and the next one renders again.
                cached = _Rendered(
                    version, {fam: _part(data, gzip=kind[1]) for fam, data in lines.items()}
                )
                with self._lock:
                    if st.rendered.get(kind) is None or st.rendered[kind].version <= version:
                        st.rendered[kind] = cached
            assert cached is not None
            blocks.append(cached)
            if lines is not None or len(blocks) % SLICE_PARTS == 0:
                yield

    def _orphans_metric(self) -> Metric:
        with self._lock:
            orphans = self._orphans_deleted
        swept = Metric(
            NS + "orphaned_threads_deleted",
            "Probe threads left behind by a stopped exporter, deleted by the sweeper.",
            "counter",
        )
        swept.add_sample(NS + "orphaned_threads_deleted_total", dict(self._const_labels), orphans)
        return swept

    def _render_target(self, name: str, st: _TargetState, openmetrics: bool) -> dict[str, bytes]:
        """One target's sample lines per family; prefixes of histogram lines are kept on `st`."""
        labels = self._labels(name, st)
        out: dict[str, list[str]] = {}
        for fam, samples in _target_samples(labels, st).items():
            if samples:
                out[fam] = [_sample_line(s) for s in samples]
        for fam, key, hist_labels, hist in _target_hists(labels, st):
            prefixes = st.prefixes.get((fam, key))
            if prefixes is None:
                prefixes = st.prefixes[(fam, key)] = _hist_prefixes(fam, hist, hist_labels)
            out.setdefault(fam, []).append(hist.render(prefixes, openmetrics))
        return {fam: "".join(lines).encode() for fam, lines in out.items()}


#: Per-target families, in exposition order: (name without the namespace, help, type).
_TARGET_FAMILIES: tuple[tuple[str, str, str], ...] = (
    ("success", "1 if the last probe succeeded, else 0.", "gauge"),
    ("duration_seconds", "Duration of the last probe.", "gauge"),
    ("last_success_timestamp_seconds", "Unix time of the last successful probe.", "gauge"),
    (
        "buffered_gap_ratio",
        "Share of token gaps under 1 ms in the last probe (near 1: a proxy buffers SSE).",
        "gauge",
    ),
    ("max_tokens_per_read", "Most tokens read in one socket read, last probe.", "gauge"),
    (
        "stream_buffered",
        "1 if the last probe's tokens arrived in bursts no model produces (README "
        '"How it measures"), else 0.',
        "gauge",
    ),
    ("runs", "Scheduled probes by outcome and failure reason.", "counter"),
    (
        "on_demand_runs",
        "Probes run through GET /probe, by outcome and failure reason (not in the SLO series).",
        "counter",
    ),
    ("tokens", "Tokens received, by node.", "counter"),
    ("reasoning_tokens", "Tokens that carried only reasoning, by node.", "counter"),
    ("probes_skipped", "Scheduled probes not started, by reason.", "counter"),
    (
        "http_status_code",
        "HTTP status of the last probe's run request; 0 when none arrived (blackbox's "
        "probe_http_status_code).",
        "gauge",
    ),
    (
        "ssl_earliest_cert_expiry",
        "Unix time the server's TLS certificate expires, seen by the last https probe that "
        "completed a handshake (blackbox's probe_ssl_earliest_cert_expiry).",
        "gauge",
    ),
    ("protocol_info", "1 for the streaming protocol of the last probe (legacy, v2).", "gauge"),
    (
        "delivery_buffered",
        "v2, last probe: 1 if the server's token gaps were steady and the received ones"
        " were not (batched or polled delivery), else 0.",
        "gauge",
    ),
    *((n, d, "histogram") for n, d in _RUN_HISTS.items()),
    *((n, d[0], "histogram") for n, d in _NODE_HISTS.items()),
    (
        "phase_duration_seconds",
        "Connection phases before the run request: dns, connect, proxy_connect, tls, "
        "request_write.",
        "histogram",
    ),
)


def _target_samples(labels: dict[str, str], st: _TargetState) -> dict[str, list[Sample]]:
    """A target's gauge and counter samples by family (histograms: `_target_hists`)."""
    out: dict[str, list[Sample]] = {}

    def add(fam: str, name: str, sample_labels: dict[str, str], value: float) -> None:
        out.setdefault(fam, []).append(Sample(NS + name, sample_labels, value, None, None))

    last = st.last
    if last is not None:
        add("success", "success", labels, 1.0 if last.success else 0.0)
        add("duration_seconds", "duration_seconds", labels, last.duration_s)
        add("max_tokens_per_read", "max_tokens_per_read", labels, last.max_tokens_per_read)
        add("stream_buffered", "stream_buffered", labels, 1.0 if last.buffered else 0.0)
        add("http_status_code", "http_status_code", labels, last.http_status or 0)
        add("protocol_info", "protocol_info", {**labels, "protocol": last.protocol}, 1.0)
        verdict = last.delivery.verdict if last.delivery is not None else "unknown"
        if verdict != "unknown":
            add(
                "delivery_buffered",
                "delivery_buffered",
                labels,
                1.0 if verdict == "buffered" else 0.0,
            )
        for node, value in st.last_ratio.items():
            add("buffered_gap_ratio", "buffered_gap_ratio", {**labels, "node": node}, value)
    if st.cert_not_after_s is not None:
        add("ssl_earliest_cert_expiry", "ssl_earliest_cert_expiry", labels, st.cert_not_after_s)
    if st.last_success_s is not None:
        add("last_success_timestamp_seconds", "last_success_timestamp_seconds", labels,
            st.last_success_s)  # fmt: skip
    for (outcome, reason), count in sorted(st.runs.items()):
        add("runs", "runs_total", {**labels, "outcome": outcome, "reason": reason}, count)
    for (outcome, reason), count in sorted(st.on_demand_runs.items()):
        labels_r = {**labels, "outcome": outcome, "reason": reason}
        add("on_demand_runs", "on_demand_runs_total", labels_r, count)
    for node, count in sorted(st.tokens.items()):
        add("tokens", "tokens_total", {**labels, "node": node}, count)
    for node, count in sorted(st.reasoning_tokens.items()):
        add("reasoning_tokens", "reasoning_tokens_total", {**labels, "node": node}, count)
    for reason, count in sorted(st.skipped.items()):
        add("probes_skipped", "probes_skipped_total", {**labels, "reason": reason}, count)
    return out


def _target_hists(
    labels: dict[str, str], st: _TargetState
) -> Iterator[tuple[str, str, dict[str, str], _Hist]]:
    """(family, series key, labels, histogram) for every histogram series of one target."""
    for phase, hist in sorted(st.phase_hists.items()):
        yield "phase_duration_seconds", phase, {**labels, "phase": phase}, hist
    for metric, hist in st.run_hists.items():
        yield metric, "", labels, hist
    for (metric, node), hist in sorted(st.node_hists.items()):
        yield metric, node, {**labels, "node": node}, hist


def _esc(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _label_str(labels: dict[str, str]) -> str:
    return ",".join(f'{k}="{_esc(v)}"' for k, v in sorted(labels.items()))


def _go(value: float) -> str:
    """`floatToGoString`, with the common case (a small whole count) without the call."""
    if type(value) is int and 0 <= value < 1_000_000:
        return f"{value}.0"
    return _go_float(value)


def _sample_line(s: Sample) -> str:
    # Per-target samples carry labels, no timestamp and no exemplar (histograms: _Hist.render).
    return f"{s.name}{{{_label_str(s.labels)}}} {_go(s.value)}\n"


_LE: dict[tuple[float, ...], tuple[str, ...]] = {}


def _hist_prefixes(fam: str, hist: _Hist, labels: dict[str, str]) -> _Prefixes:
    name = NS + fam
    items = [f'{k}="{_esc(v)}"' for k, v in sorted(labels.items())]
    at = sum(1 for k in labels if k < "le")  # where `le` sorts among the label names
    before = "".join(item + "," for item in items[:at])
    after = "".join("," + item for item in items[at:])
    les = _LE.get(hist.bounds)
    if les is None:
        les = _LE[hist.bounds] = (*(repr(float(b)) for b in hist.bounds), "+Inf")
    label_s = ",".join(items)
    return _Prefixes(
        f'{name}_bucket{{{before}le="',
        les,
        f'"{after}}} ',
        f"{name}_count{{{label_s}}} ",
        f"{name}_sum{{{label_s}}} ",
    )


@dataclass(frozen=True)
class _Prefixes:
    """The fixed parts of one histogram series' lines: name and labels, up to the value.

    Not one string per bucket: kept for every series, those would be as large as the
    exposition itself.
    """

    bucket_head: str
    les: tuple[str, ...]
    bucket_tail: str
    count: str
    sum: str


@dataclass(frozen=True)
class _Part:
    """A piece of the exposition: its bytes, or (gzip) its deflate segment.

    For gzip, `size` is the plain length and `crc` its CRC-32: the CRC-32 of a concatenation
    follows from these alone (`_gzip_advance`), so the plain bytes need not be kept.
    """

    data: bytes
    size: int = 0
    crc: int = 0


@dataclass(frozen=True)
class _Rendered:
    """One target's exposition in one format at one state `version`, by family."""

    version: int
    parts: dict[str, _Part]


_compressors = threading.local()


def _part(data: bytes, *, gzip: bool) -> _Part:
    """`data` as is, or as a raw deflate segment that can follow any other segment.

    The segment ends with a full flush, which byte-aligns the output and resets the
    compressor, so it refers back into nothing before it; segments made apart can be
    concatenated into one valid deflate stream. Level 1: exposition text compresses ~15x at
    level 1, and higher levels gain little for several times the CPU.
    """
    if not gzip:
        return _Part(data)
    # One compressor per thread, reset by each full flush: making one costs more than a
    # typical part (its hash table is cleared).
    z = getattr(_compressors, "z", None)
    if z is None:
        z = _compressors.z = zlib.compressobj(1, zlib.DEFLATED, -15)
    segment = z.compress(data) + z.flush(zlib.Z_FULL_FLUSH)
    return _Part(segment, len(data), zlib.crc32(data))


#: The most cached parts (one target's family each) a piece of a scrape joins: ~0.1 ms.
SLICE_PARTS = 200

_GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no name, mtime 0
_DEFLATE_END = zlib.compressobj(1, zlib.DEFLATED, -15).flush(zlib.Z_FINISH)  # empty final block


def _gzip_advance(crc: int, size: int, parts: list[_Part]) -> tuple[int, int]:
    """The CRC-32 and length of a gzip member's data so far, after the deflate segments `parts`.

    zlib-ng's `crc32_combine` (the standard library's zlib does not expose it) joins two CRCs
    in O(log n) from the second's length: ~0.5 µs a part, where advancing the CRC over zero
    bytes with `zlib.crc32` cost ~2.5 µs (60 ms a scrape at 1000 targets).
    """
    for part in parts:
        crc = crc32_combine(crc, part.crc, part.size)
        size += part.size
    return crc, size


_HEADERS: dict[tuple[str, tuple[bool, bool]], _Part] = {}


def _header(fam: str, kind: tuple[bool, bool]) -> _Part:
    """`# HELP` / `# TYPE` lines of a per-target family, as prometheus_client writes them."""
    part = _HEADERS.get((fam, kind))
    if part is None:
        doc, mtype = next((d, k) for n, d, k in _TARGET_FAMILIES if n == fam)
        text = (_generate_openmetrics if kind[0] else generate_latest)(
            _Collected([Metric(NS + fam, doc, mtype)])
        ).removesuffix(b"# EOF\n")
        part = _HEADERS[(fam, kind)] = _part(text, gzip=kind[1])
    return part


class _Collected:
    """A ready list of metrics, in the shape prometheus_client's encoders take."""

    def __init__(self, metrics: list[Metric]) -> None:
        self._metrics = metrics

    def collect(self) -> list[Metric]:
        return self._metrics


def probe_exposition(result: ProbeResult) -> bytes:
    """One probe as blackbox_exporter answers `/probe`: gauges of this probe only, text format.

    For the multi-target pattern (and the Prometheus Operator's Probe): the scrape itself runs the
    probe, the scraper's relabelling sets `instance`, and nothing here is counted in the
    `langgraph_probe_*` histograms and counters of `/metrics`. blackbox's own names where they
    exist (`probe_success`, `probe_duration_seconds`, `probe_http_status_code`,
    `probe_ssl_earliest_cert_expiry`), so blackbox dashboards and alerts work unchanged, and
    `probe_langgraph_*` for what only a streaming probe measures. Values are seconds.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_OneProbe(result))
    return generate_latest(registry)


class _OneProbe:
    def __init__(self, result: ProbeResult) -> None:
        self._result = result

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        r = self._result

        def gauge(name: str, doc: str, value: float | None, **labels: str) -> Metric:
            metric = Metric(name, doc, "gauge")
            if value is not None:
                metric.add_sample(name, labels, value)
            return metric

        yield gauge("probe_success", "1 if the probe succeeded, else 0.", 1.0 if r.success else 0)
        yield gauge("probe_duration_seconds", "Run request to end of stream.", r.duration_s)
        yield gauge(
            "probe_http_status_code",
            "HTTP status of the run request; 0 when none arrived.",
            r.http_status or 0,
        )
        if r.tls_cert_not_after_s is not None:
            yield gauge(
                "probe_ssl_earliest_cert_expiry",
                "Unix time the server's certificate expires.",
                r.tls_cert_not_after_s,
            )
        failure = Metric(
            "probe_langgraph_failure", "1 for the failure kind of a failed probe.", "gauge"
        )
        if r.failure is not None:
            failure.add_sample(failure.name, {"reason": r.failure.kind.value}, 1)
        yield failure
        for name, doc, value in (
            ("time_to_headers_seconds", "Response headers minus the run request.",
             r.since_request_s(r.t_headers_ns)),
            ("time_to_first_event_seconds", "The metadata event minus the run request.",
             r.since_request_s(r.t_first_event_ns)),
            ("time_to_first_token_seconds", "First token minus the run request (run TTFT).",
             r.ttft_s),
            ("tokens", "Tokens received.", r.tokens),
            ("max_tokens_per_read", "Most tokens read in one socket read.", r.max_tokens_per_read),
        ):  # fmt: skip
            yield gauge("probe_langgraph_" + name, doc, value)
        node_ttft = Metric(
            "probe_langgraph_node_time_to_first_token_seconds",
            "First token minus the node's tasks start; first execution of each node.",
            "gauge",
        )
        itl = Metric(
            "probe_langgraph_inter_token_latency_seconds",
            "Inter-token gaps of each node: median, p95 and the largest (quantile 0.5, 0.95, 1).",
            "gauge",
        )
        seen: set[str] = set()
        gaps: dict[str, list[float]] = {}
        for ex in r.nodes:
            if ex.ttft_s is not None and ex.node not in seen:
                seen.add(ex.node)
                node_ttft.add_sample(node_ttft.name, {"node": ex.node}, ex.ttft_s)
            gaps.setdefault(ex.node, []).extend(ex.itl_s())
        for node, values in sorted(gaps.items()):
            for q in (0.5, 0.95, 1.0):
                value = quantile(values, q)
                if value is not None:
                    itl.add_sample(itl.name, {"node": node, "quantile": repr(q)}, value)
        yield node_ttft
        yield itl
