"""Counts in words for what people read (reports, `watch`, logs, pages): "1 target", "2 targets".

Pure and dependency-free: one rule (a noun takes an "s" unless told its plural) is all the
messages need, which does not justify an inflection library.
"""

from __future__ import annotations

__all__ = ["counted"]


def counted(n: int, noun: str, plural: str | None = None) -> str:
    """`n` and `noun` in the number `n` asks for: `counted(1, "target")` is "1 target",
    `counted(0, "target")` "0 targets". `plural`: the plural when it is not `noun` + "s"."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"
