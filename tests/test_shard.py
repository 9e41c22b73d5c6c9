"""Sharding targets over replicas: rendezvous hashing of target names (pure functions)."""

from __future__ import annotations

import pytest

from exporter.core.shard import ordinal_from_hostname, shard_members, shard_of

NAMES = [f"agent-{i:03d}" for i in range(300)]


@pytest.mark.parametrize("shards", range(1, 9))
def test_every_target_is_in_exactly_one_shard(shards: int) -> None:
    """For 1..8 shards the members of all shards partition the targets: none twice, none lost."""
    members = [shard_members(NAMES, k, shards) for k in range(shards)]
    flat = [n for m in members for n in m]
    assert sorted(flat) == sorted(NAMES)
    assert len(flat) == len(set(flat))


@pytest.mark.parametrize("shards", range(2, 8))
def test_adding_a_shard_moves_about_one_in_n_plus_one(shards: int) -> None:
    """Going from N to N+1 shards moves only targets to the new shard, about 1/(N+1) of them."""
    moved = [n for n in NAMES if shard_of(n, shards) != shard_of(n, shards + 1)]
    assert all(shard_of(n, shards + 1) == shards for n in moved)
    share = len(moved) / len(NAMES)
    assert share <= 1.5 / (shards + 1), f"{share:.0%} of targets moved going to {shards + 1}"


def test_three_to_four_shards_moves_at_most_40_percent() -> None:
    moved = sum(1 for n in NAMES if shard_of(n, 3) != shard_of(n, 4))
    assert moved / len(NAMES) <= 0.40


def test_shards_are_roughly_balanced() -> None:
    sizes = [len(shard_members(NAMES, k, 4)) for k in range(4)]
    assert min(sizes) >= 50, f"shard sizes {sizes} for 300 targets over 4 shards"


def test_assignment_is_stable_across_processes() -> None:
    """Keyed BLAKE2b, not Python's salted hash(): the same shards in every process and release
    (pinned values; changing them reshuffles every deployment's targets on upgrade)."""
    names = ("a", "b", "checkout-agent", "support-bot", "x1", "x2")
    assert [shard_of(n, 5) for n in names] == [4, 4, 3, 0, 3, 3]


def test_statefulset_ordinal_from_hostname() -> None:
    assert ordinal_from_hostname("langgraph-stream-exporter-12") == 12
    with pytest.raises(ValueError, match="ordinal"):
        ordinal_from_hostname("exporter-abc")


def test_shard_out_of_range_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        shard_members(NAMES, 3, 3)
