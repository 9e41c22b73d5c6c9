"""A real OTLP trace receiver for tests: gRPC and http/protobuf on 127.0.0.1.

There is no collector binary on these machines, so this plays the collector: a grpcio
`TraceService` server and a stdlib `ThreadingHTTPServer` accepting `POST /v1/traces`
(`application/x-protobuf`, optionally gzip/deflate encoded). Both decode into
`ExportTraceServiceRequest` with `opentelemetry-proto`, so what the tests see is exactly what the
SDK's exporters put on the wire.

    with OTLPReceiver() as rx:
        exporter = OTLPSpanExporter(endpoint=rx.grpc_endpoint, insecure=True)
        ...
        (span,) = rx.wait_for_spans(1, timeout_s=5)
"""

from __future__ import annotations

import gzip
import threading
import zlib
from collections.abc import Callable, Iterable, Mapping
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal

import grpc
from opentelemetry.proto.collector.metrics.v1 import (
    metrics_service_pb2,
    metrics_service_pb2_grpc,
)
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

__all__ = [
    "OTLPReceiver",
    "ReceivedExport",
    "ReceivedMetric",
    "ReceivedPoint",
    "ReceivedSpan",
    "attributes_to_dict",
]

Protocol = Literal["grpc", "http"]


@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    trace_id: str  # 32 hex chars
    span_id: str  # 16 hex chars
    parent_span_id: str  # 16 hex chars, or "" for a root span
    kind: int  # opentelemetry.proto.trace.v1.Span.SpanKind: 1 internal, 2 server, 3 client …
    start_ns: int  # epoch ns, as sent
    end_ns: int
    attributes: dict[str, Any]
    status_code: int  # 0 unset, 1 ok, 2 error
    resource: dict[str, Any]
    protocol: Protocol
    status_message: str = ""
    scope_name: str = ""
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


@dataclass(frozen=True)
class ReceivedExport:
    """One export call as received, for tests about batching, headers or compression."""

    protocol: Protocol
    request: trace_service_pb2.ExportTraceServiceRequest
    headers: dict[str, str]  # HTTP headers or gRPC metadata, lower-case keys


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return attributes_to_dict(v.kvlist_value.values)
    return getattr(v, kind)


def attributes_to_dict(kvs: Iterable[KeyValue]) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs}


def _flatten(
    req: trace_service_pb2.ExportTraceServiceRequest, protocol: Protocol
) -> list[ReceivedSpan]:
    out: list[ReceivedSpan] = []
    for rs in req.resource_spans:
        resource = attributes_to_dict(rs.resource.attributes)
        for ss in rs.scope_spans:
            for s in ss.spans:
                out.append(
                    ReceivedSpan(
                        name=s.name,
                        trace_id=s.trace_id.hex(),
                        span_id=s.span_id.hex(),
                        parent_span_id=s.parent_span_id.hex(),
                        kind=s.kind,
                        start_ns=s.start_time_unix_nano,
                        end_ns=s.end_time_unix_nano,
                        attributes=attributes_to_dict(s.attributes),
                        status_code=s.status.code,
                        resource=resource,
                        protocol=protocol,
                        status_message=s.status.message,
                        scope_name=ss.scope.name,
                        events=[(e.name, attributes_to_dict(e.attributes)) for e in s.events],
                    )
                )
    return out


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, rx: OTLPReceiver) -> None:
        self._rx = rx

    def Export(  # name fixed by the generated servicer
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        if self._rx.reject:
            # INVALID_ARGUMENT is not retryable for the SDK, so a rejecting test stays fast.
            self._rx._count_rejected()
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "rejected by test receiver")
        headers = {k.lower(): v for k, v in context.invocation_metadata() if isinstance(v, str)}
        self._rx._store("grpc", request, headers)
        return trace_service_pb2.ExportTraceServiceResponse()


@dataclass(frozen=True)
class ReceivedPoint:
    """One histogram or sum data point as received."""

    attributes: dict[str, Any]
    value: float  # the sum of a histogram, the value of a sum
    count: int  # histogram count; 0 for a sum
    bounds: tuple[float, ...]
    bucket_counts: tuple[int, ...]
    exemplars: tuple[tuple[str, str, float], ...]  # (trace id hex, span id hex, value)


@dataclass(frozen=True)
class ReceivedMetric:
    name: str
    unit: str
    description: str
    kind: str  # "histogram", "sum", "gauge" …: the proto's data oneof
    points: tuple[ReceivedPoint, ...]
    resource: dict[str, Any]
    protocol: Protocol


def _flatten_metrics(
    req: metrics_service_pb2.ExportMetricsServiceRequest, protocol: Protocol
) -> list[ReceivedMetric]:
    out: list[ReceivedMetric] = []
    for rm in req.resource_metrics:
        resource = attributes_to_dict(rm.resource.attributes)
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                kind = m.WhichOneof("data") or ""
                points = []
                for p in getattr(m, kind).data_points if kind else []:
                    exemplars = tuple(
                        (e.trace_id.hex(), e.span_id.hex(),
                         e.as_double if e.WhichOneof("value") == "as_double" else float(e.as_int))
                        for e in p.exemplars
                    )  # fmt: skip
                    if kind in ("histogram",):
                        points.append(ReceivedPoint(
                            attributes_to_dict(p.attributes), p.sum, p.count,
                            tuple(p.explicit_bounds), tuple(p.bucket_counts), exemplars,
                        ))  # fmt: skip
                    else:
                        value = p.as_double if p.WhichOneof("value") == "as_double" else p.as_int
                        points.append(ReceivedPoint(
                            attributes_to_dict(p.attributes), float(value), 0, (), (), exemplars,
                        ))  # fmt: skip
                out.append(ReceivedMetric(m.name, m.unit, m.description, kind, tuple(points),
                                          resource, protocol))  # fmt: skip
    return out


class _MetricsService(metrics_service_pb2_grpc.MetricsServiceServicer):
    def __init__(self, rx: OTLPReceiver) -> None:
        self._rx = rx

    def Export(  # name fixed by the generated servicer
        self,
        request: metrics_service_pb2.ExportMetricsServiceRequest,
        context: grpc.ServicerContext,
    ) -> metrics_service_pb2.ExportMetricsServiceResponse:
        self._rx._store_metrics("grpc", request)
        return metrics_service_pb2.ExportMetricsServiceResponse()


def _make_handler(rx: OTLPReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a collector would

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep pytest output clean

        def _reply(self, code: int, body: bytes, content_type: str) -> None:
            self.send_response(code)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _read_body(self) -> bytes:
            if "chunked" in self.headers.get("transfer-encoding", "").lower():
                parts: list[bytes] = []
                while True:
                    size = int(self.rfile.readline().split(b";", 1)[0].strip(), 16)
                    if size == 0:
                        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                            pass
                        return b"".join(parts)
                    parts.append(self.rfile.read(size))
                    self.rfile.readline()
            return self.rfile.read(int(self.headers.get("content-length", "0")))

        def do_POST(self) -> None:  # stdlib naming
            raw = self._read_body()
            if self.path.partition("?")[0] == "/v1/metrics":
                if self.headers.get("content-encoding", "").strip().lower() == "gzip":
                    raw = gzip.decompress(raw)
                mreq = metrics_service_pb2.ExportMetricsServiceRequest.FromString(raw)
                rx._store_metrics("http", mreq)
                body = metrics_service_pb2.ExportMetricsServiceResponse().SerializeToString()
                self._reply(200, body, "application/x-protobuf")
                return
            if self.path.partition("?")[0] != "/v1/traces":
                self._reply(404, b"not found", "text/plain")
                return
            ctype = self.headers.get("content-type", "").partition(";")[0].strip()
            if ctype != "application/x-protobuf":
                self._reply(415, b"only application/x-protobuf", "text/plain")
                return
            if rx.reject:
                rx._count_rejected()
                self._reply(400, b"rejected by test receiver", "text/plain")  # not retryable
                return
            encoding = self.headers.get("content-encoding", "").strip().lower()
            try:
                if encoding == "gzip":
                    raw = gzip.decompress(raw)
                elif encoding == "deflate":
                    raw = zlib.decompress(raw)
                req = trace_service_pb2.ExportTraceServiceRequest.FromString(raw)
            except Exception as exc:  # a malformed export is a test failure, not a crash
                self._reply(400, repr(exc).encode(), "text/plain")
                return
            rx._store("http", req, {k.lower(): v for k, v in self.headers.items()})
            resp = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            self._reply(200, resp, "application/x-protobuf")

    return Handler


class OTLPReceiver:
    """Both OTLP trace endpoints on 127.0.0.1, started on enter, stopped on exit.

    Set `reject = True` to answer every export with a non-retryable error (HTTP 400 /
    gRPC INVALID_ARGUMENT), for sink-failure tests; `rejected` counts those calls.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._spans: list[ReceivedSpan] = []
        self._exports: list[ReceivedExport] = []
        self._metrics: list[ReceivedMetric] = []
        self._grpc: grpc.Server | None = None
        self._http: ThreadingHTTPServer | None = None
        self._http_thread: threading.Thread | None = None
        self.reject = False
        self.rejected = 0
        self.grpc_endpoint = ""
        self.http_endpoint = ""

    def __enter__(self) -> OTLPReceiver:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(  # type: ignore[no-untyped-call]
            _TraceService(self), server
        )
        metrics_service_pb2_grpc.add_MetricsServiceServicer_to_server(  # type: ignore[no-untyped-call]
            _MetricsService(self), server
        )
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._grpc = server
        self.grpc_endpoint = f"http://127.0.0.1:{port}"

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        httpd.daemon_threads = True
        self._http = httpd
        # A short poll interval: shutdown() waits up to one interval, on every test teardown.
        self._http_thread = threading.Thread(
            target=httpd.serve_forever, args=(0.02,), name="otlp-http-receiver", daemon=True
        )
        self._http_thread.start()
        self.http_endpoint = f"http://127.0.0.1:{httpd.server_address[1]}"

    def stop(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._http_thread is not None:
            self._http_thread.join()
            self._http_thread = None
        if self._grpc is not None:
            self._grpc.stop(grace=None).wait()
            self._grpc = None

    @property
    def http_traces_url(self) -> str:
        """The full URL for an explicit `OTLPSpanExporter(endpoint=...)` (http/protobuf)."""
        return f"{self.http_endpoint}/v1/traces"

    # -- storage --------------------------------------------------------------------------

    def _store(
        self,
        protocol: Protocol,
        req: trace_service_pb2.ExportTraceServiceRequest,
        headers: Mapping[str, str],
    ) -> None:
        spans = _flatten(req, protocol)
        with self._cond:
            self._exports.append(ReceivedExport(protocol, req, dict(headers)))
            self._spans.extend(spans)
            self._cond.notify_all()

    def _store_metrics(
        self, protocol: Protocol, req: metrics_service_pb2.ExportMetricsServiceRequest
    ) -> None:
        metrics = _flatten_metrics(req, protocol)
        with self._cond:
            self._metrics.extend(metrics)
            self._cond.notify_all()

    def metrics(self) -> list[ReceivedMetric]:
        with self._cond:
            return list(self._metrics)

    def wait_for_metrics(
        self,
        names: Iterable[str],
        timeout_s: float,
        until: Callable[[dict[str, ReceivedMetric]], bool] = lambda _: True,
    ) -> dict[str, ReceivedMetric]:
        """Block until every name arrived and `until(latest)` holds; returns the latest export
        of each name (cumulative temporality: the latest holds everything). Raises TimeoutError
        naming what did arrive."""
        wanted = set(names)

        def latest() -> dict[str, ReceivedMetric]:
            return {m.name: m for m in self._metrics}

        with self._cond:
            if not self._cond.wait_for(
                lambda: wanted <= set(latest()) and until(latest()), timeout_s
            ):
                raise TimeoutError(f"expected {sorted(wanted)}, got {sorted(latest())}")
            return latest()

    def _count_rejected(self) -> None:
        with self._cond:
            self.rejected += 1
            self._cond.notify_all()

    def spans(self) -> list[ReceivedSpan]:
        with self._cond:
            return list(self._spans)

    def exports(self) -> list[ReceivedExport]:
        with self._cond:
            return list(self._exports)

    def clear(self) -> None:
        with self._cond:
            self._spans.clear()
            self._exports.clear()
            self.rejected = 0

    def wait_for_spans(self, n: int, timeout_s: float) -> list[ReceivedSpan]:
        """Block until at least `n` spans arrived; raise TimeoutError naming what did arrive."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self._spans) >= n, timeout_s):
                names = [s.name for s in self._spans]
                raise TimeoutError(f"expected {n} spans within {timeout_s}s, got {names!r}")
            return list(self._spans)
