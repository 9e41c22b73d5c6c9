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
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import Exemplar, Metric, Sample
from prometheus_client.exposition import generate_latest

from exporter import __version__
from exporter.core.errors import FailureKind
from exporter.core.result import ProbeResult
from exporter.core.stats import quantile
from exporter.sinks import SKIP_REASONS, Trigger

__all__ = ["NS", "PrometheusSink", "probe_exposition"]

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
    __slots__ = ("bounds", "counts", "exemplars", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.exemplars: list[Exemplar | None] = [None] * (len(bounds) + 1)
        self.sum = 0.0

    def copy(self) -> _Hist:
        new = _Hist.__new__(_Hist)
        new.bounds, new.counts, new.sum = self.bounds, list(self.counts), self.sum
        new.exemplars = list(self.exemplars)
        return new

    def observe(self, value: float, trace_id: str | None, now_s: float) -> None:
        i = bisect_left(self.bounds, value)
        self.counts[i] += 1
        self.sum += value
        if trace_id:
            self.exemplars[i] = Exemplar({"trace_id": trace_id}, value, now_s)

    def samples(self, name: str, labels: dict[str, str]) -> Iterator[Sample]:
        acc = 0
        for i, le in enumerate((*self.bounds, float("inf"))):
            acc += self.counts[i]
            le_s = "+Inf" if le == float("inf") else repr(float(le))
            yield Sample(name + "_bucket", {**labels, "le": le_s}, acc, None, self.exemplars[i])
        yield Sample(name + "_count", labels, acc, None, None)
        yield Sample(name + "_sum", labels, self.sum, None, None)


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

    def __init__(self, *, max_nodes_per_target: int = 50) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._max_nodes = max_nodes_per_target
        self._lock = threading.Lock()
        self._targets: dict[str, _TargetState] = {}
        self._sink_errors: dict[str, int] = {}
        self._orphans_deleted = 0
        self.reload_ok = 1.0
        self.reload_ok_timestamp_s = time.time()
        self.in_flight: Callable[[], int] = lambda: 0
        self.registry.register(self)
        # The exporter's own health: process_resident_memory_bytes, _cpu_seconds_total, _open_fds.
        ProcessCollector(registry=self.registry)

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
                st.skipped[reason] = st.skipped.get(reason, 0) + 1

    def count_sink_error(self, sink: str) -> None:
        with self._lock:
            self._sink_errors[sink] = self._sink_errors.get(sink, 0) + 1

    def count_orphans_deleted(self, count: int) -> None:
        """Probe threads a dead exporter left on a server, deleted by the sweeper."""
        with self._lock:
            self._orphans_deleted += count

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
                    st.last_ratio[node] = sum(1 for g in gaps if g < 0.001) / len(gaps)

    def close(self) -> None:
        """Nothing to flush: Prometheus pulls."""

    # --------------------------------------------------------------- exposition

    def collect(self) -> Iterable[Metric]:
        # NOTE: the web layer renders off the event loop (50 targets take ~100 ms to render, and
        # the loop stamps every token of every running probe). Only the copy holds the lock, so
        # `record()` on the loop never waits for a render.
        with self._lock:
            targets = {name: st.snapshot() for name, st in self._targets.items()}
            sink_error_counts = dict(self._sink_errors)
            orphans = self._orphans_deleted
        yield from self._collect(targets, sink_error_counts)
        swept = Metric(
            NS + "orphaned_threads_deleted",
            "Probe threads left behind by a stopped exporter, deleted by the sweeper.",
            "counter",
        )
        swept.add_sample(NS + "orphaned_threads_deleted_total", {}, orphans)
        yield swept

    def describe(self) -> Iterable[Metric]:
        return []

    def _collect(
        self, targets: dict[str, _TargetState], sink_error_counts: dict[str, int]
    ) -> Iterator[Metric]:
        def fam(name: str, doc: str, kind: str) -> Metric:
            return Metric(NS + name, doc, kind)

        success = fam("success", "1 if the last probe succeeded, else 0.", "gauge")
        duration = fam("duration_seconds", "Duration of the last probe.", "gauge")
        last_ok = fam(
            "last_success_timestamp_seconds", "Unix time of the last successful probe.", "gauge"
        )
        ratio = fam(
            "buffered_gap_ratio",
            "Share of token gaps under 1 ms in the last probe (near 1: a proxy buffers SSE).",
            "gauge",
        )
        burst = fam(
            "max_tokens_per_read", "Most tokens read in one socket read, last probe.", "gauge"
        )
        protocol = fam(
            "protocol_info", "1 for the streaming protocol of the last probe (legacy, v2).", "gauge"
        )
        delivery = fam(
            "delivery_buffered",
            "v2, last probe: 1 if the server's token gaps were steady and the received ones"
            " were not (batched or polled delivery), else 0.",
            "gauge",
        )
        status_code = fam(
            "http_status_code",
            "HTTP status of the last probe's run request; 0 when none arrived (blackbox's "
            "probe_http_status_code).",
            "gauge",
        )
        cert_expiry = fam(
            "ssl_earliest_cert_expiry",
            "Unix time the server's TLS certificate expires, seen by the last https probe that "
            "completed a handshake (blackbox's probe_ssl_earliest_cert_expiry).",
            "gauge",
        )
        buffered = fam(
            "stream_buffered",
            "1 if the last probe's tokens arrived in bursts no model produces (README "
            '"How it measures"), else 0.',
            "gauge",
        )
        reasoning = fam(
            "reasoning_tokens", "Tokens that carried only reasoning, by node.", "counter"
        )
        phases = fam(
            "phase_duration_seconds",
            "Connection phases before the run request: dns, connect, proxy_connect, tls, "
            "request_write.",
            "histogram",
        )
        runs = fam("runs", "Scheduled probes by outcome and failure reason.", "counter")
        on_demand = fam(
            "on_demand_runs",
            "Probes run through GET /probe, by outcome and failure reason (not in the SLO series).",
            "counter",
        )
        tokens = fam("tokens", "Tokens received, by node.", "counter")
        skipped = fam("probes_skipped", "Scheduled probes not started, by reason.", "counter")
        hists = {n: fam(n, d, "histogram") for n, d in _RUN_HISTS.items()}
        hists.update({n: fam(n, d[0], "histogram") for n, d in _NODE_HISTS.items()})
        for name, st in targets.items():
            labels = {"target": name, "assistant": st.assistant, **st.labels}
            last = st.last
            if last is not None:
                success.add_sample(NS + "success", labels, 1.0 if last.success else 0.0)
                duration.add_sample(NS + "duration_seconds", labels, last.duration_s)
                burst.add_sample(NS + "max_tokens_per_read", labels, last.max_tokens_per_read)
                buffered.add_sample(NS + "stream_buffered", labels, 1.0 if last.buffered else 0.0)
                status_code.add_sample(NS + "http_status_code", labels, last.http_status or 0)
                protocol.add_sample(
                    NS + "protocol_info", {**labels, "protocol": last.protocol}, 1.0
                )
                verdict = last.delivery.verdict if last.delivery is not None else "unknown"
                if verdict != "unknown":
                    delivery.add_sample(
                        NS + "delivery_buffered", labels, 1.0 if verdict == "buffered" else 0.0
                    )
                for node, value in st.last_ratio.items():
                    ratio.add_sample(NS + "buffered_gap_ratio", {**labels, "node": node}, value)
            if st.cert_not_after_s is not None:
                cert_expiry.add_sample(NS + "ssl_earliest_cert_expiry", labels, st.cert_not_after_s)
            if st.last_success_s is not None:
                last_ok.add_sample(NS + "last_success_timestamp_seconds", labels, st.last_success_s)
            for (outcome, reason), count in sorted(st.runs.items()):
                runs.add_sample(
                    NS + "runs_total", {**labels, "outcome": outcome, "reason": reason}, count
                )
            for (outcome, reason), count in sorted(st.on_demand_runs.items()):
                on_demand.add_sample(
                    NS + "on_demand_runs_total",
                    {**labels, "outcome": outcome, "reason": reason},
                    count,
                )
            for node, count in sorted(st.tokens.items()):
                tokens.add_sample(NS + "tokens_total", {**labels, "node": node}, count)
            for node, count in sorted(st.reasoning_tokens.items()):
                reasoning.add_sample(NS + "reasoning_tokens_total", {**labels, "node": node}, count)
            for phase, hist in sorted(st.phase_hists.items()):
                phases.samples.extend(
                    hist.samples(NS + "phase_duration_seconds", {**labels, "phase": phase})
                )
            for reason, count in sorted(st.skipped.items()):
                skipped.add_sample(NS + "probes_skipped_total", {**labels, "reason": reason}, count)
            for metric, hist in st.run_hists.items():
                hists[metric].samples.extend(hist.samples(NS + metric, labels))
            for (metric, node), hist in sorted(st.node_hists.items()):
                hists[metric].samples.extend(hist.samples(NS + metric, {**labels, "node": node}))
        yield from (success, duration, last_ok, ratio, burst, buffered, runs, on_demand, tokens)
        yield from (reasoning, skipped, status_code, cert_expiry)
        yield from (protocol, delivery)
        yield from hists.values()
        yield phases
        reload_ok = fam(
            "config_last_reload_successful", "1 if the last config load succeeded.", "gauge"
        )
        reload_ok.add_sample(NS + "config_last_reload_successful", {}, self.reload_ok)
        reload_ts = fam(
            "config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful config load.",
            "gauge",
        )
        reload_ts.add_sample(
            NS + "config_last_reload_success_timestamp_seconds", {}, self.reload_ok_timestamp_s
        )
        in_flight = fam("probes_in_flight", "Probes running now.", "gauge")
        in_flight.add_sample(NS + "probes_in_flight", {}, self.in_flight())
        yield in_flight
        sink_errors = fam("sink_errors", "Exceptions raised by sinks, by sink.", "counter")
        for sink, count in sorted(sink_error_counts.items()):
            sink_errors.add_sample(NS + "sink_errors_total", {"sink": sink}, count)
        yield from (reload_ok, reload_ts, sink_errors)
        build = fam("build_info", "Always 1; the exporter's version and Python version.", "gauge")
        build.add_sample(
            NS + "build_info", {"version": __version__, "python": platform.python_version()}, 1
        )
        yield build


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
