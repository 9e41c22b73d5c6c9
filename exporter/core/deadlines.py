"""The phase deadlines of one run, and which one is nearest at a given moment. Pure: no I/O.

A probe has one timer; the deadline it expires at moves as the stream progresses
(docs/WIRE.md §10). This module only computes; `exporter.probe.run` arms the timer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from exporter.core.errors import FailureKind, ProbeFailure

__all__ = ["Deadlines", "PhaseTimeouts"]

_NS = 1_000_000_000


class PhaseTimeouts(Protocol):
    """The per-phase limits in seconds (config `timeout:`); only read here."""

    @property
    def headers(self) -> float: ...
    @property
    def first_event(self) -> float: ...
    @property
    def first_token(self) -> float: ...
    @property
    def idle(self) -> float: ...
    @property
    def total(self) -> float: ...


@dataclass(frozen=True, slots=True)
class Deadlines:
    """Absolute monotonic deadlines (`_ns`) of one run, counted from `t_request_ns`.

    The idle (stall) deadline only applies once the server has shown that it sends heartbeats:
    the LangGraph.js server sends none, so its stream may be silent through a long tool call
    (docs/WIRE.md §2); there the first-token and total deadlines are the bounds.
    """

    timeouts: PhaseTimeouts
    headers_s: float
    first_event_ns: int
    first_token_ns: int
    total_ns: int
    idle_ns: int

    @classmethod
    def start(cls, timeouts: PhaseTimeouts, t_request_ns: int) -> Deadlines:
        t = timeouts
        return cls(
            timeouts=t,
            # The total deadline caps the headers one too (a config may set total < headers).
            headers_s=min(t.headers, t.total),
            first_event_ns=t_request_ns + int(t.first_event * _NS),
            first_token_ns=t_request_ns + int(t.first_token * _NS),
            total_ns=t_request_ns + int(t.total * _NS),
            idle_ns=int(t.idle * _NS),
        )

    def nearest(
        self,
        *,
        last_byte_ns: int,
        first_event_seen: bool,
        first_token_seen: bool,
        heartbeats_seen: bool,
    ) -> tuple[int, str]:
        """(deadline in monotonic ns, its phase name) of the deadline that expires first."""
        options = [(self.total_ns, "total")]
        if heartbeats_seen:
            options.append((last_byte_ns + self.idle_ns, "idle"))
        if not first_event_seen:
            options.append((self.first_event_ns, "first_event"))
        if not first_token_seen:
            options.append((self.first_token_ns, "first_token"))
        return min(options)

    def failure(self, which: str) -> ProbeFailure:
        """The failure for deadline `which` ("idle", "first_event", "first_token", "total")."""
        if which == "idle":
            return ProbeFailure(
                f"stalled: no bytes for {self.timeouts.idle:g}s",
                kind=FailureKind.STALLED,
                phase="stream",
            )
        limit = getattr(self.timeouts, which)
        return ProbeFailure(
            f"deadline: no {which.replace('_', ' ')} within {limit:g}s"
            if which != "total"
            else f"deadline: run not finished within {limit:g}s",
            kind=FailureKind.DEADLINE,
            phase=which,
        )
