"""The scheduler in-process, with a probe function the test controls: skip reasons, a stalled
loop, on-demand probes. No network: the probe function decides when a probe ends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from exporter.config import Config, Settings, Target, load_config
from exporter.core.errors import FailureKind
from exporter.core.result import ProbeResult
from exporter.daemon.lifecycle import Daemon
from exporter.daemon.scheduler import OnDemandBusy, Scheduler
from exporter.probe import TraceParent, failed_result
from exporter.sinks import SinkSet

pytestmark = pytest.mark.anyio


def target(name: str, interval_s: float) -> Target:
    return Target.model_validate(
        {"name": name, "url": "http://127.0.0.1:9", "assistant_id": "agent",
         "interval": interval_s, "timeout": {"idle": 6, "total": 10}}
    )  # fmt: skip


class Recorder:
    """A sink that keeps (target, trigger) of every result."""

    name = "recorder"

    def __init__(self) -> None:
        self.results: list[tuple[str, str]] = []

    def record(self, result: ProbeResult, trigger: str = "scheduled") -> None:
        self.results.append((result.target, trigger))

    def close(self) -> None:
        pass


class Probes:
    """The probe function: records each start; a target in `held` waits for its release."""

    def __init__(self) -> None:
        self.starts: list[tuple[str, float]] = []  # (target, monotonic s)
        self.held: dict[str, asyncio.Event] = {}

    async def __call__(
        self, t: Target, trace: TraceParent, say: Callable[[str], None] | None
    ) -> ProbeResult:
        self.starts.append((t.name, time.monotonic()))
        if t.name in self.held:
            await self.held[t.name].wait()
        now_ns = time.monotonic_ns()
        return failed_result(t, trace, now_ns, time.time_ns(), FailureKind.CONNECT, "test")


def make(
    probes: Probes, targets: list[Target], *, max_concurrency: int = 4
) -> tuple[Scheduler, list[tuple[str, str]], Recorder]:
    skips: list[tuple[str, str]] = []
    recorder = Recorder()
    scheduler = Scheduler(
        probes,
        SinkSet([recorder], on_error=lambda name, exc: None),
        max_concurrency=max_concurrency,
        on_skip=lambda name, reason: skips.append((name, reason)),
        on_targets=lambda config: None,
    )
    scheduler.apply(Config(targets=targets))
    return scheduler, skips, recorder


async def wait_until(check: Callable[[], Any], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout_s}s waiting for {what}"
        await asyncio.sleep(0.01)  # polling state owned by tasks on this loop


async def test_tick_waiting_for_the_concurrency_cap_is_skipped_as_concurrency() -> None:
    """With a cap of 1 held by `busy`, `queued`'s probe waits for the cap; its next ticks are
    `concurrency` skips, not `overlap` (while `busy` itself overlaps)."""
    probes = Probes()
    probes.held["busy"] = asyncio.Event()
    busy, queued = target("busy", 0.05), target("queued", 0.05)
    scheduler, skips, _ = make(probes, [busy, queued], max_concurrency=1)
    try:
        await wait_until(lambda: ("busy", "overlap") in skips, "busy to overlap")
        await wait_until(lambda: ("queued", "concurrency") in skips, "a concurrency skip")
        assert {r for n, r in skips if n == "queued"} == {"concurrency"}, skips
        busy_at = next(s for n, s in probes.starts if n == "busy")
        # `queued` may have run once before `busy` took the cap, never after
        assert not [s for n, s in probes.starts if n == "queued" and s > busy_at], probes.starts
    finally:
        probes.held["busy"].set()
        scheduler.stop_scheduling()
        await scheduler.drain(5)


@pytest.mark.timing
async def test_a_stalled_loop_resumes_from_now_without_a_burst() -> None:
    """The loop is blocked for 10 intervals (as by SIGSTOP); afterwards one probe starts at
    once and the next one an interval later, not one per missed tick."""
    interval_s = 0.1
    probes = Probes()
    scheduler, _, _ = make(probes, [target("t", interval_s)])
    try:
        await wait_until(lambda: len(probes.starts) >= 2, "two probes on schedule")
        time.sleep(10 * interval_s)  # noqa: ASYNC251 -- the stall under test: blocks the loop
        resumed = time.monotonic()
        await asyncio.sleep(interval_s / 2)
        after = [s for _, s in probes.starts if s >= resumed]
        assert len(after) == 1, (
            f"{len(after)} probes started within {interval_s / 2:.2f} s after a "
            f"{10 * interval_s:.1f} s stall (want 1: no catch-up burst)"
        )
        await wait_until(lambda: len([s for _, s in probes.starts if s >= resumed]) >= 2, "next")
        gap_s = [s for _, s in probes.starts if s >= resumed][1] - after[0]
        assert gap_s >= interval_s * 0.9, (
            f"second probe after the stall came {gap_s * 1000:.0f} ms after the first, "
            f"want about one interval ({interval_s * 1000:.0f} ms, jitter 5%)"
        )
    finally:
        scheduler.stop_scheduling()
        await scheduler.drain(5)


async def test_second_on_demand_probe_of_a_target_is_refused_while_one_runs() -> None:
    """One on-demand probe in flight per target: the second gets OnDemandBusy with a
    Retry-After of at least 1 s; another target is not affected; once done, it may run again."""
    probes = Probes()
    probes.held["a"] = asyncio.Event()
    scheduler, _, recorder = make(probes, [target("a", 3600), target("b", 3600)])
    try:
        first = asyncio.create_task(scheduler.run_now("a"))
        await wait_until(lambda: "a" in [n for n, _ in probes.starts], "the first probe")
        with pytest.raises(OnDemandBusy) as busy:
            await scheduler.run_now("a")
        assert busy.value.retry_after_s >= 1
        assert await scheduler.run_now("b") is not None
        probes.held["a"].set()
        assert await first is not None
        assert await scheduler.run_now("a") is not None
        assert [n for n, _ in probes.starts] == ["a", "b", "a"]
        assert all(t == "on_demand" for _, t in recorder.results), recorder.results
    finally:
        scheduler.stop_scheduling()
        await scheduler.drain(5)


async def test_on_demand_probe_keeps_its_place_after_the_caller_went_away() -> None:
    """A caller that gives up (HTTP client gone) does not free the target's on-demand slot
    while its probe still runs: the probe cannot be started again and again."""
    probes = Probes()
    probes.held["a"] = asyncio.Event()
    scheduler, _, _ = make(probes, [target("a", 3600)])
    try:
        caller = asyncio.create_task(scheduler.run_now("a"))
        await wait_until(lambda: probes.starts, "the probe")
        caller.cancel()
        with pytest.raises(OnDemandBusy):
            await scheduler.run_now("a")
    finally:
        probes.held["a"].set()
        scheduler.stop_scheduling()
        await scheduler.drain(5)


async def test_sighup_reload_task_is_held_by_the_daemon_until_it_ends(tmp_path: Path) -> None:
    """The loop keeps only weak references to tasks: the SIGHUP reload task is held by the
    daemon while it runs (so it cannot be garbage-collected mid-reload) and let go after."""
    path = tmp_path / "config.yaml"
    path.write_text("targets:\n  - {name: a, url: 'http://127.0.0.1:9', assistant_id: g}\n")
    daemon = Daemon(Settings(), str(path), load_config(str(path)))
    path.write_text("targets: [{intervall: 1}]\n")  # invalid: the reload keeps the old config
    task = daemon.on_sighup()
    assert task in daemon.background
    ok, message = await task
    assert not ok and "reload failed" in message
    assert task not in daemon.background
