"""The timing model: stamped LangGraph events in, per-node and per-call timings out. Pure: no I/O.

A `Timeline` is created before the request is sent and fed every event with the monotonic time
its bytes were read. It survives any failure: whatever it holds when the probe stops is the result.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from exporter.core.errors import FailureKind
from exporter.core.events import (
    End,
    LangGraphEvent,
    Message,
    Metadata,
    Other,
    RunError,
    TaskEnd,
    TaskStart,
)
from exporter.core.result import CallTiming, EventLog, Failure, NodeExecution
from exporter.core.words import counted

__all__ = ["CallState", "ExecState", "Expectations", "StreamTimeline", "Timeline"]

#: Caps that keep an endless or hostile stream from growing memory without bound.
MAX_EVENTS_LOGGED = 50_000
MAX_TOKENS_STAMPED = 200_000
MAX_TEXT_CHARS = 64 * 1024


@dataclass(frozen=True, slots=True)
class Expectations:
    """What a successful run must also show (config `expect:`)."""

    min_tokens: int = 1
    nodes: tuple[str, ...] = ()
    content_regex: str | None = None


class StreamTimeline:
    """What both timing models (legacy `Timeline`, `V2Timeline`) record the same way: the
    request's stamps, the event log, token counts and bursts, the answer text, and the checks
    of `Expectations`. Stamps are monotonic ns, taken when the bytes were read."""

    def __init__(self, t_request_ns: int) -> None:
        self.t_request_ns = t_request_ns
        self.t_headers_ns: int | None = None
        self.t_first_event_ns: int | None = None
        self.t_first_token_ns: int | None = None
        self.run_id: str | None = None
        self.tokens_dropped = 0
        self.max_tokens_per_read = 0
        self._tokens_stamped = 0
        self._burst_seq = -1
        self._burst = 0
        self._text: list[str] = []
        self._text_len = 0
        # NOTE: three lists of scalars, not a list of tuples: a tuple per event is one more
        # object for the cycle collector to track on every event, at every open stream.
        self._ev_ns: list[int] = []
        self._ev_name: list[str] = []
        self._ev_node: list[str | None] = []
        self._ev_dropped = 0

    def headers(self, recv_ns: int) -> None:
        self.t_headers_ns = recv_ns

    def _log_event(self, recv_ns: int, name: str, node: str | None) -> bool:
        """Log one event (only counted past MAX_EVENTS_LOGGED); False if it was not listed."""
        if self.t_first_event_ns is None:
            self.t_first_event_ns = recv_ns
        if len(self._ev_ns) < MAX_EVENTS_LOGGED:
            self._ev_ns.append(recv_ns)
            self._ev_name.append(name)
            self._ev_node.append(node)
            return True
        self._ev_dropped += 1
        return False

    def _count_token(self, text: str, read_seq: int) -> bool:
        """Count one token that arrived in socket read `read_seq` and keep its text. True if
        its stamp is to be kept, False past MAX_TOKENS_STAMPED (then only `tokens_dropped`)."""
        if read_seq == self._burst_seq:
            self._burst += 1
        else:
            self._burst_seq, self._burst = read_seq, 1
        if self._burst > self.max_tokens_per_read:
            self.max_tokens_per_read = self._burst
        self._add_text(text)
        if self._tokens_stamped < MAX_TOKENS_STAMPED:
            self._tokens_stamped += 1
            return True
        self.tokens_dropped += 1
        return False

    def _add_text(self, text: str) -> None:
        if text and self._text_len < MAX_TEXT_CHARS:
            # Keep only what fits: one huge token must not pin megabytes until the probe ends.
            part = text[: MAX_TEXT_CHARS - self._text_len]
            self._text.append(part)
            self._text_len += len(part)

    @property
    def text(self) -> str:
        return "".join(self._text)[:MAX_TEXT_CHARS]

    @property
    def tokens(self) -> int:
        return self._tokens_stamped + self.tokens_dropped

    def nodes(self) -> tuple[NodeExecution, ...]:
        """Node executions with their calls' timings (each timing model says in which order)."""
        raise NotImplementedError

    def event_log(self) -> EventLog:
        return EventLog(
            tuple(self._ev_ns), tuple(self._ev_name), tuple(self._ev_node), self._ev_dropped
        )

    def _expectation_failure(
        self, expect: Expectations, seen: set[str], nodes_note: str = ""
    ) -> Failure | None:
        """The first expectation a run that ended well did not meet: `seen` are the nodes
        that ran, `nodes_note` ends the message about missing ones."""
        if self.tokens < expect.min_tokens:
            return Failure(
                FailureKind.EXPECTATION,
                f"expected at least {counted(expect.min_tokens, 'token')}, got {self.tokens}",
            )
        missing = [n for n in expect.nodes if n not in seen]
        if missing:
            return Failure(
                FailureKind.EXPECTATION,
                f"expected nodes {missing} did not run (saw {sorted(seen)}{nodes_note})",
            )
        if expect.content_regex is not None and not re.search(expect.content_regex, self.text):
            return Failure(
                FailureKind.EXPECTATION, f"content does not match {expect.content_regex!r}"
            )
        return None


@dataclass(slots=True)
class CallState:
    """One model call while its stream is read, in either protocol: id, TTFT basis and token
    arrival stamps (ns, monotonic), what the server said of it."""

    msg_id: str
    basis_ns: int | None
    token_ns: list[int] = field(default_factory=list)
    model: str | None = None
    provider: str | None = None
    output_tokens: int | None = None  # summed over chunks (langchain-core adds usage)
    completed: bool = False

    def timing(self, basis_ns: int | None) -> CallTiming:
        """The call as read so far, its TTFT counted from `basis_ns` (monotonic ns); the
        protocol's own fields are added with `dataclasses.replace`."""
        return CallTiming(
            self.msg_id,
            self.model,
            self.provider,
            tuple(self.token_ns),
            basis_ns,
            self.output_tokens,
            self.completed,
        )


@dataclass(slots=True)
class ExecState:
    """One node execution while its stream is read, in either protocol: start and end arrival
    stamps (ns, monotonic), which boundary its TTFT counts from (`basis`, `basis_ns`)."""

    node: str
    task_id: str | None
    start_ns: int | None
    basis: str
    basis_ns: int | None
    end_ns: int | None = None
    error_type: str | None = None

    def execution(
        self,
        calls: tuple[CallTiming, ...],
        basis_ns: int | None,
        server_basis_ms: float | None = None,
    ) -> NodeExecution:
        """The execution as read so far, with its `calls`, its TTFT counted from `basis_ns`."""
        return NodeExecution(
            node=self.node,
            task_id=self.task_id,
            start_ns=self.start_ns,
            end_ns=self.end_ns,
            error_type=self.error_type,
            calls=calls,
            basis=self.basis,
            basis_ns=basis_ns,
            server_basis_ms=server_basis_ms,
        )


@dataclass(slots=True)
class _Call(CallState):
    reasoning: bytearray = field(default_factory=bytearray)  # 1 per reasoning-only token
    usage_reasoning_tokens: int | None = None


@dataclass(slots=True)
class _Exec(ExecState):
    calls: dict[str, _Call] = field(default_factory=dict)
    last_call_end_ns: int | None = None
    current: _Call | None = None  # the call that streamed last in this execution


class Timeline(StreamTimeline):
    """Accumulates one probe's measurements; `nodes()` and friends read them out."""

    def __init__(self, t_request_ns: int) -> None:
        super().__init__(t_request_ns)
        self.t_first_answer_ns: int | None = None
        self.server_thread_id: str | None = None  # from tuple metadata (docs/WIRE.md §8)
        self.end_markers_seen = False  # the server marks call ends (`chunk_position`)
        self.run_error: RunError | None = None
        self.ended = False  # an explicit `end` event was seen
        self._execs: dict[str, _Exec] = {}
        self._by_node_fallback: dict[str, str] = {}
        self._chunk_ids: set[str] = set()
        self._last_boundary_ns: int | None = None
        self._task_error: TaskEnd | None = None

    # ---------------------------------------------------------------- feeding

    def request_written(self, ns: int) -> None:
        """Move t_request to when the request was written to an open connection: connect and
        TLS are phases of their own, not part of time to headers or TTFT."""
        self.t_request_ns = ns

    def event(self, name: str, ev: LangGraphEvent, recv_ns: int, chunk_seq: int) -> None:
        """Record one decoded event that arrived at `recv_ns` in socket read `chunk_seq`."""
        self._log_event(recv_ns, name, ev.langgraph_node if isinstance(ev, Message) else None)
        if isinstance(ev, Message):
            self._message(ev, recv_ns, chunk_seq)
        elif isinstance(ev, TaskStart):
            ex = self._execs.get(ev.task_id)
            if ex is None:
                self._execs[ev.task_id] = _Exec(ev.node, ev.task_id, recv_ns, "tasks", recv_ns)
            elif ex.start_ns is None:
                ex.start_ns = recv_ns
        elif isinstance(ev, TaskEnd):
            ex = self._execs.get(ev.task_id)
            if ex is None:
                ex = self._execs[ev.task_id] = _Exec(
                    ev.node, ev.task_id, None, "previous_boundary", self._last_boundary_ns
                )
            ex.end_ns = recv_ns
            ex.error_type = ev.error_type
            if ev.error_type is not None:
                self._task_error = ev
            elif self._task_error is not None and self._task_error.node == ev.node:
                self._task_error = None  # retried and succeeded
            self._last_boundary_ns = recv_ns
        elif isinstance(ev, Metadata):
            if self.run_id is None:
                self.run_id = ev.run_id
            self._last_boundary_ns = recv_ns
        elif isinstance(ev, RunError):
            if self.run_error is None:
                self.run_error = ev
        elif isinstance(ev, End):
            self.ended = True
        else:  # Other: counted in the event log only
            assert isinstance(ev, Other)

    def _exec_for(self, msg: Message) -> _Exec:
        key = msg.task_id
        if key is None:
            # No task id in the metadata: one execution per node name (best effort).
            key = self._by_node_fallback.setdefault(msg.node, f"{msg.node}#")
        ex = self._execs.get(key)
        if ex is None:
            ex = self._execs[key] = _Exec(
                msg.node, msg.task_id, None, "previous_boundary", self._last_boundary_ns
            )
        return ex

    def _message(self, msg: Message, recv_ns: int, chunk_seq: int) -> None:
        if self.server_thread_id is None and msg.thread_id is not None:
            self.server_thread_id = msg.thread_id
        if not msg.is_chunk:
            # A whole message. If its id was streamed, it is the duplicate copy (docs/WIRE.md §5).
            if msg.msg_id not in self._chunk_ids:
                self._exec_for(msg)
                self._add_text(msg.text)
            return
        self._chunk_ids.add(msg.msg_id)
        ex = self._exec_for(msg)
        call = ex.calls.get(msg.msg_id)
        if call is None:
            if not (msg.is_token or msg.is_last or msg.output_tokens is not None):
                # Nothing to time yet: a role-only chunk, or the Responses API's first chunk,
                # whose id (`resp_…`) differs from the rest of the call (docs/WIRE.md §13).
                return
            call = self._new_call(ex, msg)
        if msg.is_token:
            if self._count_token(msg.text, chunk_seq):
                call.token_ns.append(recv_ns)
                call.reasoning.append(0 if msg.is_answer else 1)
            ex.current = call
            if self.t_first_token_ns is None:
                self.t_first_token_ns = recv_ns
            if msg.is_answer and self.t_first_answer_ns is None:
                self.t_first_answer_ns = recv_ns
        if msg.output_tokens is not None:
            call.output_tokens = (call.output_tokens or 0) + msg.output_tokens
        if msg.reasoning_tokens is not None:
            call.usage_reasoning_tokens = (call.usage_reasoning_tokens or 0) + msg.reasoning_tokens
        if msg.is_last:
            self.end_markers_seen = True
            call.completed = True
            ex.last_call_end_ns = recv_ns
            self._last_boundary_ns = recv_ns

    def _new_call(self, ex: _Exec, msg: Message) -> _Call:
        """A call's TTFT counts from the previous call's end in the same execution (its end
        marker, else its last token: the JS server sends no end markers), else the node's
        start."""
        basis = ex.last_call_end_ns
        prev = ex.current
        if prev is not None and prev.token_ns and not prev.completed:
            basis = max(basis or 0, prev.token_ns[-1])
        if basis is None:
            basis = ex.basis_ns
        call = ex.calls[msg.msg_id] = _Call(
            msg.msg_id, basis, model=msg.model, provider=msg.provider
        )
        return call

    # ---------------------------------------------------------------- reading

    def nodes(self) -> tuple[NodeExecution, ...]:
        """Node executions in the order they were first seen."""
        return tuple(
            ex.execution(
                tuple(
                    replace(
                        c.timing(c.basis_ns),
                        reasoning=bytes(c.reasoning),
                        usage_reasoning_tokens=c.usage_reasoning_tokens,
                    )
                    for c in ex.calls.values()
                ),
                ex.basis_ns,
            )
            for ex in self._execs.values()
        )

    def unfinished(self) -> str | None:
        """What is still open at EOF: a started task with no end, or a call with no last chunk.

        A cancelled run "just ends" (docs/WIRE.md §8), so a bare EOF is only a clean end when
        nothing is known to be open. A call is known to be open only on a server that marks call
        ends (`chunk_position`); servers without `tasks` or end markers (the JS server, older
        ones) end cleanly at EOF (docs/WIRE.md §12).
        """
        for ex in self._execs.values():
            if ex.start_ns is not None and ex.end_ns is None:
                return f"node {ex.node!r} started but never ended"
            if not self.end_markers_seen or ex.end_ns is not None:
                continue
            for c in ex.calls.values():
                if c.token_ns and not c.completed:
                    return f"LLM call {c.msg_id!r} in node {ex.node!r} never finished"
        return None

    def verdict(self, expect: Expectations) -> Failure | None:
        """The outcome of a stream that ended by EOF or `end`: success or one failure."""
        if self.run_error is not None:
            ev = self.run_error
            return Failure(
                FailureKind.RUN_ERROR,
                f"{ev.error_type}: {ev.message}",
                error_type=ev.error_type,
                phase="stream",
            )
        if self._task_error is not None and "/" not in self._task_error.node:
            # A root node failed and the stream ended without an `error` event: any terminal
            # signal that reports an error is a run error (docs/WIRE.md §6).
            te = self._task_error
            return Failure(
                FailureKind.RUN_ERROR,
                f"{te.error_type}: node {te.node!r} failed: {te.error_message}".rstrip(": "),
                error_type=te.error_type,
                phase="stream",
            )
        if not self.ended:
            open_part = self.unfinished()
            if open_part is not None:
                return Failure(
                    FailureKind.INCOMPLETE, f"stream ended early: {open_part}", phase="stream"
                )
        if self.tokens == 0:
            return Failure(FailureKind.NO_TOKENS, "the run ended without a token", phase="stream")
        return self._expectation_failure(expect, {ex.node for ex in self._execs.values()})
