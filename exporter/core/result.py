"""The one value every sink reads: an immutable record of one probe. Pure: no I/O.

Stamps are monotonic nanoseconds (`_ns`); derived durations are seconds (`_s`). Metric definitions
are DESIGN §2: run TTFT from the request, node TTFT from the node's `tasks` start, ITL only between
tokens of the same LLM call, TPOT over `usage_metadata.output_tokens` when the model sent it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from exporter.core.errors import FailureKind

__all__ = ["CallTiming", "EventLog", "Failure", "NodeExecution", "ProbeResult"]

_NS = 1e9


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a probe failed. `error_type` is the server's error class for `run_error` (wire §8)."""

    kind: FailureKind
    message: str
    error_type: str | None = None
    http_status: int | None = None
    phase: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "message": self.message,
            "error_type": self.error_type,
            "http_status": self.http_status,
            "phase": self.phase,
        }


@dataclass(frozen=True, slots=True)
class CallTiming:
    """One LLM call (one message id, wire §5): the arrival stamp of each of its tokens.

    `basis_ns` is the boundary its TTFT counts from: the node's start for the node's first call,
    else the end of the previous call in the same node execution (a node may call a model twice).
    """

    msg_id: str
    model: str | None
    provider: str | None
    token_ns: tuple[int, ...]
    basis_ns: int | None
    output_tokens: int | None
    completed: bool  # saw `chunk_position: "last"`: the call finished streaming (wire §5)

    @property
    def tokens(self) -> int:
        return len(self.token_ns)

    @property
    def ttft_s(self) -> float | None:
        if not self.token_ns or self.basis_ns is None:
            return None
        return (self.token_ns[0] - self.basis_ns) / _NS

    @property
    def itl_s(self) -> tuple[float, ...]:
        t = self.token_ns
        return tuple((t[i] - t[i - 1]) / _NS for i in range(1, len(t)))

    @property
    def tpot_s(self) -> float | None:
        n = self.output_tokens if self.output_tokens else self.tokens
        if n < 2 or len(self.token_ns) < 2:
            return None
        return (self.token_ns[-1] - self.token_ns[0]) / _NS / (n - 1)


@dataclass(frozen=True, slots=True)
class NodeExecution:
    """One node execution (one task id). `basis` says where its TTFT counts from.

    `basis` is "tasks" when the `tasks` start was seen, else "previous_boundary" (the last
    metadata, task end or call end before its first chunk; DESIGN §2 fallback).
    """

    node: str
    task_id: str | None
    start_ns: int | None
    end_ns: int | None
    error_type: str | None
    calls: tuple[CallTiming, ...]
    basis: str
    basis_ns: int | None

    @property
    def tokens(self) -> int:
        return sum(c.tokens for c in self.calls)

    @property
    def first_token_ns(self) -> int | None:
        firsts = [c.token_ns[0] for c in self.calls if c.token_ns]
        return min(firsts) if firsts else None

    @property
    def ttft_s(self) -> float | None:
        first = self.first_token_ns
        if first is None or self.basis_ns is None:
            return None
        return (first - self.basis_ns) / _NS

    @property
    def duration_s(self) -> float | None:
        if self.start_ns is None or self.end_ns is None:
            return None
        return (self.end_ns - self.start_ns) / _NS

    def itl_s(self) -> list[float]:
        """Every inter-token gap of this execution, call by call (never across calls)."""
        return [gap for c in self.calls for gap in c.itl_s]


@dataclass(frozen=True, slots=True)
class EventLog:
    """Every SSE event received, comments excluded, in order (`metadata` first)."""

    recv_ns: tuple[int, ...] = ()
    name: tuple[str, ...] = ()
    node: tuple[str | None, ...] = ()
    dropped: int = 0  # events past the cap, counted but not listed

    def to_dict(self) -> dict[str, Any]:
        return {
            "recv_ns": list(self.recv_ns),
            "name": list(self.name),
            "node": list(self.node),
            "dropped": self.dropped,
        }


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """Everything one probe measured, success or not. Times before a failure are kept."""

    target: str
    url: str
    assistant_id: str
    mode: str
    t_request_ns: int  # monotonic, just before the run request was written (DESIGN §1.3)
    wall_request_ns: int  # time.time_ns() taken with t_request_ns: the anchor for span times
    t_end_ns: int
    failure: Failure | None
    run_id: str | None = None
    thread_id: str | None = None
    trace_id: str | None = None
    span_id: str | None = None  # of the `traceparent` sent: the root span's id
    http_status: int | None = None
    t_headers_ns: int | None = None
    t_first_event_ns: int | None = None
    t_first_token_ns: int | None = None
    nodes: tuple[NodeExecution, ...] = ()
    events: EventLog = field(default_factory=EventLog)
    heartbeats: int = 0
    bytes_read: int = 0
    max_tokens_per_read: int = 0
    text: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    log: tuple[str, ...] = ()
    #: Tokens that arrived past the stamping cap (`timing.MAX_TOKENS_STAMPED`): counted, not in
    #: any call's `token_ns`.
    tokens_dropped: int = 0

    @property
    def success(self) -> bool:
        return self.failure is None

    @property
    def outcome(self) -> str:
        return "success" if self.failure is None else "failure"

    @property
    def tokens(self) -> int:
        """Every token received, stamped or past the cap (agrees with `Timeline.tokens`)."""
        return sum(n.tokens for n in self.nodes) + self.tokens_dropped

    def since_request_s(self, ns: int | None) -> float | None:
        return None if ns is None else (ns - self.t_request_ns) / _NS

    @property
    def duration_s(self) -> float:
        return (self.t_end_ns - self.t_request_ns) / _NS

    @property
    def ttft_s(self) -> float | None:
        """Run TTFT: first token of the run minus the request (what the end user feels)."""
        return self.since_request_s(self.t_first_token_ns)

    def wall_ns(self, ns: int) -> int:
        """Epoch nanoseconds for a monotonic stamp of this probe (for OTLP spans)."""
        return self.wall_request_ns + (ns - self.t_request_ns)

    def buffered_gap_ratio(self) -> float | None:
        """Share of inter-token gaps under 1 ms: near 1 when a proxy buffers SSE (DESIGN §7.1)."""
        gaps = [g for n in self.nodes for g in n.itl_s()]
        if not gaps:
            return None
        return sum(1 for g in gaps if g < 0.001) / len(gaps)

    def to_dict(self) -> dict[str, Any]:
        """The `probe --json` shape (issue 3); fields are only ever added, never renamed."""
        rel = self.since_request_s
        return {
            "outcome": self.outcome,
            "failure": None if self.failure is None else self.failure.to_dict(),
            "target": self.target,
            "url": self.url,
            "assistant_id": self.assistant_id,
            "mode": self.mode,
            "run_id": self.run_id,
            "thread_id": self.thread_id,
            "trace_id": self.trace_id,
            "span_id": self.span_id,
            "http_status": self.http_status,
            "t_request_ns": self.t_request_ns,
            "phases_s": {
                "headers": rel(self.t_headers_ns),
                "first_event": rel(self.t_first_event_ns),
                "first_token": rel(self.t_first_token_ns),
                "total": self.duration_s,
            },
            "tokens": self.tokens,
            "tokens_dropped": self.tokens_dropped,
            "heartbeats": self.heartbeats,
            "bytes_read": self.bytes_read,
            "buffering": {
                "gap_ratio_below_1ms": self.buffered_gap_ratio(),
                "max_tokens_per_read": self.max_tokens_per_read,
            },
            "nodes": [
                {
                    "node": n.node,
                    "task_id": n.task_id,
                    "start_s": rel(n.start_ns),
                    "end_s": rel(n.end_ns),
                    "ttft_s": n.ttft_s,
                    "ttft_basis": n.basis,
                    "duration_s": n.duration_s,
                    "error_type": n.error_type,
                    "calls": [
                        {
                            "msg_id": c.msg_id,
                            "model": c.model,
                            "provider": c.provider,
                            "first_token_s": rel(c.token_ns[0]),
                            "last_token_s": rel(c.token_ns[-1]),
                            "tokens": c.tokens,
                            "output_tokens": c.output_tokens,
                            "ttft_s": c.ttft_s,
                            "itl_s": list(c.itl_s),
                            "tpot_s": c.tpot_s,
                            "completed": c.completed,
                        }
                        for c in n.calls
                        if c.token_ns
                    ],
                }
                for n in self.nodes
            ],
            "events": self.events.to_dict(),
        }
