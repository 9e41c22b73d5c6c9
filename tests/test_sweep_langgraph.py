"""Orphaned probe threads are swept from a real `langgraph dev`: the threads a killed exporter
left (probe marker in their metadata) and older than the bound are deleted, everything else
stays, and the daemon sweeps at start and counts what it deleted.

A server of its own (not the session's): a sweep deletes every marked thread older than its
bound, and the session server's other daemons keep thread-mode probes in flight.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from exporter.config import Target
from exporter.http.client import client_for
from exporter.probe.request import PROBE_MARKER
from exporter.probe.threads import Sweep, sweep_orphaned_threads
from tests.support.daemon import DaemonProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def own_server() -> Iterator[Any]:
    from devserver import DevServer  # demo/devserver.py

    with DevServer(provider_api=False) as server:
        yield server


def make_thread(url: str, metadata: dict[str, str]) -> str:
    r = httpx.post(url + "/threads", json={"metadata": metadata}, timeout=30)
    r.raise_for_status()
    thread_id: str = r.json()["thread_id"]
    return thread_id


def exists(url: str, thread_id: str) -> bool:
    status = httpx.get(f"{url}/threads/{thread_id}", timeout=30).status_code
    assert status in (200, 404), status
    return status == 200


def sweep(url: str, older_than_s: float, now_s: float | None = None) -> Sweep:
    target = Target.model_validate({"name": "sweeper", "url": url, "assistant_id": "agent"})

    async def main() -> Sweep:
        async with client_for(target) as client:
            return await sweep_orphaned_threads(
                client, target, {"content-type": "application/json"},
                older_than_s=older_than_s, now_s=now_s,
            )  # fmt: skip

    return asyncio.run(main())


def test_sweep_deletes_old_marked_threads_only(own_server: Any) -> None:
    """Marked threads older than the bound go; unmarked threads and young ones stay."""
    url = own_server.url
    marked = [make_thread(url, {"probe": PROBE_MARKER, "probe_target": f"t{i}"}) for i in (1, 2)]
    other = make_thread(url, {"owner": "someone-else"})
    young = sweep(url, older_than_s=3600)  # just created: none is an hour old
    assert young == Sweep(0)
    assert all(exists(url, t) for t in [*marked, other])
    # As seen two hours from now, both marked threads are older than one hour.
    swept = sweep(url, older_than_s=3600, now_s=time.time() + 7200)
    assert swept.error is None and swept.deleted >= 2
    assert not any(exists(url, t) for t in marked)
    assert exists(url, other)


def test_daemon_sweeps_at_start_and_counts(own_server: Any, tmp_path: Path) -> None:
    """A marked thread left before the daemon starts, with `LGSE_ORPHAN_THREAD_AGE=1ms`: it is
    deleted at start and `langgraph_probe_orphaned_threads_deleted_total` counts it."""
    url = own_server.url
    left = make_thread(url, {"probe": PROBE_MARKER, "probe_target": "killed"})
    config = {"targets": [{"name": "a", "url": url, "assistant_id": "agent", "interval": "1h"}]}
    env = {"LGSE_ORPHAN_SWEEP": "true", "LGSE_ORPHAN_THREAD_AGE": "1ms"}
    with DaemonProcess(config, tmp_path, env=env) as daemon:
        deadline = time.monotonic() + 30
        count = 0.0
        while time.monotonic() < deadline:
            for line in daemon.get("/metrics").text.splitlines():
                if line.startswith("langgraph_probe_orphaned_threads_deleted_total "):
                    count = float(line.split()[-1])
            if count >= 1:
                break
            time.sleep(0.2)  # polling a counter: the sweep runs in the background
    assert count >= 1, daemon.log()
    assert not exists(url, left)
