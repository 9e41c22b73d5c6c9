"""The timing model of a v2 event stream: stamped v2 events in, per-node and per-call timings
out, with the server's own emit time beside every arrival. Pure: no I/O.

What v2 allows (docs/V2.md §3):

* A call is opened by `message-start` (the only event with a message id) in its namespace; its
  deltas carry no id. While two calls of one namespace are open at once, their tokens cannot be
  told apart: they are kept in one `ambiguous` pseudo-call (counted, never used for ITL or
  TPOT) and the result says so in its notes.
* One token is one source chunk: the envelopes a chunk becomes (`message-start`,
  `content-block-start`, the first delta) share the `event_id` before its `.n` suffix, and the
  token is stamped at the first of them. So a call's first token is stamped at its
  `message-start`, which the server sends with the first chunk.
* Nodes: inside a subgraph the namespace names the node in the parent (`research:<task>`); at
  the root nothing names the node, so root calls are attributed to `__root__`, one execution per
  superstep (a root `values` event marks each superstep's start, the basis of its TTFT).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from exporter.core.errors import FailureKind
from exporter.core.result import Delivery, Failure, NodeExecution
from exporter.core.timing import CallState, ExecState, Expectations, StreamTimeline
from exporter.core.v2events import (
    V2Event,
    V2Lifecycle,
    V2MessageEvent,
    V2Other,
    V2Values,
    derived,
    namespace_node,
)

__all__ = ["ROOT_NODE", "TERMINAL", "V2Timeline", "delivery_verdict"]

#: The node name of calls in the root graph, where v2 names no node (docs/V2.md §3).
ROOT_NODE = "__root__"
#: Root lifecycle events that end a run; the stream itself never ends (docs/V2.md §2).
TERMINAL = frozenset({"completed", "failed", "interrupted"})
#: A gap whose received length is off its server length by more than this (or a quarter of the
#: server gap, if larger) is "uneven"; a run with enough uneven gaps was delivered in batches.
UNEVEN_JITTER_S = 0.005
UNEVEN_SHARE = 0.3
MIN_GAPS_FOR_VERDICT = 4
_NS = 1e9
_METHOD: dict[type, str] = {
    V2MessageEvent: "messages",
    V2Lifecycle: "lifecycle",
    V2Values: "values",
}


def delivery_verdict(jitter_s: tuple[float, ...], server_gap_s: tuple[float, ...]) -> str:
    """ "buffered" when the server's gaps were steady and enough received gaps were not,
    "steady" otherwise, "unknown" with fewer than 4 gaps. Both tuples are aligned, seconds."""
    if len(jitter_s) < MIN_GAPS_FOR_VERDICT:
        return "unknown"
    uneven = sum(
        1
        for j, s in zip(jitter_s, server_gap_s, strict=True)
        if abs(j) > max(UNEVEN_JITTER_S, s / 4)
    )
    return "buffered" if uneven / len(jitter_s) >= UNEVEN_SHARE else "steady"


@dataclass(slots=True)
class _Call(CallState):
    server_basis_ms: float | None = None
    ambiguous: bool = False
    token_ts: list[float] = field(default_factory=list)


@dataclass(slots=True)
class _Exec(ExecState):
    server_basis_ms: float | None = None
    calls: list[_Call] = field(default_factory=list)


@dataclass(slots=True)
class _Space:
    """One namespace: its current execution, its open calls, its last boundary."""

    exec_key: str | None = None
    boundary_ns: int | None = None
    boundary_ms: float | None = None
    open_calls: list[_Call] = field(default_factory=list)
    group: _Call | None = None  # the pseudo-call of interleaved tokens, while calls overlap
    #: the call whose `message-start` came last, until its first token: (call, arrival,
    #: server time of the `message-start`).
    start: tuple[_Call, int, float | None] | None = None


class V2Timeline(StreamTimeline):
    """Accumulates one v2 probe's measurements; `nodes()`, `delivery()` and friends read them."""

    def __init__(self, t_request_ns: int) -> None:
        super().__init__(t_request_ns)
        self.graph_name: str | None = None
        self.root_status: str | None = None  # completed, failed, interrupted
        self.root_error: str | None = None
        self.notes: list[str] = []
        self._execs: dict[str, _Exec] = {}
        self._spaces: dict[tuple[str, ...], _Space] = {}
        self._root_steps = 0
        self._src_ns = 0
        self._src_ts: float | None = None
        self._src_tokened = False
        self._ev_lag_ms: list[float] = []

    # ---------------------------------------------------------------- feeding

    @property
    def ended(self) -> bool:
        """The root lifecycle ended: the probe closes the stream now (docs/V2.md §2)."""
        return self.root_status is not None

    def event(self, ev: V2Event, recv_ns: int, chunk_seq: int) -> None:
        """Record one decoded v2 event that arrived at `recv_ns` in socket read `chunk_seq`."""
        ns = ev.namespace
        name = ev.method if isinstance(ev, V2Other) else _METHOD[type(ev)]
        if self._log_event(recv_ns, name, namespace_node(ns)[0] or None) and ev.ts_ms is not None:
            self._ev_lag_ms.append(recv_ns / 1e6 - ev.ts_ms)
        if not derived(ev.source_id):  # a new source event (one chunk of a model)
            self._src_ns, self._src_ts = recv_ns, ev.ts_ms
            self._src_tokened = False
        space = self._spaces.get(ns)
        if space is None:
            space = self._spaces[ns] = _Space()
            if ns:  # a subgraph's first event: its node execution starts
                self._start_exec(space, ns, recv_ns, ev.ts_ms)
        if isinstance(ev, V2MessageEvent):
            self._message(space, ns, ev, recv_ns, chunk_seq)
        elif isinstance(ev, V2Values):
            self._boundary(space, recv_ns, ev.ts_ms)
            if not ns:  # a root superstep starts: a new root execution
                self._end_exec(space, recv_ns)
                self._start_exec(space, ns, recv_ns, ev.ts_ms)
            elif space.exec_key is not None and not self._execs[space.exec_key].calls:
                # NOTE: `lifecycle started` carries the session's clock, `values` the graph's
                # (docs/V2.md §4): the graph's is the better server-side basis.
                self._execs[space.exec_key].server_basis_ms = ev.ts_ms
        elif isinstance(ev, V2Lifecycle):
            self._lifecycle(space, ns, ev, recv_ns)

    def _start_exec(
        self, space: _Space, ns: tuple[str, ...], recv_ns: int, ts_ms: float | None
    ) -> None:
        if ns:
            node, task_id = namespace_node(ns)
            key = "|".join(ns)
        else:
            self._root_steps += 1
            node, task_id, key = ROOT_NODE, None, f"{ROOT_NODE}#{self._root_steps}"
        basis = "lifecycle" if ns else "superstep"
        self._execs[key] = _Exec(node, task_id, recv_ns, basis, recv_ns, server_basis_ms=ts_ms)
        space.exec_key = key
        self._boundary(space, recv_ns, ts_ms)

    def _end_exec(self, space: _Space, recv_ns: int, error_type: str | None = None) -> None:
        if space.exec_key is None:
            return
        ex = self._execs[space.exec_key]
        if ex.end_ns is None:
            ex.end_ns = recv_ns
            ex.error_type = error_type

    @staticmethod
    def _boundary(space: _Space, recv_ns: int, ts_ms: float | None) -> None:
        space.boundary_ns, space.boundary_ms = recv_ns, ts_ms

    def _exec_of(self, space: _Space, ns: tuple[str, ...], recv_ns: int) -> _Exec:
        if space.exec_key is None:  # a call before any boundary: count from the request
            self._start_exec(space, ns, recv_ns, None)
            ex = self._execs[space.exec_key]  # type: ignore[index]
            ex.start_ns, ex.basis, ex.basis_ns = None, "request", self.t_request_ns
            space.boundary_ns = self.t_request_ns
            return ex
        return self._execs[space.exec_key]

    def _message(
        self,
        space: _Space,
        ns: tuple[str, ...],
        ev: V2MessageEvent,
        recv_ns: int,
        chunk_seq: int,
    ) -> None:
        kind = ev.event
        if kind == "message-start":
            ex = self._exec_of(space, ns, recv_ns)
            call = _Call(ev.msg_id or "", space.boundary_ns, server_basis_ms=space.boundary_ms)
            ex.calls.append(call)
            space.open_calls.append(call)
            if len(space.open_calls) > 1 and space.group is None:
                space.group = _Call(
                    "interleaved:" + "+".join(c.msg_id for c in space.open_calls),
                    None,
                    ambiguous=True,
                )
                ex.calls.append(space.group)
                where = namespace_node(ns)[0] or ROOT_NODE
                self.notes.append(
                    f"{len(space.open_calls)} LLM calls streamed at once in {where}: v2 cannot"
                    " tell their tokens apart, so their ITL is not reported"
                )
            elif space.group is not None:
                space.group.msg_id += "+" + call.msg_id
            space.start = (call, recv_ns, ev.ts_ms)
            return
        if ev.is_token:
            self._token(space, ns, ev, recv_ns, chunk_seq)
        if kind == "message-finish":
            self._boundary(space, recv_ns, ev.ts_ms)
            if space.group is None:
                if space.open_calls:
                    done = space.open_calls.pop()
                    done.completed = True
                    done.model, done.provider = ev.model, ev.provider
                    done.output_tokens = ev.output_tokens
            else:
                space.group.model = space.group.model or ev.model
                space.group.provider = space.group.provider or ev.provider
                space.open_calls.pop()
                if not space.open_calls:  # every interleaved call has finished
                    space.group.completed = True
                    for c in self._execs[space.exec_key].calls:  # type: ignore[index]
                        c.completed = True
                    space.group = None

    def _token(
        self, space: _Space, ns: tuple[str, ...], ev: V2MessageEvent, recv_ns: int, seq: int
    ) -> None:
        if self._src_tokened:
            return  # a second envelope of a chunk already counted (docs/V2.md §3)
        self._src_tokened = True
        if space.start is not None:
            # The started call's first token: `message-start` is sent lazily, just before the
            # call's first chunk (docs/V2.md §3), so the next token of the namespace is that
            # call's, even while calls overlap. TTFT is taken at the `message-start`.
            call, stamp_ns, stamp_ts = space.start
            space.start = None
        else:
            stamp_ns, stamp_ts = self._src_ns, self._src_ts
            if space.group is not None:
                call = space.group
            elif space.open_calls:
                call = space.open_calls[-1]
            else:  # a token without a `message-start`: an anonymous call
                ex = self._exec_of(space, ns, recv_ns)
                call = _Call("", space.boundary_ns, server_basis_ms=space.boundary_ms)
                ex.calls.append(call)
                space.open_calls.append(call)
        if self._count_token(ev.text, seq):
            call.token_ns.append(stamp_ns)
            call.token_ts.append(stamp_ts if stamp_ts is not None else float("nan"))
        if self.t_first_token_ns is None or stamp_ns < self.t_first_token_ns:
            self.t_first_token_ns = stamp_ns

    def _lifecycle(self, space: _Space, ns: tuple[str, ...], ev: V2Lifecycle, recv_ns: int) -> None:
        if not ns:
            if ev.event == "running":
                return
            if ev.event in TERMINAL and self.root_status is None:
                self.root_status = ev.event
                self.root_error = ev.error
                self._end_exec(space, recv_ns, "failed" if ev.event == "failed" else None)
            return
        if ev.event in TERMINAL:
            self._end_exec(space, recv_ns, "failed" if ev.event == "failed" else None)

    # ---------------------------------------------------------------- reading

    def nodes(self) -> tuple[NodeExecution, ...]:
        """Node executions in the order they began; root supersteps without calls are left out
        (nothing names them, docs/V2.md §3)."""
        out = []
        on_our_clock = self._server_to_monotonic()
        for ex in self._execs.values():
            if ex.node == ROOT_NODE and not ex.calls:
                continue
            calls = tuple(
                replace(
                    c.timing(on_our_clock(c.server_basis_ms, c.basis_ns)),
                    server_ts_ms=tuple(c.token_ts),
                    server_basis_ms=c.server_basis_ms,
                    ambiguous=c.ambiguous,
                )
                for c in ex.calls
            )
            out.append(
                ex.execution(
                    calls, on_our_clock(ex.server_basis_ms, ex.basis_ns), ex.server_basis_ms
                )
            )
        return tuple(out)

    def _server_to_monotonic(self) -> Callable[[float | None, int | None], int | None]:
        """Server time -> our monotonic clock, at the run's smallest delivery lag.

        NOTE: a TTFT basis (a superstep's `values`, a subgraph's start) reaches us through the
        same batched delivery as the tokens (docs/V2.md §4), so its arrival can be up to a
        poll period late, and a TTFT counted from it up to that much short. Counted from when
        the basis would have arrived with no delay, TTFT keeps the token's own delivery delay
        (which the user feels) and loses the basis's. The clocks' offset cancels out.
        """
        lags = self._ev_lag_ms
        if not lags:
            return lambda ms, fallback: fallback
        low = min(lags)

        def convert(ms: float | None, fallback: int | None) -> int | None:
            return fallback if ms is None else round((ms + low) * 1e6)

        return convert

    def delivery(self) -> Delivery:
        """Server time beside client time for the whole run (docs/V2.md §4)."""
        lags = self._ev_lag_ms
        low = min(lags) if lags else 0.0
        jitter: list[float] = []
        server_gaps: list[float] = []
        for ex in self._execs.values():
            for c in ex.calls:
                t, s = c.token_ns, c.token_ts
                for i in range(1, len(t)):
                    gap_s = (s[i] - s[i - 1]) / 1000
                    if gap_s == gap_s:  # not NaN: both tokens had a server time
                        server_gaps.append(gap_s)
                        jitter.append((t[i] - t[i - 1]) / _NS - gap_s)
        return Delivery(
            event_lag_s=tuple((lag - low) / 1000 for lag in lags),
            jitter_s=tuple(jitter),
            server_gap_s=tuple(server_gaps),
            verdict=delivery_verdict(tuple(jitter), tuple(server_gaps)),
        )

    def unfinished(self) -> str | None:
        """What was still open when the stream stopped without a root terminal lifecycle."""
        for ex in self._execs.values():
            for c in ex.calls:
                if not c.completed:
                    return f"LLM call {c.msg_id or '?'} in {ex.node!r} never finished"
        return None

    def verdict(self, expect: Expectations, *, interrupt_expected: bool) -> Failure | None:
        """The outcome once the root lifecycle ended: success or one failure."""
        if self.root_status == "failed":
            return Failure(
                FailureKind.RUN_ERROR,
                f"lifecycle failed: {self.root_error or 'no message'}",
                error_type=None,
                phase="stream",
            )
        if self.root_status == "interrupted" and not interrupt_expected:
            return Failure(
                FailureKind.INCOMPLETE,
                "run interrupted (lifecycle `interrupted`); set expect.interrupt if it should",
                phase="stream",
            )
        if self.tokens == 0:
            return Failure(FailureKind.NO_TOKENS, "the run ended without a token", phase="stream")
        seen = {ex.node for ex in self._execs.values()}
        failure = self._expectation_failure(
            expect, seen, f"; v2 names only subgraph nodes, root calls are {ROOT_NODE!r}"
        )
        if failure is not None:
            return failure
        if interrupt_expected and self.root_status != "interrupted":
            return Failure(FailureKind.EXPECTATION, "expected the run to stop at an interrupt")
        return None
