"""OTLP metrics drawn from finished probe results, for shops that run an OpenTelemetry Collector
instead of scraping `/metrics` (opt-in: `LGSE_OTLP_METRICS=true`).

Where the GenAI semantic conventions (v1.41.0) have an instrument for a measurement, it is used
with its name, unit, attributes and advised buckets; one LLM call of the graph is one `chat`
operation:

- `gen_ai.client.operation.duration` (s): per LLM call, basis to last chunk;
  latest: `gen_ai.client.inference.duration`
- `gen_ai.client.operation.time_to_first_chunk` (s): per LLM call, basis to first chunk;
  latest: `gen_ai.client.inference.time_to_first_chunk`
- `gen_ai.client.operation.time_per_output_chunk` (s): per gap between two chunks of a call;
  latest: `gen_ai.client.inference.time_per_output_chunk`
- `gen_ai.client.token.usage` ({token}, `gen_ai.token.type=output`): per call that reported
  usage; latest: `gen_ai.client.inference.operation.output_tokens` (and the counter
  `gen_ai.client.inference.usage.reasoning.output_tokens` when reasoning usage was reported)

Attributes: `gen_ai.operation.name=chat`, `gen_ai.provider.name` (`_OTHER` when the server did not
say), `gen_ai.request.model`, `server.address`, `server.port`, `error.type` when the call was cut
by the probe's failure, plus `langgraph.probe.target` and `langgraph.node`. A call's "basis" is
the client's best view of when the model was asked: the node's `tasks` start, or the end of the
previous call in the same node (README "How it measures").

Run- and node-level TTFT and ITL have no standard name, so they are `langgraph.probe.*` (same
buckets as the Prometheus histograms):

| instrument | unit | attributes |
| --- | --- | --- |
| `langgraph.probe.duration` | s | target, `gen_ai.agent.name`, outcome, `error.type` |
| `langgraph.probe.time_to_first_token` | s | target, `gen_ai.agent.name` |
| `langgraph.probe.time_to_first_answer_token` | s | target, `gen_ai.agent.name` |
| `langgraph.probe.node.time_to_first_token` | s | target, `langgraph.node` |
| `langgraph.probe.node.time_to_first_answer_token` | s | target, `langgraph.node` |
| `langgraph.probe.inter_token_latency` | s | target, `langgraph.node` |
| `langgraph.probe.stream.buffered` | {run} | target, `langgraph.probe.buffered` (true/false) |

Where the process probes from (`LGSE_LOCATION`) is the resource attribute
`langgraph.probe.location`, not an attribute of each point: it describes the process, not one
measurement, and is the same for every point the process exports (docs/SCALING.md "Several
locations", which also says how it reaches Prometheus labels).

Only scheduled probes are recorded: an on-demand `GET /probe` stays out of these series, as it
does out of the Prometheus SLO series. Every measurement is recorded in the context of the probe's
root span (its `traceparent`), so the SDK's trace-based exemplar filter attaches exemplars that
link a bucket to the probe's trace.

Endpoint, protocol, headers and export interval come from the standard `OTEL_*` variables, read
by the SDK itself (`OTEL_EXPORTER_OTLP_(METRICS_)PROTOCOL` picks gRPC or http/protobuf,
`OTEL_METRIC_EXPORT_INTERVAL` the period).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final, Literal
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.metrics import Histogram
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, PeriodicExportingMetricReader
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from exporter import __version__
from exporter.core.result import NodeExecution, ProbeResult
from exporter.sinks import Trigger
from exporter.sinks.otlp import exporter_resource, otlp_exporter_from_env

__all__ = ["INSTRUMENTS", "OTLPMetricsSink"]

Semconv = Literal["v1.41", "latest"]

#: Advised buckets of the GenAI client metrics (v1.41.0): durations and chunk times share them.
GENAI_DURATION_BUCKETS: Final = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip
GENAI_TOKEN_BUCKETS: Final = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip
#: The Prometheus sink's buckets (exporter/sinks/prometheus.py), so both exports compare.
LATENCY_BUCKETS: Final = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.5, 0.64, 1.0, 1.28, 2.0, 2.56, 5.0, 5.12, 10.24,
    20.48, 40.96, 81.92, 163.84,
)  # fmt: skip
GAP_BUCKETS: Final = (
    0.001, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2,
    0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip

#: key -> (v1.41 name, latest name, unit, buckets, description)
INSTRUMENTS: Final[dict[str, tuple[str, str, str, Sequence[float], str]]] = {
    "duration": ("gen_ai.client.operation.duration", "gen_ai.client.inference.duration", "s",
                 GENAI_DURATION_BUCKETS, "GenAI operation duration."),
    "ttfc": ("gen_ai.client.operation.time_to_first_chunk",
             "gen_ai.client.inference.time_to_first_chunk", "s", GENAI_DURATION_BUCKETS,
             "Time to receive the first chunk of a streamed LLM call."),
    "tpoc": ("gen_ai.client.operation.time_per_output_chunk",
             "gen_ai.client.inference.time_per_output_chunk", "s", GENAI_DURATION_BUCKETS,
             "Time per output chunk after the first one."),
    "tokens": ("gen_ai.client.token.usage", "gen_ai.client.inference.operation.output_tokens",
               "{token}", GENAI_TOKEN_BUCKETS, "Number of output tokens used."),
}  # fmt: skip
PROBE_INSTRUMENTS: Final[dict[str, tuple[str, Sequence[float], str]]] = {
    "langgraph.probe.duration": ("s", LATENCY_BUCKETS, "End of the stream minus the request."),
    "langgraph.probe.time_to_first_token": (
        "s", LATENCY_BUCKETS, "Run TTFT: first token of any kind minus the run request."),
    "langgraph.probe.time_to_first_answer_token": (
        "s", LATENCY_BUCKETS, "First non-reasoning token minus the run request."),
    "langgraph.probe.node.time_to_first_token": (
        "s", LATENCY_BUCKETS, "First token of a node execution minus its tasks start."),
    "langgraph.probe.node.time_to_first_answer_token": (
        "s", LATENCY_BUCKETS, "First non-reasoning token of a node minus its tasks start."),
    "langgraph.probe.inter_token_latency": (
        "s", GAP_BUCKETS, "Gap between consecutive tokens of one LLM call."),
}  # fmt: skip

TARGET: Final = "langgraph.probe.target"
NODE: Final = "langgraph.node"
OTHER: Final = "_OTHER"  # OTel's value for "known to exist, not known which"


def _record_ttfts(
    histograms: dict[str, Histogram],
    prefix: str,
    of: ProbeResult | NodeExecution,
    attrs: dict[str, str],
    ctx: Context | None,
) -> None:
    """Record the TTFT and the answer TTFT (s) of a run or a node execution, where measured, in
    `<prefix>.time_to_first_token` and `<prefix>.time_to_first_answer_token`."""
    for name, value_s in (
        ("time_to_first_token", of.ttft_s),
        ("time_to_first_answer_token", of.answer_ttft_s),
    ):
        if value_s is not None:
            histograms[f"{prefix}.{name}"].record(value_s, attrs, ctx)


def _context_of(result: ProbeResult) -> Context | None:
    """The probe's root span as the current span, for trace-based exemplars."""
    if not result.trace_id or not result.span_id:
        return None
    span = NonRecordingSpan(
        SpanContext(
            trace_id=int(result.trace_id, 16),
            span_id=int(result.span_id, 16),
            is_remote=False,
            trace_flags=TraceFlags(TraceFlags.SAMPLED),
        )
    )
    return trace.set_span_in_context(span)


class OTLPMetricsSink:
    """Records each result into OTel instruments; a periodic reader exports them."""

    name = "otlp_metrics"

    def __init__(
        self,
        exporter: MetricExporter | None = None,
        *,
        semconv: Semconv = "v1.41",
        export_interval_ms: float | None = None,
        location: str = "",
    ) -> None:
        """`location` (LGSE_LOCATION): the resource attribute `langgraph.probe.location` when
        not empty. `semconv`: which GenAI instrument names (module docstring)."""
        self.reader = PeriodicExportingMetricReader(
            exporter if exporter is not None else otlp_exporter_from_env("METRICS"),
            export_interval_millis=export_interval_ms,
        )
        self.provider = MeterProvider(
            resource=exporter_resource(location), metric_readers=[self.reader]
        )
        meter = self.provider.get_meter("langgraph-stream-exporter", __version__)
        self.semconv = semconv
        self._genai: dict[str, Histogram] = {}
        for key, (old, new, unit, buckets, description) in INSTRUMENTS.items():
            self._genai[key] = meter.create_histogram(
                new if semconv == "latest" else old,
                unit=unit,
                description=description,
                explicit_bucket_boundaries_advisory=list(buckets),
            )
        self._probe: dict[str, Histogram] = {
            name: meter.create_histogram(
                name, unit=unit, description=description,
                explicit_bucket_boundaries_advisory=list(buckets),
            )
            for name, (unit, buckets, description) in PROBE_INSTRUMENTS.items()
        }  # fmt: skip
        self._buffered = meter.create_counter(
            "langgraph.probe.stream.buffered",
            unit="{run}",
            description="Probes by buffered verdict (README: How it measures).",
        )
        self._reasoning = (
            meter.create_counter(
                "gen_ai.client.inference.usage.reasoning.output_tokens",
                unit="{token}",
                description="Reasoning output tokens.",
            )
            if semconv == "latest"
            else None
        )

    def record(self, result: ProbeResult, trigger: Trigger = "scheduled") -> None:
        if trigger == "on_demand":
            return  # kept out of the SLO series, as in Prometheus (docs/RELIABILITY.md)
        ctx = _context_of(result)
        url = urlsplit(result.url)
        server: dict[str, str | int] = {}
        if url.hostname:
            server["server.address"] = url.hostname
            server["server.port"] = url.port or (443 if url.scheme == "https" else 80)
        run = {TARGET: result.target, "gen_ai.agent.name": result.assistant_id}
        failure = result.failure
        outcome: dict[str, str] = {"langgraph.probe.outcome": result.outcome}
        if failure is not None:
            outcome["error.type"] = failure.kind.value
        probe = self._probe
        probe["langgraph.probe.duration"].record(result.duration_s, {**run, **outcome}, ctx)
        _record_ttfts(probe, "langgraph.probe", result, run, ctx)
        self._buffered.add(1, {**run, "langgraph.probe.buffered": result.buffered}, ctx)
        for ex in result.nodes:
            node = {TARGET: result.target, NODE: ex.node}
            _record_ttfts(probe, "langgraph.probe.node", ex, node, ctx)
            for call in ex.calls:
                if not call.token_ns:
                    continue
                attrs: dict[str, str | int] = {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": call.provider or OTHER,
                    **server,
                    **node,
                }
                if call.model:
                    attrs["gen_ai.request.model"] = call.model
                if not call.completed and failure is not None:
                    attrs["error.type"] = failure.kind.value
                itl = probe["langgraph.probe.inter_token_latency"]
                tpoc = self._genai["tpoc"]
                for gap in call.itl_s:
                    itl.record(gap, node, ctx)
                    tpoc.record(gap, attrs, ctx)
                if call.ttft_s is not None:
                    self._genai["ttfc"].record(call.ttft_s, attrs, ctx)
                if call.basis_ns is not None:
                    duration_s = max(0, call.token_ns[-1] - call.basis_ns) / 1e9
                    self._genai["duration"].record(duration_s, attrs, ctx)
                if call.output_tokens is not None:
                    usage = dict(attrs)
                    if self.semconv == "v1.41":
                        usage["gen_ai.token.type"] = "output"
                    self._genai["tokens"].record(call.output_tokens, usage, ctx)
                if self._reasoning is not None and call.usage_reasoning_tokens:
                    self._reasoning.add(
                        call.usage_reasoning_tokens, {**attrs, "gen_ai.token.modality": "text"}
                    )

    def flush(self, timeout_ms: float = 10_000) -> bool:
        """Export what was recorded now (tests, shutdown)."""
        return self.provider.force_flush(timeout_ms)

    def close(self) -> None:
        """Export the last values and stop the reader thread (after the scheduler stops)."""
        self.provider.shutdown()
