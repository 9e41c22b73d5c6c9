"""The `/-/events` fan-out on its own: bounded queues, drops counted, replay by Last-Event-ID."""

from __future__ import annotations

import time

import pytest

from exporter.core.result import ProbeResult
from exporter.daemon.events import EventBus

pytestmark = pytest.mark.anyio


def result(n: int) -> ProbeResult:
    return ProbeResult(
        target=f"t{n}", url="http://x", assistant_id="a", mode="stateless",
        t_request_ns=0, wall_request_ns=0, t_end_ns=1, failure=None,
    )  # fmt: skip


def bus(**kw: int) -> EventBus:
    return EventBus(lambda r, _trigger: r.target.encode(), **kw)


async def test_a_full_subscriber_loses_events_the_others_keep_them() -> None:
    """A subscriber that never reads fills its queue, then loses (and counts) the rest; a
    reading subscriber gets every event; `record` never waits."""
    b = bus(queue_size=4)
    stalled, reader = b.subscribe(None), b.subscribe(None)
    assert stalled is not None and reader is not None
    got: list[bytes] = []
    started = time.perf_counter()
    for n in range(100):
        b.record(result(n))
        got.append((await reader.queue.get())[1])
    elapsed_s = time.perf_counter() - started
    assert got == [f"t{n}".encode() for n in range(100)]
    assert stalled.queue.qsize() == 4 and stalled.dropped == 96 and b.dropped_total == 96
    assert elapsed_s < 0.5, f"100 records with a stalled subscriber took {elapsed_s:.3f} s"


async def test_subscriber_limit() -> None:
    """Beyond `max_subscribers` subscribe() refuses (the route answers 503) and counts it."""
    b = bus(max_subscribers=2)
    first = b.subscribe(None)
    assert first is not None and b.subscribe(None) is not None
    assert b.subscribe(None) is None and b.rejected_total == 1
    b.unsubscribe(first)
    assert b.subscribe(None) is not None


async def test_resume_after_last_event_id_and_missed_count() -> None:
    """Last-Event-ID of this boot replays what came after it; one older than the buffer says
    how many are gone; an id of another boot replays the whole buffer."""
    b = bus(buffer_size=3, queue_size=10)
    for n in range(1, 6):
        b.record(result(n))  # ids 1..5, buffer keeps 3..5
    sub = b.subscribe(b.event_id(4))
    assert sub is not None and [sub.queue.get_nowait()[0]] == [5] and sub.missed == 0
    old = b.subscribe(b.event_id(1))
    assert old is not None and old.missed == 1 and old.queue.qsize() == 3
    other = b.subscribe("0.1-4")
    assert other is not None and other.queue.qsize() == 3
