"""Process-wide runtime policy, in one place: the event loop, the garbage collector, the GIL.

Every setting here exists so that a socket read is stamped when it arrives rather than when
the interpreter gets round to it (docs/adr/0003-stamp-at-data-received.md); the measurements
behind each are in docs/PERFORMANCE.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
import threading
import time
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

__all__ = [
    "SurvivorFreezer",
    "collector_paused",
    "freeze_startup_objects",
    "freeze_survivors",
    "run_async",
    "share_gil_finely",
]

T = TypeVar("T")

#: The GIL switch interval while the daemon serves: 1 ms instead of CPython's 5 ms.
SWITCH_INTERVAL_S = 0.001

#: How often the daemon moves what is alive into the collector's permanent generation.
FREEZE_EVERY_S = 1.0
#: How often it unfreezes everything and runs one full collection instead (a safety net).
FULL_COLLECTION_EVERY_S = 600.0

_pause_lock = threading.Lock()
_pauses = 0


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop where available: the default loop stamps late under load."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def freeze_startup_objects(*, collect_first: bool = False) -> None:
    """Move everything allocated so far out of the collector's reach.

    Start-up objects (imports, config) live as long as the process; frozen, they are no
    longer scanned by full collections, which would otherwise block the loop for milliseconds
    and stamp the reads arriving meanwhile late. `collect_first` frees set-up garbage first so
    that it is not frozen with them (the load mode measures memory).
    """
    if collect_first:
        gc.collect()
    gc.freeze()


def share_gil_finely() -> None:
    """Give the GIL back to the event loop every 1 ms instead of 5 ms.

    Threads still run Python beside the loop (the OTLP exporters' batch and reader threads,
    `asyncio.to_thread` work); a read that arrives while one holds the GIL waits up to one
    switch interval before the loop can stamp it. `/metrics` renders on the loop itself, in
    small steps, for that reason (docs/PERFORMANCE.md "Daemon scale").
    """
    sys.setswitchinterval(SWITCH_INTERVAL_S)


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cycle collector for the duration of the block; nestable and thread-safe.

    A large exposition allocates ~10^5 short-lived objects; a full collection triggered by them
    would run in the rendering thread holding the GIL for tens of ms, and the loop could not
    stamp reads meanwhile. Everything rendered is freed by reference counting anyway. Counted:
    two concurrent renders must not re-enable the collector while the other still runs.
    """
    global _pauses
    with _pause_lock:
        _pauses += 1
        if _pauses == 1:
            gc.disable()
    try:
        yield
    finally:
        with _pause_lock:
            _pauses -= 1
            if _pauses == 0:
                gc.enable()


class SurvivorFreezer:
    """The daemon's collector policy: keep full collections small by freezing survivors.

    A full (generation 2) pass of CPython's cycle collector scans every tracked object: at
    1000 targets (per-target histograms, kept results) it held the GIL for 100-260 ms, several
    times a minute, and every read arriving meanwhile was stamped that late
    (docs/PERFORMANCE.md, "Daemon scale"). `tick()` freezes what is alive now (O(1): the
    generations' lists are spliced into the permanent one), so automatic passes only scan what
    was allocated since. Frozen objects are still freed by reference counting; only cycles
    among them wait, which is why a probe makes none (tests/test_probe_garbage.py) and why,
    every `full_every_s`, `tick()` unfreezes and runs one full collection: one pause of that
    size every ten minutes instead of several a minute.
    """

    def __init__(
        self, full_every_s: float = FULL_COLLECTION_EVERY_S, now_s: float | None = None
    ) -> None:
        self.full_every_s = full_every_s
        self._last_full_s = time.monotonic() if now_s is None else now_s
        self.full_collections = 0

    def tick(self, now_s: float | None = None) -> None:
        """Freeze what is alive; first unfreeze and collect everything if one is due."""
        now_s = time.monotonic() if now_s is None else now_s
        if now_s - self._last_full_s >= self.full_every_s:
            self._last_full_s = now_s
            self.full_collections += 1
            gc.unfreeze()
            gc.collect()
        gc.freeze()


async def freeze_survivors(
    every_s: float = FREEZE_EVERY_S, freezer: SurvivorFreezer | None = None
) -> None:
    """Run `SurvivorFreezer.tick` every `every_s` seconds until cancelled."""
    freezer = freezer or SurvivorFreezer()
    while True:
        await asyncio.sleep(every_s)
        freezer.tick()
