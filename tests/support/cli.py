"""The exporter's command line in a subprocess, as a user runs it."""

from __future__ import annotations

import asyncio
import sys

__all__ = ["run_cli"]


async def run_cli(*args: str, timeout_s: float = 60) -> tuple[int, bytes, bytes]:
    """`python -m exporter ARGS` to its end, stdout and stderr piped (not a terminal): its exit
    status, stdout and stderr. Raises `TimeoutError` after `timeout_s`."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    assert proc.returncode is not None
    return proc.returncode, out, err
