"""The one value every sink reads: an immutable record of one probe. Pure: no I/O.

Stamps are monotonic nanoseconds (`_ns`); derived durations are seconds (`_s`). Metric definitions
(docs/WIRE.md §17): run TTFT from the request, node TTFT from the node's `tasks` start, ITL only
between tokens of the same LLM call, TPOT over `usage_metadata.output_tokens` when sent.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from exporter.core.errors import FailureKind

__all__ = ["CallTiming", "Delivery", "EventLog", "Failure", "NodeExecution", "ProbeResult"]

_NS = 1e9


def _elapsed_s(start_ns: int | None, end_ns: int | None) -> float | None:
    """Seconds from `start_ns` to `end_ns`; None when either was not measured."""
    if start_ns is None or end_ns is None:
        return None
    return (end_ns - start_ns) / _NS


def _earliest(stamps: Iterable[int | None]) -> int | None:
    """The smallest of the stamps that were measured; None when none was."""
    return min((t for t in stamps if t is not None), default=None)


class _TtftFromBasis:
    """TTFT and time to first answer token, both counted from `basis_ns`; shared by a call
    and a node execution, which say where their first tokens were."""

    __slots__ = ()
    basis_ns: int | None

    @property
    def first_token_ns(self) -> int | None:
        raise NotImplementedError

    @property
    def first_answer_ns(self) -> int | None:
        raise NotImplementedError

    @property
    def ttft_s(self) -> float | None:
        """First output of any kind, reasoning included, minus `basis_ns` (OTel's time to first
        chunk)."""
        return _elapsed_s(self.basis_ns, self.first_token_ns)

    @property
    def answer_ttft_s(self) -> float | None:
        """Time to first answer token: first non-reasoning token minus `basis_ns`."""
        return _elapsed_s(self.basis_ns, self.first_answer_ns)


#: The buffered verdict (`ProbeResult.buffering`): a gap this short is not a model's.
BUFFERED_GAP_S = 0.001
BUFFERED_MIN_GAPS = 4
BUFFERED_SHARE = 0.6
BUFFERED_MIN_BURST = 8


@dataclass(frozen=True, slots=True)
class Failure:
    """Why a probe failed. `error_type`: the server's exception class (docs/WIRE.md §8)."""

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
class CallTiming(_TtftFromBasis):
    """One LLM call (one message id, docs/WIRE.md §5): the arrival stamp of each of its tokens.

    A token is an output chunk of any kind: text, reasoning or a tool-call fragment
    (README "How it measures"). `reasoning[i]` is 1 when token `i` carried only reasoning.
    `basis_ns` is the boundary its TTFT counts from: the node's start for the node's first call,
    else the end of the previous call in the same node execution (a node may call a model twice).
    """

    msg_id: str
    model: str | None
    provider: str | None
    token_ns: tuple[int, ...]
    basis_ns: int | None
    output_tokens: int | None  # `usage_metadata.output_tokens`, summed over the call's chunks
    completed: bool  # saw `chunk_position: "last"`: the call finished streaming (docs/WIRE.md §5)
    reasoning: bytes = b""
    usage_reasoning_tokens: int | None = None  # `output_token_details.reasoning`, summed
    # Protocol v2 only (docs/V2.md §4): the server's emit time of each token (ms, its clock),
    # and of the boundary its TTFT counts from.
    server_ts_ms: tuple[float, ...] = ()
    server_basis_ms: float | None = None
    #: v2: tokens of calls that streamed at once in one namespace, which v2 cannot tell apart
    #: (docs/V2.md §3). Counted, never used for ITL or TPOT.
    ambiguous: bool = False

    @property
    def tokens(self) -> int:
        return len(self.token_ns)

    @property
    def reasoning_tokens(self) -> int:
        """Tokens streamed that carried only reasoning."""
        return sum(self.reasoning)

    @property
    def first_token_ns(self) -> int | None:
        """Arrival of the first token of any kind."""
        return self.token_ns[0] if self.token_ns else None

    @property
    def first_answer_ns(self) -> int | None:
        """Arrival of the first non-reasoning token (text or a tool-call fragment)."""
        for t, r in zip(self.token_ns, self.reasoning or bytes(len(self.token_ns)), strict=True):
            if not r:
                return t
        return None

    @property
    def itl_s(self) -> tuple[float, ...]:
        """Every gap between consecutive tokens of this call, reasoning included."""
        if self.ambiguous:
            return ()
        t = self.token_ns
        return tuple((t[i] - t[i - 1]) / _NS for i in range(1, len(t)))

    def _switches(self) -> tuple[int, int]:
        """(number of reasoning<->answer switches, total ns spent in those switch gaps)."""
        r, t = self.reasoning, self.token_ns
        count = pause = 0
        for i in range(1, min(len(r), len(t))):
            if r[i] != r[i - 1]:
                count += 1
                pause += t[i] - t[i - 1]
        return count, pause

    def tpot_basis(self) -> tuple[int, str]:
        """(N, where N came from) for TPOT: usage output tokens summed over the chunks, less
        reasoning tokens that were never streamed ("usage"); else the streamed token count
        ("chunks")."""
        if self.output_tokens:
            hidden = max(0, (self.usage_reasoning_tokens or 0) - self.reasoning_tokens)
            n = self.output_tokens - hidden
            if n >= self.tokens:
                return n, "usage"
        return self.tokens, "chunks"

    @property
    def tpot_s(self) -> float | None:
        """Time per output token: streaming time / (N - 1), both without the pauses where the
        call switched between reasoning and answer (those are visible in ITL instead).

        N is `tpot_basis()`; None below 2 tokens.
        """
        if self.ambiguous:
            return None
        n, _ = self.tpot_basis()
        switches, pause_ns = self._switches()
        if n - switches < 2 or len(self.token_ns) < 2:
            return None
        return (self.token_ns[-1] - self.token_ns[0] - pause_ns) / _NS / (n - 1 - switches)

    @property
    def server_itl_s(self) -> tuple[float, ...]:
        """v2: the gaps between this call's tokens on the server's clock (1 ms resolution)."""
        t = self.server_ts_ms
        if self.ambiguous or len(t) != len(self.token_ns):
            return ()
        return tuple((t[i] - t[i - 1]) / 1000 for i in range(1, len(t)))

    @property
    def server_ttft_s(self) -> float | None:
        if not self.server_ts_ms or self.server_basis_ms is None:
            return None
        return (self.server_ts_ms[0] - self.server_basis_ms) / 1000

    @property
    def jitter_s(self) -> tuple[float, ...]:
        """v2 delivery jitter: each received gap minus the same gap on the server's clock.

        Valid for interleaved (`ambiguous`) tokens too: it is about delivery, not the model.
        """
        t, s = self.token_ns, self.server_ts_ms
        if len(s) != len(t):
            return ()
        return tuple((t[i] - t[i - 1]) / _NS - (s[i] - s[i - 1]) / 1000 for i in range(1, len(t)))


@dataclass(frozen=True, slots=True)
class NodeExecution(_TtftFromBasis):
    """One node execution (one task id). `basis` says where its TTFT counts from.

    `basis` is "tasks" when the `tasks` start was seen, else "previous_boundary" (the last
    metadata, task end or call end before its first chunk; docs/WIRE.md §17 fallback).
    """

    node: str
    task_id: str | None
    start_ns: int | None
    end_ns: int | None
    error_type: str | None
    calls: tuple[CallTiming, ...]
    basis: str
    basis_ns: int | None
    server_basis_ms: float | None = None  # v2: the basis on the server's clock (docs/V2.md §4)

    @property
    def tokens(self) -> int:
        return sum(c.tokens for c in self.calls)

    @property
    def first_token_ns(self) -> int | None:
        """Arrival of the execution's first token of any kind, over all its calls."""
        return _earliest(c.first_token_ns for c in self.calls)

    @property
    def first_answer_ns(self) -> int | None:
        """Arrival of the execution's first non-reasoning token, over all its calls."""
        return _earliest(c.first_answer_ns for c in self.calls)

    @property
    def reasoning_tokens(self) -> int:
        return sum(c.reasoning_tokens for c in self.calls)

    @property
    def duration_s(self) -> float | None:
        if self.start_ns is None or self.end_ns is None:
            return None
        return (self.end_ns - self.start_ns) / _NS

    def itl_s(self) -> list[float]:
        """Every inter-token gap of this execution, call by call (never across calls)."""
        return [gap for c in self.calls for gap in c.itl_s]

    @property
    def server_ttft_s(self) -> float | None:
        """v2: node TTFT on the server's clock (first token's emit time minus the basis's)."""
        firsts = [c.server_ts_ms[0] for c in self.calls if c.server_ts_ms and not c.ambiguous]
        if not firsts or self.server_basis_ms is None:
            return None
        return (min(firsts) - self.server_basis_ms) / 1000


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
class Delivery:
    """v2: server time beside client time for one run (docs/V2.md §4). Seconds.

    `event_lag_s` is, per event in arrival order, (arrival on our wall clock - the server's
    `params.timestamp`) minus the smallest such lag of the run: how much later than the
    least-delayed event it arrived. No clock sync is needed, the offset cancels out.
    `verdict` is "steady", "polled" (server gaps steady, received ones not: something on the
    way delivers in batches) or "unknown" (too few gaps).
    """

    event_lag_s: tuple[float, ...] = ()
    jitter_s: tuple[float, ...] = ()
    server_gap_s: tuple[float, ...] = ()
    verdict: str = "unknown"

    def to_dict(self) -> dict[str, Any]:
        lags = sorted(self.event_lag_s)
        jit = sorted(abs(j) for j in self.jitter_s)
        return {
            "verdict": self.verdict,
            "event_lag_s": list(self.event_lag_s),
            "event_lag_max_s": lags[-1] if lags else None,
            "jitter_s": list(self.jitter_s),
            "jitter_abs_max_s": jit[-1] if jit else None,
            "jitter_abs_mean_s": sum(jit) / len(jit) if jit else None,
        }


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """Everything one probe measured, success or not. Times before a failure are kept."""

    target: str
    url: str
    assistant_id: str
    mode: str
    t_request_ns: int  # monotonic: the run request was written to an open connection
    wall_request_ns: int  # epoch ns of the same instant: the anchor for span times
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
    # Connection phases (monotonic ns), before t_request; None when not measured (docs/WIRE.md §1)
    t_start_ns: int | None = None  # the probe began: before DNS, connect and TLS
    t_dns_ns: int | None = None  # name resolved
    t_connect_ns: int | None = None  # TCP connected (to the proxy when there is one)
    t_proxy_ns: int | None = None  # CONNECT tunnel through the proxy established
    t_tls_ns: int | None = None  # TLS handshake with the origin done
    t_first_answer_ns: int | None = None  # first non-reasoning token of the run
    stream_mode: tuple[str, ...] = ("messages-tuple", "tasks")
    stream_mode_fallback: bool = False  # the server rejected `tasks`: asked again without it
    tokens_dropped: int = 0  # tokens past the stamping cap: counted, not stamped
    content_encoding: str | None = None  # a proxy compressed the stream anyway
    tls_cert_not_after_s: float | None = None  # Unix time the server's certificate expires
    protocol: str = "legacy"  # "legacy" (POST /runs/stream) or "v2" (docs/V2.md)
    #: Why the run ended, from the server (docs/V2.md §6): success, error, timeout,
    #: interrupted, cancelled; None when not asked or not known.
    run_status: str | None = None
    interrupted: bool = False  # the run stopped at an interrupt (a success when expected)
    delivery: Delivery | None = None  # v2 only
    notes: tuple[str, ...] = ()  # what the protocol could not tell (e.g. interleaved calls)
    #: The transport stamped the moment the request was written, and `t_request_ns` is it.
    #: False: the request never reached an open connection (a connect or TLS failure, a probe
    #: not sent) or the transport did not say when; `t_request_ns` is then only the clock's
    #: anchor (the probe's start) and no phase ends there.
    request_written: bool = True

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

    @property
    def answer_ttft_s(self) -> float | None:
        """Run time to first answer token: first non-reasoning token minus the request."""
        return self.since_request_s(self.t_first_answer_ns)

    def setup_stamps(self) -> tuple[tuple[str, int | None], ...]:
        """When each phase of the connection set-up ended, in order: (name, monotonic ns, None
        when not measured) for `dns`, `connect`, `proxy_connect`, `tls`, `request_written`
        (t_request; None unless `request_written`)."""
        return (
            ("dns", self.t_dns_ns),
            ("connect", self.t_connect_ns),
            ("proxy_connect", self.t_proxy_ns),
            ("tls", self.t_tls_ns),
            ("request_written", self.t_request_ns if self.request_written else None),
        )

    def phase_stamps(self) -> tuple[tuple[str, int | None], ...]:
        """`setup_stamps()`, then when the stream's phases ended: `headers`, `first_event`,
        `first_token`, `first_answer_token`."""
        return (
            *self.setup_stamps(),
            ("headers", self.t_headers_ns),
            ("first_event", self.t_first_event_ns),
            ("first_token", self.t_first_token_ns),
            ("first_answer_token", self.t_first_answer_ns),
        )

    def phase_durations_s(self) -> dict[str, float]:
        """Durations of the connection phases that were measured: `dns`, `connect`,
        `proxy_connect`, `tls`, `request_write` (the last one ends at t_request). A phase that
        did not happen or was not measured is absent, never 0."""
        out: dict[str, float] = {}
        prev = self.t_start_ns  # None: no set-up was measured, so no phase has a start
        for name, ns in self.setup_stamps():
            if ns is not None and prev is not None:
                # a duration is named for the phase, not for its end
                out["request_write" if name == "request_written" else name] = (
                    max(0, ns - prev) / _NS
                )
                prev = ns
        return out

    def since_start_s(self, ns: int | None) -> float | None:
        """Seconds from the probe's start (connection set-up included): what a user feels."""
        start = self.t_start_ns if self.t_start_ns is not None else self.t_request_ns
        return None if ns is None else (ns - start) / _NS

    def _short_gaps(self) -> tuple[int, int]:
        """(inter-token gaps under 1 ms, all inter-token gaps) of the run."""
        gaps = [g for n in self.nodes for g in n.itl_s()]
        return sum(1 for g in gaps if g < BUFFERED_GAP_S), len(gaps)

    def buffered_gap_ratio(self) -> float | None:
        """Share of inter-token gaps under 1 ms: near 1 when something buffers the stream."""
        short, total = self._short_gaps()
        return short / total if total else None

    def buffering(self) -> tuple[bool, str]:
        """(buffered, why): did tokens arrive in bursts no model produces? README "How it
        measures" defines it: the stream was compressed on the way, or at least
        `BUFFERED_MIN_GAPS` gaps and `BUFFERED_SHARE` of them under 1 ms, or at least
        `BUFFERED_MIN_BURST` tokens (and half the run's) in one socket read."""
        if self.content_encoding:
            return True, f"compressed on the way (content-encoding {self.content_encoding})"
        short, total = self._short_gaps()
        if total >= BUFFERED_MIN_GAPS and short / total >= BUFFERED_SHARE:
            return True, f"{short / total:.0%} of {total} inter-token gaps under 1 ms"
        burst = self.max_tokens_per_read
        if burst >= BUFFERED_MIN_BURST and burst * 2 >= self.tokens:
            return True, f"{burst} of {self.tokens} tokens arrived in one read"
        if self.delivery is not None and self.delivery.verdict == "buffered":
            # v2: the server's own emit times show the model was steady (docs/V2.md §4).
            jitter = max((abs(j) for j in self.delivery.jitter_s), default=0.0)
            return True, (
                "the server's token gaps are steady, the received ones are not"
                f" (|jitter| up to {jitter * 1000:.1f} ms): delivery is batched or polled"
            )
        return False, ""

    @property
    def buffered(self) -> bool:
        return self.buffering()[0]

    def to_dict(self) -> dict[str, Any]:
        """The `probe --json` shape; fields are only ever added, never renamed."""
        rel = self.since_request_s
        buffered, why = self.buffering()
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
            "stream_mode": list(self.stream_mode),
            "stream_mode_fallback": self.stream_mode_fallback,
            "phases_s": {
                **self.phase_durations_s(),
                "headers": rel(self.t_headers_ns),
                "first_event": rel(self.t_first_event_ns),
                "first_token": rel(self.t_first_token_ns),
                "first_answer_token": rel(self.t_first_answer_ns),
                "total": self.duration_s,
            },
            "time_from_probe_start_s": {
                "first_token": self.since_start_s(self.t_first_token_ns),
                "first_answer_token": self.since_start_s(self.t_first_answer_ns),
                "total": self.since_start_s(self.t_end_ns),
            },
            "tokens": self.tokens,
            "reasoning_tokens": sum(n.reasoning_tokens for n in self.nodes),
            "tokens_dropped": self.tokens_dropped,
            "heartbeats": self.heartbeats,
            "bytes_read": self.bytes_read,
            "buffered": buffered,
            "buffering": {
                "buffered": buffered,
                "why": why or None,
                "gap_ratio_below_1ms": self.buffered_gap_ratio(),
                "max_tokens_per_read": self.max_tokens_per_read,
                "content_encoding": self.content_encoding,
            },
            "nodes": [
                {
                    "node": n.node,
                    "task_id": n.task_id,
                    "start_s": rel(n.start_ns),
                    "end_s": rel(n.end_ns),
                    "ttft_s": n.ttft_s,
                    "answer_ttft_s": n.answer_ttft_s,
                    "ttft_basis": n.basis,
                    "tokens": n.tokens,
                    "reasoning_tokens": n.reasoning_tokens,
                    "duration_s": n.duration_s,
                    "error_type": n.error_type,
                    "server_ttft_s": n.server_ttft_s,
                    "calls": [
                        {
                            "msg_id": c.msg_id,
                            "model": c.model,
                            "provider": c.provider,
                            "first_token_s": rel(c.token_ns[0]),
                            "last_token_s": rel(c.token_ns[-1]),
                            "tokens": c.tokens,
                            "reasoning_tokens": c.reasoning_tokens,
                            "output_tokens": c.output_tokens,
                            "usage_reasoning_tokens": c.usage_reasoning_tokens,
                            "ttft_s": c.ttft_s,
                            "answer_ttft_s": c.answer_ttft_s,
                            "itl_s": list(c.itl_s),
                            "tpot_s": c.tpot_s,
                            "tpot_tokens": c.tpot_basis()[0],
                            "tpot_count": c.tpot_basis()[1],
                            "completed": c.completed,
                            "server_ttft_s": c.server_ttft_s,
                            "server_itl_s": list(c.server_itl_s),
                            "jitter_s": list(c.jitter_s),
                            "ambiguous": c.ambiguous,
                        }
                        for c in n.calls
                        if c.token_ns
                    ],
                }
                for n in self.nodes
            ],
            "events": self.events.to_dict(),
            "tls_cert_not_after_s": self.tls_cert_not_after_s,
            "protocol": self.protocol,
            "run_status": self.run_status,
            "interrupted": self.interrupted,
            "delivery": None if self.delivery is None else self.delivery.to_dict(),
            "notes": list(self.notes),
        }
