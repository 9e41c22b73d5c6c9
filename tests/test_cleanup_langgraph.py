"""A probe that hits its deadline leaves nothing behind on a real `langgraph dev` (docs/WIRE.md §8, §11).

The `slow` demo graph, told to stream its tokens 2 s apart, runs for about 8 s; the probe's total
deadline is 3 s. In thread mode the probe must then cancel the run and delete the thread:
deleting alone leaves the graph running invisibly, holding a worker (docs/WIRE.md §8). In
stateless mode `on_disconnect: "cancel"` is not enough (the JS server ignores it for stateless
runs), so the probe cancels the run through its temporary thread, whose id it read from the
tokens' metadata. Both servers, every check.

Checks from outside use only requests scoped to this probe (its thread id, run id and metadata),
never `POST /runs/cancel {"status": "running"}`, which would cancel other tests' runs on the shared
session server. The server's own log is the decisive witness: the run is logged as interrupted,
not as having run to success.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from exporter.config import Target
from exporter.core.result import ProbeResult
from exporter.probe import PROBE_MARKER, probe

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOTAL_S = 3.0
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class Probed:
    url: str
    target: Target
    result: ProbeResult
    elapsed_s: float
    server_log: Callable[[], str]


def _probe(mode: str, server: Any) -> Probed:
    langgraph_server = server.url
    target = Target(
        name=f"cleanup-slow-{mode}",
        url=langgraph_server,
        assistant_id="slow",
        mode=mode,
        protocol="legacy",
        # Tokens before the deadline: a stateless run's temporary thread is named only in them.
        config={"configurable": {"first_token_s": 0.2, "token_gap_s": 2.0}},
        # NOTE: an idle deadline under the 5 s heartbeat is only allowed with total <= 5 s.
        timeout={"total": f"{TOTAL_S}s", "idle": f"{TOTAL_S}s"},
    )
    t0 = time.monotonic()
    result = asyncio.run(probe(target))
    return Probed(langgraph_server, target, result, time.monotonic() - t0, server.log_text)


@pytest.fixture(scope="module")
def probed_thread(langgraph: Any) -> Probed:
    return _probe("thread", langgraph)


@pytest.fixture(scope="module")
def probed_stateless(langgraph: Any) -> Probed:
    return _probe("stateless", langgraph)


@pytest.fixture(params=["thread", "stateless"])
def probed(request: pytest.FixtureRequest, langgraph: Any) -> Probed:
    """Each mode's probe, for the checks that hold in both."""
    probed: Probed = request.getfixturevalue(f"probed_{request.param}")
    return probed


def run_end_line(probed: Probed, run_id: str, timeout_s: float = 10.0) -> str:
    """The server's "Background run <outcome>" log line for `run_id` (polls: it is a log file)."""
    deadline = time.monotonic() + timeout_s
    while True:
        log = _ANSI.sub("", probed.server_log())  # the CLI colours its output
        lines = [ln for ln in log.splitlines() if "Background run" in ln and run_id in ln]
        if lines:
            return lines[-1]
        if time.monotonic() > deadline:
            raise AssertionError(f"no 'Background run' line for run {run_id}")
        time.sleep(0.1)


def test_probe_ends_with_the_total_deadline(probed: Probed) -> None:
    """The probe fails with `deadline` (phase total) after 3 s, well before the run's end."""
    failure = probed.result.failure
    assert failure is not None
    assert (failure.kind.value, failure.phase) == ("deadline", "total")
    assert 1 <= probed.result.tokens <= 2
    assert TOTAL_S <= probed.result.duration_s < TOTAL_S + 1.0


def test_probe_returns_soon_after_the_deadline_cleanup_included(probed: Probed) -> None:
    """Cleanup (cancel with wait, delete) adds little: the call returns within 3 s + 3 s."""
    assert TOTAL_S <= probed.elapsed_s < 2 * TOTAL_S


def test_run_id_was_known(probed: Probed) -> None:
    """The run id came from Content-Location / metadata, so the run could be cancelled by id."""
    assert probed.result.run_id


def test_thread_is_deleted(probed_thread: Probed) -> None:
    """Thread mode: the probe's thread is gone afterwards (GET answers 404)."""
    probed = probed_thread
    assert probed.result.thread_id
    response = httpx.get(f"{probed.url}/threads/{probed.result.thread_id}", timeout=10)
    assert response.status_code == 404


def test_no_thread_of_this_probe_is_left(probed: Probed) -> None:
    """Searching threads by the probe's metadata marker finds none of this probe's threads."""
    response = httpx.post(
        f"{probed.url}/threads/search",
        json={"metadata": {"probe": PROBE_MARKER, "probe_target": probed.target.name}},
        timeout=10,
    )
    assert response.status_code == 200
    assert response.json() == []


def test_no_run_of_this_probe_is_left_to_cancel(probed_thread: Probed, langgraph: Any) -> None:
    """Thread mode: cancelling the probe's run by id finds nothing (404 "No runs found"); the
    JS server has no `POST /runs/cancel`, and its run is gone with its thread."""
    probed = probed_thread
    if langgraph.kind == "js":
        tid, rid = probed.result.thread_id, probed.result.run_id
        response = httpx.get(f"{probed.url}/threads/{tid}/runs/{rid}", timeout=10)
        assert response.status_code == 404, response.text
        return
    response = httpx.post(
        f"{probed.url}/runs/cancel",
        json={"thread_id": probed.result.thread_id, "run_ids": [probed.result.run_id]},
        timeout=10,
    )
    assert response.status_code == 404
    assert "No runs found" in response.json()["detail"]


def test_stateless_probe_cancels_through_the_temporary_thread(probed_stateless: Probed) -> None:
    """Stateless mode: `on_disconnect: cancel` is not enough (the JS server ignores it), so a
    probe that gave up cancels its run through the temporary thread, and deletes nothing."""
    log = probed_stateless.result.log
    cancels = [ln for ln in log if ln.startswith("cancelled run ")]
    assert len(cancels) == 1, log
    # 404: the Python server's own on_disconnect cancel got there first.
    assert re.search(r"HTTP (20\d|404)$", cancels[0]), log
    assert not [ln for ln in log if ln.startswith("deleted thread ")], log


def test_run_is_cancelled_before_the_thread_is_deleted(probed_thread: Probed) -> None:
    """Thread mode: the probe cancels the run first, then deletes the thread (docs/WIRE.md §8)."""
    log = probed_thread.result.log
    cancel = [i for i, line in enumerate(log) if line.startswith("cancelled run ")]
    delete = [i for i, line in enumerate(log) if line.startswith("deleted thread ")]
    assert len(cancel) == 1 and len(delete) == 1, log
    assert cancel[0] < delete[0], log
    # 404: the server's own on_disconnect cancel, set off when the probe hung up, got there first.
    assert re.search(r"HTTP (20\d|404)$", log[cancel[0]]), log
    assert log[delete[0]].endswith("HTTP 204"), log


def test_server_logs_the_run_as_interrupted(probed: Probed, langgraph: Any) -> None:
    """The server itself ends the run as interrupted, not as a success seconds later. The JS
    server logs no run outcome: there the witness is that it accepted the probe's cancel."""
    assert probed.result.run_id
    if langgraph.kind == "js":
        accepted = f"cancelled run {probed.result.run_id}: HTTP 20"
        assert any(line.startswith(accepted) for line in probed.result.log), probed.result.log
        return
    line = run_end_line(probed, probed.result.run_id)
    assert "Background run interrupted" in line, line
