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
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

__all__ = ["collector_paused", "freeze_startup_objects", "run_async", "share_gil_finely"]

T = TypeVar("T")

#: The GIL switch interval while the daemon serves: 1 ms instead of CPython's 5 ms.
SWITCH_INTERVAL_S = 0.001

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

    /metrics renders in a worker thread; a read that arrives meanwhile waits up to one switch
    interval before the loop can stamp it.
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
