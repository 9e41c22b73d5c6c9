"""The daemon's collector policy (exporter/runtime.py `SurvivorFreezer`)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from exporter.runtime import SurvivorFreezer


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_a_tick_freezes_what_is_alive() -> None:
    """Objects alive at a tick leave the collector's generations for the permanent one."""
    kept = [Node() for _ in range(1000)]
    before = gc.get_freeze_count()
    SurvivorFreezer(full_every_s=600, now_s=0).tick(now_s=1)
    assert gc.get_freeze_count() >= before + len(kept)


def test_a_frozen_cycle_waits_for_the_periodic_full_collection() -> None:
    """A cycle frozen by one tick survives collections until the full one is due."""
    freezer = SurvivorFreezer(full_every_s=600, now_s=0)
    a, b = Node(), Node()
    a.other, b.other = b, a
    alive = weakref.ref(a)
    freezer.tick(now_s=1)
    del a, b
    gc.collect()
    assert alive() is not None, "a frozen cycle was collected before the full collection"
    freezer.tick(now_s=599)
    assert alive() is not None and freezer.full_collections == 0
    freezer.tick(now_s=600)
    assert alive() is None, "the due full collection did not free the cycle"
    assert freezer.full_collections == 1
