"""Failure kinds and the exporter's exception tree. Pure: no I/O, no third-party imports.

```
ExporterError
├── ConfigError              a config file is unreadable or invalid; .path, .problems
└── ProbeFailure             raised inside a probe; a Failure value at the probe boundary
    ├── HTTPStatusFailure    non-2xx before streaming; .http_status, .body_excerpt
    └── StreamProtocolError  bad SSE framing, undecodable JSON, an event of the wrong shape
```

The other outcomes of a stream (`run_error`, `incomplete`, `no_tokens`, `expectation`) are not
raised: the timing model reads them off what arrived (`Timeline.verdict`).

Every `ProbeFailure` carries a `FailureKind`, the low-cardinality value used as the Prometheus
`reason` label and the OTel `error.type` attribute (docs/WIRE.md §18).
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "ConfigError",
    "ExporterError",
    "FailureKind",
    "HTTPStatusFailure",
    "ProbeFailure",
    "StreamProtocolError",
]


class FailureKind(StrEnum):
    """Why a probe failed. Values are label values: renaming one breaks dashboards."""

    CONNECT = "connect"  # DNS, TCP connect refused or timed out
    TLS = "tls"  # handshake failed, certificate untrusted
    HTTP_STATUS = "http_status"  # non-2xx before streaming; the code is kept on its own
    NOT_SSE = "not_sse"  # 2xx, but the body is not text/event-stream
    STALLED = "stalled"  # no byte for longer than the idle deadline (docs/WIRE.md §10)
    DEADLINE = "deadline"  # a phase deadline or the total deadline expired
    PROTOCOL = "protocol"  # bad framing, bad JSON, an event of the wrong shape
    RUN_ERROR = "run_error"  # `event: error` (docs/WIRE.md §8)
    INCOMPLETE = "incomplete"  # the stream ended before the run did (cancelled run, reset)
    NO_TOKENS = "no_tokens"  # a clean end without a single token: TTFT undefined
    EXPECTATION = "expectation"  # content, node or token-count check failed
    INTERNAL = "internal"  # a bug in the exporter; always logged with a traceback
    CONFIG = "config"  # the target's config cannot be honoured now (e.g. a secret is missing)


class ExporterError(Exception):
    """Base of every error the exporter raises on purpose."""


class ConfigError(ExporterError):
    """A config file could not be read or is invalid.

    `problems` holds one line per problem, each naming the key path (`targets[0].interval`).
    Fatal at start, non-fatal on reload (the old config stays).
    """

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: " + "; ".join(problems))


class ProbeFailure(ExporterError):
    """A probe failed in a way the exporter understands; `kind` says which."""

    kind: FailureKind = FailureKind.INTERNAL

    def __init__(
        self,
        message: str,
        *,
        kind: FailureKind | None = None,
        error_type: str | None = None,
        phase: str | None = None,
    ) -> None:
        super().__init__(message)
        if kind is not None:
            self.kind = kind
        self.message = message
        self.error_type = error_type
        self.phase = phase


class HTTPStatusFailure(ProbeFailure):
    """The server answered with a non-2xx status before any streaming."""

    kind = FailureKind.HTTP_STATUS

    def __init__(
        self, http_status: int, message: str, body_excerpt: str, *, phase: str = "headers"
    ) -> None:
        super().__init__(message, phase=phase)
        self.http_status = http_status
        self.body_excerpt = body_excerpt


class StreamProtocolError(ProbeFailure):
    """The bytes are not valid SSE, an event's data is not JSON, or its shape is wrong."""

    kind = FailureKind.PROTOCOL
