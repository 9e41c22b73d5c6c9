"""Runs every configured target on its own schedule; hands each result to the sinks.

- Each target has one loop: first probe at a random point of its first interval (so targets do
  not all start together), then every `interval`, with a little jitter.
- Never two probes of one target at once: a tick that finds the previous probe still running is
  skipped and counted (`probes_skipped_total{reason="overlap"}`); a tick whose previous probe still
  waits for the global cap is counted as `reason="concurrency"` instead.
- A global semaphore caps probes in flight across all targets.
- A loop that stalled past whole ticks (SIGSTOP, CPU throttling) resumes from now: the missed
  ticks are not fired in a burst, they are logged once (`schedule_resumed`).
- On-demand probes (`GET /probe`): at most one in flight per target; another request meanwhile
  gets `OnDemandBusy` (the web layer answers 429 with `Retry-After`).
- The deadline is imposed from outside as well (blackbox's `context.WithTimeout`): the probe has
  its own phase deadlines, and this one is a safety net above them.
- Every probe is its own task: a target that hangs or fails never delays another.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import structlog

from exporter.config import Config, Target
from exporter.core.errors import FailureKind
from exporter.core.result import ProbeResult
from exporter.probe import CLEANUP_TIMEOUT_S, TraceParent, failed_result
from exporter.sinks import SinkSet, SkipReason, Trigger

__all__ = ["OnDemandBusy", "ProbeFn", "Scheduler"]

ProbeFn = Callable[[Target, TraceParent, Callable[[str], None] | None], Awaitable[ProbeResult]]

#: Slack above a target's total deadline before the scheduler cancels the probe itself.
OUTER_MARGIN_S = 5.0
log = structlog.get_logger("exporter.daemon.scheduler")


class OnDemandBusy(Exception):
    """An on-demand probe of this target is already in flight.

    `retry_after_s`: whole seconds (>= 1) until that probe must have ended (its total deadline
    plus the scheduler's margin), for a `Retry-After` header.
    """

    def __init__(self, target: str, retry_after_s: int) -> None:
        self.target = target
        self.retry_after_s = retry_after_s
        super().__init__(f"an on-demand probe of {target!r} is already running")


@dataclass
class _Slot:
    target: Target
    loop: asyncio.Task[None] | None = None
    running: asyncio.Task[ProbeResult] | None = None
    #: The scheduled probe in `running` has not got the global concurrency cap yet.
    queued: bool = False
    on_demand: asyncio.Task[ProbeResult] | None = None
    on_demand_started_s: float = 0.0  # monotonic
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    starts: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=50))


class Scheduler:
    """Owns one loop task per target and every probe task."""

    def __init__(
        self,
        probe_fn: ProbeFn,
        sinks: SinkSet,
        *,
        max_concurrency: int,
        on_skip: Callable[[str, SkipReason], None],
        on_targets: Callable[[Config], None],
        jitter_ratio: float = 0.05,
    ) -> None:
        self._probe_fn = probe_fn
        self._sinks = sinks
        self._sem = asyncio.Semaphore(max_concurrency)
        self._on_skip = on_skip
        self._on_targets = on_targets
        self._jitter_ratio = jitter_ratio
        self._slots: dict[str, _Slot] = {}
        self._tasks: set[asyncio.Task[ProbeResult]] = set()
        self._accepting = True
        self._rand = random.Random()

    # ------------------------------------------------------------ configuration

    def apply(self, config: Config) -> None:
        """Reconcile loops with a (new) config: start, restart, or stop per target."""
        self._on_targets(config)
        wanted = {t.name: t for t in config.targets}
        for name in list(self._slots):
            if name not in wanted:
                slot = self._slots.pop(name)
                if slot.loop is not None:
                    slot.loop.cancel()
                log.info("target_removed", target=name)
        for name, target in wanted.items():
            existing = self._slots.get(name)
            if existing is None:
                slot = self._slots[name] = _Slot(target)
                log.info("target_added", target=name, interval_s=target.interval)
            elif existing.target == target:
                continue
            else:
                slot = existing
                changed_interval = slot.target.interval != target.interval
                slot.target = target
                if not changed_interval and slot.loop is not None:
                    continue  # the next tick uses the new target
                if slot.loop is not None:
                    slot.loop.cancel()
            if self._accepting:
                slot.loop = asyncio.create_task(self._loop(slot), name=f"schedule:{name}")

    def schedule_log(self) -> dict[str, list[tuple[float, float]]]:
        """Per target, (planned, actual) wall-clock start times of recent scheduled probes."""
        return {name: list(slot.starts) for name, slot in self._slots.items()}

    # ------------------------------------------------------------ running

    async def _loop(self, slot: _Slot) -> None:
        interval = slot.target.interval
        planned = time.monotonic() + self._rand.uniform(0, interval)
        while True:
            await asyncio.sleep(max(0.0, planned - time.monotonic()))
            name = slot.target.name
            if slot.running is not None and not slot.running.done():
                reason: SkipReason = "concurrency" if slot.queued else "overlap"
                self._on_skip(name, reason)
                log.warning("probe_skipped", target=name, reason=reason)
            else:
                wall_planned = time.time() - (time.monotonic() - planned)
                slot.running = self._spawn(slot, wall_planned)
            jitter = min(self._jitter_ratio * interval, 1.0)
            planned += interval + self._rand.uniform(-jitter, jitter)
            now = time.monotonic()
            if planned < now:
                # The loop did not run for more than an interval (SIGSTOP, CPU throttling): the
                # ticks it missed are gone. Firing them now would be a burst of probes measuring
                # the stall itself, so resume from now.
                missed = int((now - planned) // interval) + 1
                log.warning("schedule_resumed", target=name, missed_ticks=missed)
                planned = now + interval + self._rand.uniform(-jitter, jitter)

    def _spawn(self, slot: _Slot, wall_planned: float | None) -> asyncio.Task[ProbeResult]:
        task = asyncio.create_task(
            self._probe_once(slot, wall_planned, None, "scheduled"),
            name=f"probe:{slot.target.name}",
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def run_now(
        self, name: str, lines: list[str] | None = None, *, sinks: SinkSet | None = None
    ) -> ProbeResult | None:
        """Probe a configured target now (for `/probe`); None if no such target.

        The result goes to `sinks` when given instead of the scheduler's own (the blackbox-style
        `/probe` keeps its probes out of the SLO series). Raises `OnDemandBusy` while an
        on-demand probe of that target is in flight (at most one per target, so `/probe` cannot
        queue paid runs without bound). The probe goes on if the caller goes away, and still
        holds the target's place until it ends.
        """
        slot = self._slots.get(name)
        if slot is None:
            return None
        if slot.on_demand is not None and not slot.on_demand.done():
            limit_s = slot.target.timeout.total + CLEANUP_TIMEOUT_S + OUTER_MARGIN_S
            left_s = limit_s - (time.monotonic() - slot.on_demand_started_s)
            raise OnDemandBusy(name, max(1, math.ceil(left_s)))
        task = asyncio.create_task(
            self._probe_once(
                slot, None, lines.append if lines is not None else None, "on_demand", sinks
            ),
            name=f"probe-now:{name}",
        )
        slot.on_demand, slot.on_demand_started_s = task, time.monotonic()
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return await asyncio.shield(task)

    async def _probe_once(
        self,
        slot: _Slot,
        wall_planned: float | None,
        say: Callable[[str], None] | None,
        trigger: Trigger,
        sinks: SinkSet | None = None,
    ) -> ProbeResult:
        target = slot.target
        async with slot.lock:
            # Only the wait for the global cap counts as `concurrency`; a wait for the lock (an
            # on-demand probe of this target runs) is an overlap like any other.
            slot.queued = trigger == "scheduled"
            try:
                await self._sem.acquire()
            finally:
                slot.queued = False
            try:
                result = await self._run_limited(target, wall_planned, say, slot)
            finally:
                self._sem.release()
        if self._slots.get(target.name) is slot:  # still configured
            (self._sinks if sinks is None else sinks).record(result, trigger)
        return result

    async def _run_limited(
        self,
        target: Target,
        wall_planned: float | None,
        say: Callable[[str], None] | None,
        slot: _Slot,
    ) -> ProbeResult:
        """One probe under the scheduler's outer deadline; never raises but for cancellation."""
        if wall_planned is not None:
            slot.starts.append((wall_planned, time.time()))
        trace = TraceParent.new()
        limit_s = target.timeout.total + CLEANUP_TIMEOUT_S + OUTER_MARGIN_S
        t0_ns, wall0_ns = time.monotonic_ns(), time.time_ns()
        try:
            async with asyncio.timeout(limit_s):
                return await self._probe_fn(target, trace, say)
        except TimeoutError:
            return failed_result(
                target, trace, t0_ns, wall0_ns, FailureKind.DEADLINE,
                f"probe exceeded the scheduler's limit of {limit_s:g}s",
            )  # fmt: skip
        except Exception as exc:  # a bug of ours; never stops the schedule
            log.exception("probe_crashed", target=target.name)
            return failed_result(
                target, trace, t0_ns, wall0_ns, FailureKind.INTERNAL,
                f"internal error: {type(exc).__name__}: {exc}",
            )  # fmt: skip

    # ------------------------------------------------------------ shutdown

    def stop_scheduling(self) -> None:
        """Stop every loop; probes already running carry on."""
        self._accepting = False
        for slot in self._slots.values():
            if slot.loop is not None:
                slot.loop.cancel()

    @property
    def in_flight(self) -> int:
        # list() copies the set in one step: /metrics reads this from a rendering thread.
        return sum(1 for t in list(self._tasks) if not t.done())

    async def drain(self, grace_s: float) -> bool:
        """Wait up to `grace_s` for running probes; cancel the rest. True if none was cancelled."""
        pending = {t for t in self._tasks if not t.done()}
        if not pending:
            return True
        log.info("waiting_for_probes", count=len(pending), grace_s=grace_s)
        _, still = await asyncio.wait(pending, timeout=grace_s)
        for task in still:
            task.cancel()
        if still:
            log.warning("probes_cancelled", count=len(still))
            await asyncio.wait(still, timeout=CLEANUP_TIMEOUT_S)
        return not still

    def cancel_all(self) -> None:
        for task in self._tasks:
            task.cancel()
