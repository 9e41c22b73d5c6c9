"""One structured log line per probe, and the bounded history behind `/-/probes`.

Successful probes log at info (the daemon's heartbeat for operators), failures at warning,
`internal` failures at error. Secrets never reach a log line: results hold no headers, and every
line passes through the daemon's masking processor as well.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import structlog

from exporter.core.errors import FailureKind
from exporter.core.result import ProbeResult
from exporter.core.stats import quantile
from exporter.sinks import Trigger

__all__ = ["History", "LogSink", "entry", "summary"]


def summary(result: ProbeResult, trigger: Trigger = "scheduled") -> dict[str, Any]:
    """The compact per-probe fields used by the log line and `/-/probes`.

    `nodes` is a list with one entry per node execution that streamed tokens, in the order they
    ran: a node that ran twice (agent -> tools -> agent) has two entries, never one merged or
    overwritten entry. Each entry: `{"node", "ttft_s", "itl_p50_s", "tokens"}`, seconds.
    """
    gaps = [g for n in result.nodes for g in n.itl_s()]
    rel = result.since_request_s
    out: dict[str, Any] = {
        "target": result.target,
        "trigger": trigger,
        "outcome": result.outcome,
        "reason": None if result.failure is None else result.failure.kind.value,
        "run_id": result.run_id,
        "trace_id": result.trace_id,
        "finished_at": round(result.wall_ns(result.t_end_ns) / 1e9, 3),
        "duration_s": round(result.duration_s, 4),
        "first_event_s": _r(rel(result.t_first_event_ns)),
        "ttft_s": _r(result.ttft_s),
        "answer_ttft_s": _r(result.answer_ttft_s),
        "itl_p50_s": _r(quantile(gaps, 0.5)),
        "tokens": result.tokens,
        "buffered": result.buffered,
        "nodes": [
            {
                "node": n.node,
                "ttft_s": _r(n.ttft_s),
                "itl_p50_s": _r(quantile(n.itl_s(), 0.5)),
                "tokens": n.tokens,
            }
            for n in result.nodes
            if n.tokens
        ],
    }
    if result.failure is not None:
        out["error"] = result.failure.message[:300]
        if result.failure.http_status is not None:
            out["http_status"] = result.failure.http_status
    return out


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


class LogSink:
    """Writes the per-probe line."""

    name = "log"

    def __init__(self) -> None:
        self._log = structlog.get_logger("exporter.probe")

    def record(self, result: ProbeResult, trigger: Trigger = "scheduled") -> None:
        fields = summary(result, trigger)
        fields.pop("target")
        if result.failure is None:
            self._log.info("probe_finished", target=result.target, **fields)
        elif result.failure.kind is FailureKind.INTERNAL:
            self._log.error("probe_failed", target=result.target, **fields)
        else:
            self._log.warning("probe_failed", target=result.target, **fields)

    def close(self) -> None:
        """Nothing buffered."""


class History:
    """The last N results, with failures kept in a longer queue of their own (blackbox)."""

    name = "history"

    def __init__(self, size: int = 100) -> None:
        self.recent: deque[tuple[ProbeResult, Trigger]] = deque(maxlen=size)
        self.failures: deque[tuple[ProbeResult, Trigger]] = deque(maxlen=size)

    def record(self, result: ProbeResult, trigger: Trigger = "scheduled") -> None:
        self.recent.append((result, trigger))
        if result.failure is not None:
            self.failures.append((result, trigger))

    def close(self) -> None:
        """Nothing to flush."""

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """Newest first. Each entry is `summary()` plus `id` (the trace id, the key of
        `find()` and `/-/probes/<id>`) and `log` (the probe's own lines, as `/probe?debug`)."""
        return {
            "recent": [_entry(r, t) for r, t in reversed(self.recent)],
            "failures": [_entry(r, t) for r, t in reversed(self.failures)],
        }

    def latest(self, target: str) -> ProbeResult | None:
        """The most recent kept result of `target` (`/-/probes/latest.svg?target=`)."""
        for result, _ in reversed(self.recent):
            if result.target == target:
                return result
        return None

    def find(self, probe_id: str) -> ProbeResult | None:
        """The kept result whose trace id is `probe_id`; None when unknown or already dropped."""
        for result, _ in (*self.recent, *self.failures):
            if result.trace_id == probe_id:
                return result
        return None


def entry(result: ProbeResult, trigger: Trigger = "scheduled") -> dict[str, Any]:
    """One `/-/probes` entry; also the data of a `/-/events` event."""
    return _entry(result, trigger)


def _entry(result: ProbeResult, trigger: Trigger) -> dict[str, Any]:
    return {**summary(result, trigger), "id": result.trace_id, "log": list(result.log)}
