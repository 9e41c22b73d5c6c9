"""The waterfall of one probe as plain data: what a client saw of one streamed run on one time axis.

Pure (no I/O, no rendering): `layout(result)` turns a `ProbeResult` into a `Waterfall`, and the
renderers (`exporter.core.waterfall_text` for terminals, `exporter.core.waterfall_svg` for SVG)
only draw it. `Waterfall.to_dict()` / `from_dict()` carry it over JSON, so `watch` draws the
waterfall of a result that lives in a daemon (`GET /-/probes/<id>.json`).

Every time is in seconds from the probe's start (`t_start_ns`, before DNS and connect; the run
request when the connection phases were not measured), so the connection phases sit left of the
request and nothing is negative.

Rows are node executions in the order a reader expects: by start, with a subgraph's nodes
(`parent/child`, docs/WIRE.md §7) right under the execution of their parent that was running when
they started, indented one level per `/`. Each LLM call is a sub-row with one tick per token
arrival; a tick flagged `reasoning` carried only reasoning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from exporter.core.result import CallTiming, NodeExecution, ProbeResult
from exporter.core.stats import quantile

__all__ = ["NO_TOKEN", "CallRow", "FailureMark", "NodeRow", "Phase", "Waterfall", "layout"]

_NS = 1e9
#: What the renderers say instead of a buffered verdict when no token arrived to judge by.
NO_TOKEN = "no token arrived: no buffered verdict"

#: Phases drawn on the axis: (key, label, short mark for terminals). Labels are README terms.
PHASES: tuple[tuple[str, str, str], ...] = (
    ("dns", "DNS", "D"),
    ("connect", "connect", "C"),
    ("proxy_connect", "proxy CONNECT", "P"),
    ("tls", "TLS", "T"),
    ("request_written", "request written", "W"),
    ("headers", "headers", "H"),
    ("first_event", "first event", "E"),
    ("first_token", "first token", "F"),
    ("first_answer_token", "first answer token", "A"),
    ("end", "end", "X"),
)


@dataclass(frozen=True, slots=True)
class Phase:
    """A phase boundary on the axis: `key` ended `t_s` seconds after the probe's start."""

    key: str
    label: str
    mark: str
    t_s: float


@dataclass(frozen=True, slots=True)
class CallRow:
    """One LLM call: its basis (where its TTFT counts from) and the arrival of each token."""

    label: str  # model name, else the message id
    msg_id: str
    basis_s: float | None
    token_s: tuple[float, ...]
    reasoning: tuple[bool, ...]
    ttft_s: float | None
    answer_ttft_s: float | None
    tpot_s: float | None
    itl_p50_s: float | None
    itl_max_s: float | None
    completed: bool

    @property
    def tokens(self) -> int:
        return len(self.token_s)

    @property
    def start_s(self) -> float:
        return self.basis_s if self.basis_s is not None else self.token_s[0]

    @property
    def end_s(self) -> float:
        return self.token_s[-1]


@dataclass(frozen=True, slots=True)
class NodeRow:
    """One node execution. `name` is the full node path (`research/inner_agent`), `depth` the
    number of subgraph levels above it; `start_s`/`end_s` are None when not seen."""

    name: str
    depth: int
    label: str  # what the row shows: `name` less its parent's path when drawn under it
    task_id: str | None
    start_s: float | None
    end_s: float | None
    first_token_s: float | None
    first_answer_s: float | None
    ttft_s: float | None
    basis: str
    error_type: str | None
    tokens: int
    calls: tuple[CallRow, ...]

    @property
    def open(self) -> bool:
        """Started but never ended (the stream stopped inside it)."""
        return self.start_s is not None and self.end_s is None


@dataclass(frozen=True, slots=True)
class FailureMark:
    """Where the probe failed: at `t_s` (the end of the probe), in `phase`, on row `row` (index
    into `Waterfall.rows`; None when it failed before any node ran)."""

    kind: str
    phase: str | None
    message: str
    http_status: int | None
    error_type: str | None
    t_s: float
    row: int | None


@dataclass(frozen=True, slots=True)
class Waterfall:
    """Everything a renderer draws. Times in seconds from the probe's start."""

    target: str
    assistant_id: str
    outcome: str
    run_id: str | None
    trace_id: str | None
    request_s: float  # the run request was written (0 when no connection phase was measured)
    end_s: float
    ttft_s: float | None  # run TTFT, from the request (README "How it measures")
    answer_ttft_s: float | None
    tokens: int
    buffered: bool
    buffered_why: str
    phases: tuple[Phase, ...]
    rows: tuple[NodeRow, ...]
    failure: FailureMark | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def span_s(self) -> float:
        """The axis length: the end, or the last thing drawn if later."""
        last = [self.end_s, *(p.t_s for p in self.phases)]
        for row in self.rows:
            last += [t for t in (row.start_s, row.end_s) if t is not None]
            last += [c.end_s for c in row.calls]
        return max(max(last), 1e-6)

    @property
    def distinct_answer_ttft_s(self) -> float | None:
        """The answer TTFT (s) when it says more than the TTFT (reasoning came first), else
        None: what a headline shows beside the TTFT."""
        if self.answer_ttft_s is None or self.answer_ttft_s == self.ttft_s:
            return None
        return self.answer_ttft_s

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; `Waterfall.from_dict` reads it back."""
        return {
            "target": self.target,
            "assistant_id": self.assistant_id,
            "outcome": self.outcome,
            "run_id": self.run_id,
            "trace_id": self.trace_id,
            "request_s": self.request_s,
            "end_s": self.end_s,
            "ttft_s": self.ttft_s,
            "answer_ttft_s": self.answer_ttft_s,
            "tokens": self.tokens,
            "buffered": self.buffered,
            "buffered_why": self.buffered_why,
            "phases": [[p.key, p.t_s] for p in self.phases],
            "rows": [
                {
                    "name": r.name,
                    "depth": r.depth,
                    "label": r.label,
                    "task_id": r.task_id,
                    "start_s": r.start_s,
                    "end_s": r.end_s,
                    "first_token_s": r.first_token_s,
                    "first_answer_s": r.first_answer_s,
                    "ttft_s": r.ttft_s,
                    "basis": r.basis,
                    "error_type": r.error_type,
                    "tokens": r.tokens,
                    "calls": [
                        {
                            "label": c.label,
                            "msg_id": c.msg_id,
                            "basis_s": c.basis_s,
                            "token_s": list(c.token_s),
                            "reasoning": [int(x) for x in c.reasoning],
                            "ttft_s": c.ttft_s,
                            "answer_ttft_s": c.answer_ttft_s,
                            "tpot_s": c.tpot_s,
                            "itl_p50_s": c.itl_p50_s,
                            "itl_max_s": c.itl_max_s,
                            "completed": c.completed,
                        }
                        for c in r.calls
                    ],
                }
                for r in self.rows
            ],
            "failure": None
            if self.failure is None
            else {
                "kind": self.failure.kind,
                "phase": self.failure.phase,
                "message": self.failure.message,
                "http_status": self.failure.http_status,
                "error_type": self.failure.error_type,
                "t_s": self.failure.t_s,
                "row": self.failure.row,
            },
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Waterfall:
        """Inverse of `to_dict`; raises KeyError or TypeError on a dict of another shape."""
        labels = {key: (label, mark) for key, label, mark in PHASES}
        phases = tuple(
            Phase(key, labels.get(key, (key, "?"))[0], labels.get(key, (key, "?"))[1], float(t))
            for key, t in data["phases"]
        )
        rows = tuple(
            NodeRow(
                name=r["name"],
                depth=int(r["depth"]),
                label=r["label"],
                task_id=r["task_id"],
                start_s=r["start_s"],
                end_s=r["end_s"],
                first_token_s=r["first_token_s"],
                first_answer_s=r["first_answer_s"],
                ttft_s=r["ttft_s"],
                basis=r["basis"],
                error_type=r["error_type"],
                tokens=int(r["tokens"]),
                calls=tuple(
                    CallRow(
                        label=c["label"],
                        msg_id=c["msg_id"],
                        basis_s=c["basis_s"],
                        token_s=tuple(float(t) for t in c["token_s"]),
                        reasoning=tuple(bool(x) for x in c["reasoning"]),
                        ttft_s=c["ttft_s"],
                        answer_ttft_s=c["answer_ttft_s"],
                        tpot_s=c["tpot_s"],
                        itl_p50_s=c["itl_p50_s"],
                        itl_max_s=c["itl_max_s"],
                        completed=bool(c["completed"]),
                    )
                    for c in r["calls"]
                ),
            )
            for r in data["rows"]
        )
        f = data.get("failure")
        failure = None if f is None else FailureMark(**f)
        return cls(
            target=data["target"],
            assistant_id=data["assistant_id"],
            outcome=data["outcome"],
            run_id=data["run_id"],
            trace_id=data["trace_id"],
            request_s=float(data["request_s"]),
            end_s=float(data["end_s"]),
            ttft_s=data["ttft_s"],
            answer_ttft_s=data["answer_ttft_s"],
            tokens=int(data["tokens"]),
            buffered=bool(data["buffered"]),
            buffered_why=data["buffered_why"],
            phases=phases,
            rows=rows,
            failure=failure,
        )


def layout(result: ProbeResult) -> Waterfall:
    """The waterfall of one result. Never raises on a partial result: what was not seen is None."""
    origin = result.t_start_ns if result.t_start_ns is not None else result.t_request_ns

    def rel(ns: int | None) -> float | None:
        return _rel(ns, origin)

    stamps = (*result.phase_stamps(), ("end", result.t_end_ns))
    labels = {key: (label, mark) for key, label, mark in PHASES}
    phases = tuple(
        Phase(key, *labels[key], t)
        for key, ns in stamps
        if (t := rel(ns)) is not None
        # the answer mark only says something when reasoning came first
        and not (key == "first_answer_token" and ns == result.t_first_token_ns)
    )
    ordered = _tree_order(result.nodes)
    rows = tuple(_node_row(ex, depth, label, origin) for ex, depth, label in ordered)
    buffered, why = result.buffering()
    failure = None
    if result.failure is not None:
        f = result.failure
        failure = FailureMark(
            kind=f.kind.value,
            phase=f.phase,
            message=f.message,
            http_status=f.http_status,
            error_type=f.error_type,
            t_s=(result.t_end_ns - origin) / _NS,
            row=_failed_row(rows),
        )
    return Waterfall(
        target=result.target,
        assistant_id=result.assistant_id,
        outcome=result.outcome,
        run_id=result.run_id,
        trace_id=result.trace_id,
        request_s=(result.t_request_ns - origin) / _NS,
        end_s=(result.t_end_ns - origin) / _NS,
        ttft_s=result.ttft_s,
        answer_ttft_s=result.answer_ttft_s,
        tokens=result.tokens,
        buffered=buffered,
        buffered_why=why,
        phases=phases,
        rows=rows,
        failure=failure,
    )


def _failed_row(rows: tuple[NodeRow, ...]) -> int | None:
    """The row the failure belongs to: a node that reported an error, else the last one left
    open (the stream stopped inside it), else none (it failed before or between nodes)."""
    for i in range(len(rows) - 1, -1, -1):
        if rows[i].error_type:
            return i
    for i in range(len(rows) - 1, -1, -1):
        if rows[i].open:
            return i
    return None


def _rel(ns: int | None, origin: int) -> float | None:
    return None if ns is None else (ns - origin) / _NS


def _call_row(call: CallTiming, origin: int) -> CallRow:
    gaps = call.itl_s
    flags = call.reasoning or bytes(len(call.token_ns))
    return CallRow(
        label=call.model or call.msg_id,
        msg_id=call.msg_id,
        basis_s=_rel(call.basis_ns, origin),
        token_s=tuple((t - origin) / _NS for t in call.token_ns),
        reasoning=tuple(bool(x) for x in flags[: len(call.token_ns)]),
        ttft_s=call.ttft_s,
        answer_ttft_s=call.answer_ttft_s,
        tpot_s=call.tpot_s,
        itl_p50_s=quantile(gaps, 0.5),
        itl_max_s=max(gaps) if gaps else None,
        completed=call.completed,
    )


def _node_row(ex: NodeExecution, depth: int, label: str, origin: int) -> NodeRow:
    def rel(ns: int | None) -> float | None:
        return _rel(ns, origin)

    return NodeRow(
        name=ex.node,
        depth=depth,
        label=label,
        task_id=ex.task_id,
        start_s=rel(ex.start_ns),
        end_s=rel(ex.end_ns),
        first_token_s=rel(ex.first_token_ns),
        first_answer_s=rel(ex.first_answer_ns),
        ttft_s=ex.ttft_s,
        basis=ex.basis,
        error_type=ex.error_type,
        tokens=ex.tokens,
        calls=tuple(_call_row(c, origin) for c in ex.calls if c.token_ns),
    )


def _first_ns(ex: NodeExecution) -> int:
    for ns in (ex.start_ns, ex.basis_ns, ex.first_token_ns, ex.end_ns):
        if ns is not None:
            return ns
    return 0


def _tree_order(nodes: tuple[NodeExecution, ...]) -> list[tuple[NodeExecution, int, str]]:
    """(execution, depth, label) by start, each subgraph node right after the parent execution
    that was running when it started (the latest one started before it, when none was running).
    A name whose parent never ran stays at depth 0 with its full name."""
    by_start = sorted(range(len(nodes)), key=lambda i: (_first_ns(nodes[i]), i))
    children: dict[int | None, list[int]] = {}
    for i in by_start:
        ex = nodes[i]
        parent: int | None = None
        if "/" in ex.node:
            parent_name = ex.node.rsplit("/", 1)[0]
            t = _first_ns(ex)
            candidates = [
                j
                for j in by_start
                if j != i and nodes[j].node == parent_name and _first_ns(nodes[j]) <= t
            ]
            running = [j for j in candidates if (nodes[j].end_ns or t) >= t]
            pick = running or candidates
            parent = pick[-1] if pick else None
        children.setdefault(parent, []).append(i)
    out: list[tuple[NodeExecution, int, str]] = []

    def visit(key: int | None, depth: int) -> None:
        for i in children.get(key, []):
            name = nodes[i].node
            label = name if key is None else name.removeprefix(nodes[key].node + "/")
            out.append((nodes[i], depth, label))
            visit(i, depth + 1)

    visit(None, 0)
    return out
