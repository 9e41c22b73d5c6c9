"""Sinks turn finished `ProbeResult`s into something outside: metrics, spans, log lines.

Results flow one way: the scheduler hands each result to every sink, and a sink never calls back
into probing. A failing sink is logged and counted and never stops the scheduler (OTel's
`SimpleSpanProcessor` rule).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, Protocol, get_args

from exporter.core.result import ProbeResult

__all__ = ["SKIP_REASONS", "Sink", "SinkSet", "SkipReason", "Trigger"]

#: Why a probe ran: its schedule, or a `GET /probe` (kept out of the SLO series,
#: docs/RELIABILITY.md "On-demand probes").
Trigger = Literal["scheduled", "on_demand"]
#: Why a scheduled tick started no probe: the previous probe of the target still runs
#: (`overlap`), or it still waits for the global concurrency cap (`concurrency`).
SkipReason = Literal["overlap", "concurrency"]
SKIP_REASONS: tuple[SkipReason, ...] = get_args(SkipReason)


class Sink(Protocol):
    """One destination for results."""

    name: str

    def record(self, result: ProbeResult, trigger: Trigger = "scheduled") -> None:
        """Take one finished result; must not block the event loop for long."""

    def close(self) -> None:
        """Flush and release; called once at shutdown, off the event loop."""


class SinkSet:
    """Fans a result out to every sink; one sink's exception never reaches the caller."""

    def __init__(
        self,
        sinks: Sequence[Sink],
        *,
        on_error: Callable[[str, Exception], None],
    ) -> None:
        self.sinks = list(sinks)
        self._on_error = on_error

    @property
    def names(self) -> list[str]:
        return [sink.name for sink in self.sinks]

    def record(self, result: ProbeResult, trigger: Trigger = "scheduled") -> None:
        for sink in self.sinks:
            try:
                sink.record(result, trigger)
            except Exception as exc:  # a sink bug must not stop probing
                self._on_error(sink.name, exc)

    def close(self) -> None:
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:
                self._on_error(sink.name, exc)
