"""What one probe sends: the run request's body and headers, and the secrets they carry.

Pure apart from reading secret files and environment variables through the target's sources.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from exporter.config import SecretMask, Target

__all__ = [
    "PROBE_MARKER",
    "STREAM_MODE",
    "TraceParent",
    "request_body",
    "request_headers",
    "run_start_command",
]

PROBE_MARKER = "langgraph-stream-exporter"
STREAM_MODE = ("messages-tuple", "tasks")  # tasks: node start and end (docs/WIRE.md §5)
#: Older servers reject `tasks` with a 422 (docs/WIRE.md §12): the probe then asks for this.
STREAM_MODE_FALLBACK = ("messages-tuple",)


@dataclass(frozen=True, slots=True)
class TraceParent:
    """W3C trace context for one probe; the scheduler draws it, the OTLP sink reuses the ids."""

    trace_id: str  # 32 hex
    span_id: str  # 16 hex

    @classmethod
    def new(cls) -> TraceParent:
        return cls(os.urandom(16).hex(), os.urandom(8).hex())

    @property
    def header(self) -> str:
        return f"00-{self.trace_id}-{self.span_id}-01"


def probe_metadata(target: Target) -> dict[str, str]:
    """Marks probe runs and threads on the server side (copied into every token's metadata,
    docs/WIRE.md §4; what the sweeper of orphaned threads searches for)."""
    return {"probe": PROBE_MARKER, "probe_target": target.name}


def request_body(target: Target, stream_mode: tuple[str, ...] = STREAM_MODE) -> dict[str, Any]:
    """The run request's JSON body (docs/WIRE.md §1)."""
    body: dict[str, Any] = {
        "assistant_id": target.assistant_id,
        "input": target.input,
        "stream_mode": list(stream_mode),
        "stream_subgraphs": target.stream_subgraphs,
        # NOTE: the default "continue" keeps a run going after we hang up (docs/WIRE.md §8).
        "on_disconnect": "cancel",
        "metadata": probe_metadata(target),
    }
    if target.config is not None:
        body["config"] = target.config
    if target.context is not None:
        body["context"] = target.context
    if target.interrupt_before:
        body["interrupt_before"] = list(target.interrupt_before)
    return body


def run_start_command(target: Target, command_id: int = 1) -> dict[str, Any]:
    """The v2 `run.start` command (docs/V2.md §2). The server fixes the stream modes, subgraph
    streaming and resumability itself, and ignores `context` and `interrupt_before`."""
    params: dict[str, Any] = {
        "assistant_id": target.assistant_id,
        "input": target.input,
        "metadata": probe_metadata(target),
    }
    if target.config is not None:
        params["config"] = target.config
    return {"id": command_id, "method": "run.start", "params": params}


def request_headers(target: Target, trace: TraceParent) -> dict[str, str]:
    """Every header of a probe's requests, secrets included (never log this dict)."""
    headers = {
        "accept": "text/event-stream",
        "content-type": "application/json",
        "accept-encoding": "identity",
        "user-agent": f"{PROBE_MARKER}/probe",
        **target.headers,
        "traceparent": trace.header,
    }
    for name, source in target.secret_headers.items():
        value = source.read()
        if value is not None:
            headers[name] = value.get_secret_value()
    key = target.api_key()
    if key is not None:
        headers["x-api-key"] = key.get_secret_value()
    return headers


def sent_secrets(target: Target, headers: dict[str, str]) -> SecretMask:
    """A mask of the secret values this probe actually sends (a rotated file included)."""
    names = {"x-api-key", *(name.lower() for name in target.secret_headers)}
    values = [v for k, v in headers.items() if k.lower() in names]
    try:
        proxy = target.proxy()
    except ValueError:  # the probe fails on it before sending anything
        proxy = None
    if proxy is not None:
        values.extend(proxy.secret_values())
    return SecretMask(values)
