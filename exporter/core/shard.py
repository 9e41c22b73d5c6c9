"""Which replica probes which target: rendezvous (highest-random-weight) hashing of target names.

Every replica computes, for each target name, a score per shard and keeps the targets whose
best-scoring shard is its own. No coordination, no shared state: replicas with the same
targets file and the same shard count agree on a partition, so no target is probed twice and
none is dropped. Changing the shard count from N to N+1 moves only the targets the new shard
wins, about 1/(N+1) of them (docs/SCALING.md). The score is a keyed BLAKE2b of the name, so it
is stable across processes, Python versions and machines (Python's `hash()` is salted).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

__all__ = ["ordinal_from_hostname", "shard_members", "shard_of"]

_ORDINAL = re.compile(r"-(\d+)$")


def _score(name: str, shard: int) -> int:
    digest = hashlib.blake2b(
        name.encode("utf-8"), digest_size=8, key=f"lgse-shard-{shard}".encode()
    ).digest()
    return int.from_bytes(digest, "big")


def shard_of(name: str, shards: int) -> int:
    """The shard (0-based, < `shards`) that owns target `name`; ValueError if `shards` < 1."""
    if shards < 1:
        raise ValueError(f"shards must be at least 1, got {shards}")
    if shards == 1:
        return 0
    # Ties between 64-bit scores are practically impossible; the lower shard wins one.
    return max(range(shards), key=lambda k: (_score(name, k), -k))


def shard_members(names: Iterable[str], shard: int, shards: int) -> list[str]:
    """The names of `names` that shard `shard` of `shards` owns, in their given order.

    Raises ValueError when `shard` is not in [0, shards).
    """
    if not 0 <= shard < shards:
        raise ValueError(f"shard must be in [0, {shards}), got {shard}")
    return [n for n in names if shard_of(n, shards) == shard]


def ordinal_from_hostname(hostname: str) -> int:
    """The trailing ordinal of a StatefulSet pod's hostname (`exporter-2` -> 2).

    Raises ValueError when the name does not end in `-<digits>`.
    """
    match = _ORDINAL.search(hostname)
    if match is None:
        raise ValueError(
            f"hostname {hostname!r} does not end in -<ordinal> (a StatefulSet pod name)"
        )
    return int(match.group(1))
