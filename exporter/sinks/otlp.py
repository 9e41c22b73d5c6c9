"""OTLP spans drawn from finished probe results (README "How it measures").

One trace per probe: a root `invoke_agent {assistant}` span (CLIENT) from the run request to the
end of the stream, a child `node {name}` per node execution, and under it a `chat {model}` span per
LLM call. Times are the probe's own monotonic stamps moved onto the wall clock through one anchor
taken with the request, so span times are as exact as the measurements.

The root span's trace id and span id are the ones the probe sent in `traceparent`, so the server's
own spans (if it traces) hang under ours, and the Prometheus exemplars point at this trace.

Endpoint, protocol, headers and resource come from the standard `OTEL_*` variables, read by the
SDK itself; `OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL` picks gRPC or http/protobuf.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Sequence
from importlib import import_module
from typing import Any, Final, Literal
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.trace import SpanKind, Status, StatusCode

from exporter import __version__
from exporter.core.result import ProbeResult
from exporter.core.stats import quantile
from exporter.sinks import Trigger

__all__ = ["OTLPSink", "exporter_resource"]

# Stable semconv names, spelled out rather than imported from `_incubating` (may change).
ERROR_TYPE: Final = "error.type"
SERVER_ADDRESS: Final = "server.address"
SERVER_PORT: Final = "server.port"
HTTP_RESPONSE_STATUS_CODE: Final = "http.response.status_code"
# GenAI conventions (open-telemetry/semantic-conventions, gen-ai spans).
GEN_AI_OPERATION_NAME: Final = "gen_ai.operation.name"
GEN_AI_AGENT_NAME: Final = "gen_ai.agent.name"
GEN_AI_CONVERSATION_ID: Final = "gen_ai.conversation.id"
GEN_AI_REQUEST_MODEL: Final = "gen_ai.request.model"
GEN_AI_PROVIDER_NAME: Final = "gen_ai.provider.name"
GEN_AI_USAGE_OUTPUT_TOKENS: Final = "gen_ai.usage.output_tokens"
GEN_AI_TIME_TO_FIRST_CHUNK: Final = "gen_ai.response.time_to_first_chunk"
GEN_AI_REQUEST_STREAM: Final = "gen_ai.request.stream"
# OpenInference graph attributes: trace UIs (Phoenix, Arize) draw the agent graph from them.
GRAPH_NODE_ID: Final = "graph.node.id"
GRAPH_NODE_NAME: Final = "graph.node.name"
GRAPH_NODE_PARENT_ID: Final = "graph.node.parent_id"
# Our own namespace.
LANGGRAPH_RUN_ID: Final = "langgraph.run_id"
LANGGRAPH_NODE: Final = "langgraph.node"
LANGGRAPH_TASK_ID: Final = "langgraph.task_id"
PROBE_TARGET: Final = "langgraph.probe.target"
#: LGSE_LOCATION, where this process probes from: a resource attribute of both signals and an
#: attribute of every span (docs/SCALING.md "Several locations").
PROBE_LOCATION: Final = "langgraph.probe.location"
PROBE_TTFT_S: Final = "langgraph.probe.time_to_first_token_s"
PROBE_FIRST_EVENT_S: Final = "langgraph.probe.time_to_first_event_s"
PROBE_TOKENS: Final = "langgraph.probe.tokens"
PROBE_TRIGGER: Final = "langgraph.probe.trigger"
PROBE_ITL_P50_S: Final = "langgraph.probe.inter_token_latency_p50_s"
# Protocol v2 (docs/V2.md §4).
PROBE_PROTOCOL: Final = "langgraph.probe.protocol"
PROBE_RUN_STATUS: Final = "langgraph.probe.run_status"
PROBE_DELIVERY: Final = "langgraph.probe.delivery"
PROBE_SERVER_ITL_P50_S: Final = "langgraph.probe.server_inter_token_latency_p50_s"
PROBE_JITTER_MAX_S: Final = "langgraph.probe.delivery_jitter_max_s"
PROBE_AMBIGUOUS: Final = "langgraph.probe.ambiguous"
PROBE_ANSWER_TTFT_S: Final = "langgraph.probe.time_to_first_answer_token_s"
PROBE_REASONING_TOKENS: Final = "langgraph.probe.reasoning_tokens"
PROBE_BUFFERED: Final = "langgraph.probe.buffered"
PROBE_TPOT_S: Final = "langgraph.probe.time_per_output_token_s"


#: The OTLP exporter of each signal: (module under `opentelemetry.exporter.otlp.proto.grpc`
#: or `.http`, class name).
_OTLP_EXPORTERS: Final = {
    "TRACES": ("trace_exporter", "OTLPSpanExporter"),
    "METRICS": ("metric_exporter", "OTLPMetricExporter"),
}


def otlp_exporter_from_env(signal: Literal["TRACES", "METRICS"]) -> Any:
    """A new OTLP exporter of `signal` (a `SpanExporter` or a `MetricExporter`), over gRPC when
    OTEL_EXPORTER_OTLP_<signal>_PROTOCOL, else OTEL_EXPORTER_OTLP_PROTOCOL, says "grpc", else
    over HTTP; the exporter reads its endpoint and headers from the environment itself.
    Imported here, when a sink is built, so a process that exports nothing never loads gRPC."""
    protocol = (
        os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_PROTOCOL")
        or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"  # the OTLP exporter spec's default
    ).strip()
    module, cls = _OTLP_EXPORTERS[signal]
    transport = "grpc" if protocol == "grpc" else "http"
    return getattr(import_module(f"opentelemetry.exporter.otlp.proto.{transport}.{module}"), cls)()


def exporter_resource(location: str = "") -> Resource:
    """The OTel resource of this process for traces and metrics alike: `service.name`,
    `service.version`, and `langgraph.probe.location` when `location` (LGSE_LOCATION) is not
    empty. Where the process probes from describes the process, like `cloud.region` or
    `k8s.cluster.name`, so it belongs to the resource; it also keeps the metric streams of two
    locations apart (docs/SCALING.md "Several locations"). `OTEL_RESOURCE_ATTRIBUTES` and
    `OTEL_SERVICE_NAME` are merged in by the SDK; these keys win over them."""
    attributes: dict[str, str] = {
        "service.name": "langgraph-stream-exporter",
        "service.version": __version__,
    }
    if location:
        attributes[PROBE_LOCATION] = location
    return Resource.create(attributes)


class _CountingExporter(SpanExporter):
    """Calls `on_failure()` once per export call (one batch) that fails or raises.

    The batch processor runs exports on its own thread and only logs a failure, so without this
    a collector that is down would lose every span without a number to alert on.
    """

    def __init__(self, inner: SpanExporter, on_failure: Callable[[], None]) -> None:
        self._inner = inner
        self._on_failure = on_failure

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            result = self._inner.export(spans)
        except Exception:
            self._on_failure()
            raise
        if result is not SpanExportResult.SUCCESS:
            self._on_failure()
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class _ProbeIds(IdGenerator):
    """Hands out the probe's own ids for the root span, random ones after that."""

    def __init__(self) -> None:
        self.next_trace_id: int | None = None
        self.next_span_id: int | None = None
        self._rand = random.SystemRandom()

    def generate_trace_id(self) -> int:
        value, self.next_trace_id = self.next_trace_id, None
        return value if value else self._rand.getrandbits(128)

    def generate_span_id(self) -> int:
        value, self.next_span_id = self.next_span_id, None
        return value if value else self._rand.getrandbits(64)


class OTLPSink:
    """Turns each result into one span tree and hands it to a batch processor."""

    name = "otlp"

    def __init__(
        self,
        exporter: SpanExporter | None = None,
        *,
        batch: bool = True,
        on_export_failure: Callable[[], None] | None = None,
        token_events: bool = False,
        location: str = "",
    ) -> None:
        """`on_export_failure()` is called (from the export thread) for each failed batch.
        `token_events`: one `token` span event per token arrival on the `chat` spans
        (`LGSE_SPAN_TOKEN_EVENTS`; off by default: a long answer makes a large span).
        A non-empty `location` (LGSE_LOCATION) is an attribute of every span and of the
        resource."""
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor

        self.token_events = token_events
        self._ids = _ProbeIds()
        # On every span, not only the root: trace search and span-derived metrics (the
        # Collector's spanmetrics connector) see a node or chat span on its own.
        self._location = location or None
        self.provider = TracerProvider(resource=exporter_resource(location), id_generator=self._ids)
        exporter = exporter if exporter is not None else otlp_exporter_from_env("TRACES")
        if on_export_failure is not None:
            exporter = _CountingExporter(exporter, on_export_failure)
        processor = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
        self.provider.add_span_processor(processor)
        self._tracer = self.provider.get_tracer("langgraph-stream-exporter", __version__)

    def record(self, result: ProbeResult, trigger: Trigger = "scheduled") -> None:
        tracer = self._tracer
        if result.trace_id:
            self._ids.next_trace_id = int(result.trace_id, 16)
        span_id = _span_id_of(result)
        if span_id:
            self._ids.next_span_id = span_id
        url = urlsplit(result.url)
        failure = result.failure
        attrs = _attrs(
            (GEN_AI_OPERATION_NAME, "invoke_agent"),
            (GEN_AI_AGENT_NAME, result.assistant_id),
            (GEN_AI_REQUEST_STREAM, True),
            (GRAPH_NODE_ID, result.assistant_id),
            (GRAPH_NODE_NAME, result.assistant_id),
            (PROBE_TARGET, result.target),
            (PROBE_LOCATION, self._location),
            (SERVER_ADDRESS, url.hostname),
            (SERVER_PORT, url.port),
            (PROBE_TOKENS, result.tokens),
            (PROBE_TRIGGER, trigger),
            (GEN_AI_CONVERSATION_ID, result.thread_id),
            (LANGGRAPH_RUN_ID, result.run_id),
            (HTTP_RESPONSE_STATUS_CODE, result.http_status),
            (PROBE_TTFT_S, result.ttft_s),
            (PROBE_ANSWER_TTFT_S, result.answer_ttft_s),
            (PROBE_FIRST_EVENT_S, result.since_request_s(result.t_first_event_ns)),
            (PROBE_BUFFERED, result.buffered),
            (ERROR_TYPE, None if failure is None else failure.kind.value),
            (PROBE_PROTOCOL, result.protocol),
            (PROBE_RUN_STATUS, result.run_status),
            (PROBE_DELIVERY, None if result.delivery is None else result.delivery.verdict),
        )
        root = tracer.start_span(
            f"invoke_agent {result.assistant_id}",
            context=trace.set_span_in_context(trace.INVALID_SPAN),
            kind=SpanKind.CLIENT,
            attributes=attrs,
            start_time=result.wall_ns(result.t_request_ns),
        )
        _phase_events(root, result)
        if failure is not None:
            root.set_status(Status(StatusCode.ERROR, failure.message[:500]))
        ctx = trace.set_span_in_context(root)
        for ex in result.nodes:
            first = ex.first_token_ns
            start = ex.start_ns or ex.basis_ns or first or result.t_request_ns
            last_tokens = [c.token_ns[-1] for c in ex.calls if c.token_ns]
            end = ex.end_ns or (max(last_tokens) if last_tokens else None) or result.t_end_ns
            parent_id, _, own_name = ex.node.rpartition("/")
            node_attrs = _attrs(
                (LANGGRAPH_NODE, ex.node),
                (PROBE_LOCATION, self._location),
                (GRAPH_NODE_ID, ex.node),
                (GRAPH_NODE_NAME, own_name),
                (GRAPH_NODE_PARENT_ID, parent_id or result.assistant_id),
                (PROBE_TOKENS, ex.tokens),
                (LANGGRAPH_TASK_ID, ex.task_id),
                (PROBE_TTFT_S, ex.ttft_s),
                (PROBE_ANSWER_TTFT_S, ex.answer_ttft_s),
                (PROBE_REASONING_TOKENS, ex.reasoning_tokens),
                (ERROR_TYPE, ex.error_type),
            )
            node_span = tracer.start_span(
                f"node {ex.node}",
                context=ctx,
                kind=SpanKind.INTERNAL,
                attributes=node_attrs,
                start_time=result.wall_ns(start),
            )
            if ex.error_type:
                node_span.set_status(Status(StatusCode.ERROR, ex.error_type))
            node_ctx = trace.set_span_in_context(node_span)
            for call in ex.calls:
                if not call.token_ns:
                    continue
                call_attrs = _attrs(
                    (GEN_AI_OPERATION_NAME, "chat"),
                    (PROBE_LOCATION, self._location),
                    (PROBE_TOKENS, call.tokens),
                    (GEN_AI_REQUEST_MODEL, call.model),
                    (GEN_AI_PROVIDER_NAME, call.provider),
                    (GEN_AI_USAGE_OUTPUT_TOKENS, call.output_tokens),
                    (GEN_AI_TIME_TO_FIRST_CHUNK, call.ttft_s),
                    (PROBE_ANSWER_TTFT_S, call.answer_ttft_s),
                    (PROBE_REASONING_TOKENS, call.reasoning_tokens),
                    (PROBE_TPOT_S, call.tpot_s),
                    (PROBE_ITL_P50_S, quantile(call.itl_s, 0.5)),
                    (PROBE_SERVER_ITL_P50_S, quantile(call.server_itl_s, 0.5)),
                    (
                        PROBE_JITTER_MAX_S,
                        max((abs(j) for j in call.jitter_s), default=None),
                    ),
                    (PROBE_AMBIGUOUS, 1 if call.ambiguous else None),
                )
                call_start = call.basis_ns or call.token_ns[0]
                span = tracer.start_span(
                    f"chat {call.model or 'unknown'}",
                    context=node_ctx,
                    kind=SpanKind.CLIENT,
                    attributes=call_attrs,
                    start_time=result.wall_ns(call_start),
                )
                if self.token_events:
                    flags = call.reasoning or bytes(len(call.token_ns))
                    for i, (t_ns, reasoning) in enumerate(zip(call.token_ns, flags, strict=False)):
                        span.add_event(
                            "token",
                            {"langgraph.probe.token.index": i, "langgraph.probe.token.reasoning":
                             bool(reasoning)},
                            timestamp=result.wall_ns(t_ns),
                        )  # fmt: skip
                if not call.completed and failure is not None:
                    span.set_attribute(ERROR_TYPE, failure.kind.value)
                    span.set_status(Status(StatusCode.ERROR))
                span.end(end_time=result.wall_ns(max(call.token_ns[-1], call_start)))
            node_span.end(end_time=result.wall_ns(max(end, start)))
        root.end(end_time=result.wall_ns(result.t_end_ns))

    def close(self) -> None:
        """Flush buffered spans and stop the batch thread (call after the scheduler stops)."""
        self.provider.shutdown()


def _phase_events(span: trace.Span, result: ProbeResult) -> None:
    """The phases of the probe as span events at the moment each ended: connection set-up
    (before the span starts at t_request), then headers, first event, first (answer) token."""
    for name, ns in result.phase_stamps():
        # Without a measured set-up, the request was written at the span's own start.
        if ns is not None and (name != "request_written" or result.t_start_ns is not None):
            span.add_event(name, timestamp=result.wall_ns(ns))


def _attrs(
    *pairs: tuple[str, str | int | float | bool | None],
) -> dict[str, str | int | float | bool]:
    """Span attributes, leaving out what was not measured (OTel takes no None values)."""
    return {key: value for key, value in pairs if value is not None and value != ""}


def _span_id_of(result: ProbeResult) -> int | None:
    return int(result.span_id, 16) if result.span_id else None
