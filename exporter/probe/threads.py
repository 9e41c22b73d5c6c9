"""Thread mode's lifecycle around a probe's run: create the thread, then cancel and delete.

Kept apart from the stream reading: nothing here is timed (docs/WIRE.md §9).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import quote

import httpx
import orjson

from exporter.config import Target
from exporter.core.errors import FailureKind, HTTPStatusFailure, ProbeFailure
from exporter.http.client import (
    classify_transport_error,
    fetch,
    response_excerpt,
    transport_errors,
)
from exporter.probe.request import PROBE_MARKER, probe_metadata

__all__ = [
    "CLEANUP_TIMEOUT_S",
    "RUN_ENDINGS",
    "Sweep",
    "cancel_run",
    "create_thread",
    "delete_thread",
    "run_ending",
    "sweep_orphaned_threads",
]

CLEANUP_TIMEOUT_S = 10.0
#: Threads asked for per `POST /threads/search`, and the most pages one sweep reads.
SWEEP_PAGE = 100
SWEEP_MAX_PAGES = 20
SWEEP_TIMEOUT_S = 60.0


async def create_thread(client: httpx.AsyncClient, target: Target, headers: dict[str, str]) -> str:
    """`POST /threads` with the probe marker in its metadata; returns the thread id.

    Raises `ProbeFailure` (phase "thread") for every way this can fail.
    """
    body = {"metadata": probe_metadata(target)}
    try:
        async with asyncio.timeout(target.timeout.headers):
            response = await fetch(
                client, "POST", f"{target.url}/threads", content=orjson.dumps(body), headers=headers
            )
    except TimeoutError:
        raise ProbeFailure(
            "deadline: POST /threads", kind=FailureKind.DEADLINE, phase="thread"
        ) from None
    except transport_errors() as exc:
        raise classify_transport_error(exc, streaming=False) from exc
    if response.status_code >= 300:
        detail = await response_excerpt(response)
        raise HTTPStatusFailure(
            response.status_code,
            f"POST /threads: HTTP {response.status_code}: {detail}",
            detail,
            phase="thread",
        )
    try:
        thread_id = orjson.loads(response.content).get("thread_id")
    except (orjson.JSONDecodeError, AttributeError):
        thread_id = None
    if not isinstance(thread_id, str):
        # NOTE: without a thread id the run would silently go to stateless `/runs/stream`.
        raise ProbeFailure(
            f"POST /threads: no thread_id in the response: {response.content[:200]!r}",
            kind=FailureKind.PROTOCOL,
            phase="thread",
        )
    return thread_id


async def cancel_run(
    client: httpx.AsyncClient,
    target: Target,
    headers: dict[str, str],
    thread_id: str,
    run_id: str,
) -> int:
    """`POST /threads/<tid>/runs/<rid>/cancel?action=interrupt&wait=true`; the HTTP status.

    Also the way to stop a stateless run on the JS server, which ignores `on_disconnect`: its
    temporary thread's id is in every token's metadata (docs/WIRE.md §8).
    """
    r = await fetch(
        client,
        "POST",
        f"{target.url}/threads/{quote(thread_id, safe='')}/runs/{quote(run_id, safe='')}/cancel",
        params={"action": "interrupt", "wait": "true"},
        headers=headers,
    )
    return r.status_code


#: A run's stored status -> why it ended, as a probe reports it (docs/V2.md §6). A run the
#: server's job timeout stopped is `timeout`; a cancelled one is `interrupted` in the store.
RUN_ENDINGS = {
    "success": "success",
    "error": "error",
    "timeout": "timeout",
    "interrupted": "cancelled",
}
#: After a stream ends the worker may not have stored the run's final status yet.
STATUS_SETTLE_S = 1.0
_STATUS_POLL_S = 0.05


async def run_ending(
    client: httpx.AsyncClient,
    target: Target,
    headers: dict[str, str],
    thread_id: str,
    run_id: str,
    *,
    settle_s: float = STATUS_SETTLE_S,
) -> str | None:
    """Why a run ended: `success`, `error`, `timeout`, `cancelled` or `interrupted`, from
    `GET /threads/<tid>/runs/<rid>` (and the thread's status, which alone shows a graph
    interrupt: the run itself is stored as a success, docs/V2.md §6). `pending`/`running` when
    the run has not ended within `settle_s`; None when the server would not say.

    Never raises for the server's faults: this only explains a result, it never changes the
    probe's measurements.
    """
    tid, rid = quote(thread_id, safe=""), quote(run_id, safe="")
    errors: tuple[type[Exception], ...] = (TimeoutError, *transport_errors())
    loop = asyncio.get_running_loop()
    give_up = loop.time() + settle_s
    try:
        async with asyncio.timeout(settle_s + CLEANUP_TIMEOUT_S):
            while True:
                r = await fetch(
                    client, "GET", f"{target.url}/threads/{tid}/runs/{rid}", headers=headers
                )
                status = _status_of(r)
                if status is None:
                    return None
                if status not in ("pending", "running") or loop.time() >= give_up:
                    break
                await asyncio.sleep(_STATUS_POLL_S)  # bounded by settle_s
            ending = RUN_ENDINGS.get(status, status)
            if ending == "success":
                r = await fetch(client, "GET", f"{target.url}/threads/{tid}", headers=headers)
                if _status_of(r) == "interrupted":
                    return "interrupted"
            return ending
    except errors:
        return None


def _status_of(response: httpx.Response) -> str | None:
    if response.status_code != 200:
        return None
    try:
        status = orjson.loads(response.content).get("status")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return status if isinstance(status, str) else None


async def delete_thread(
    client: httpx.AsyncClient, target: Target, headers: dict[str, str], thread_id: str
) -> int:
    """`DELETE /threads/<tid>`; the HTTP status."""
    r = await fetch(
        client, "DELETE", f"{target.url}/threads/{quote(thread_id, safe='')}", headers=headers
    )
    return r.status_code


async def clean_up(
    client: httpx.AsyncClient,
    target: Target,
    headers: dict[str, str],
    *,
    thread_id: str | None,
    run_id: str | None,
    run_finished: bool,
    delete: bool,
    say: Callable[[str], None],
) -> None:
    """Cancel the run if it may still be running, then delete the thread if it is ours.

    NOTE: cancel first, then delete. Deleting a thread does not stop its run, which then holds
    a worker until it finishes (docs/WIRE.md §8, §9). Failures are reported through `say`,
    never raised: cleanup must not change a probe's outcome.
    """
    if thread_id is None:
        return
    cleanup_errors: tuple[type[Exception], ...] = (TimeoutError, *transport_errors())
    try:
        async with asyncio.timeout(CLEANUP_TIMEOUT_S):
            if run_id is not None and not run_finished:
                status = await cancel_run(client, target, headers, thread_id, run_id)
                say(f"cancelled run {run_id}: HTTP {status}")
            if delete:
                status = await delete_thread(client, target, headers, thread_id)
                say(f"deleted thread {thread_id}: HTTP {status}")
    except cleanup_errors as exc:
        say(f"cleanup of thread {thread_id} failed: {type(exc).__name__}: {exc}")


@dataclass(frozen=True, slots=True)
class Sweep:
    """What one sweep of a server did: threads deleted, and the error that stopped it."""

    deleted: int
    error: str | None = None


def _created_s(thread: object) -> float | None:
    """A thread's `created_at` (ISO 8601) as Unix seconds, or None when missing or unparsable."""
    if not isinstance(thread, dict):
        return None
    created = thread.get("created_at")
    if not isinstance(created, str):
        return None
    try:
        return datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


async def sweep_orphaned_threads(
    client: httpx.AsyncClient,
    target: Target,
    headers: dict[str, str],
    *,
    older_than_s: float,
    now_s: float | None = None,
) -> Sweep:
    """Delete the probe threads on `target`'s server older than `older_than_s` seconds.

    A probe deletes its own thread (`clean_up`); a thread left behind means the exporter died
    mid-probe. `POST /threads/search` with the probe marker in `metadata`, oldest first, then
    `DELETE /threads/<tid>` for each thread created more than `older_than_s` before `now_s`
    (Unix seconds; default: now). Threads of every exporter and target on that server carry
    the marker, so the bound must exceed the longest probe. Never raises for the server's
    faults: they are the returned `Sweep.error`.
    """
    now_s = time.time() if now_s is None else now_s
    cutoff_s = now_s - older_than_s
    body = {
        "metadata": {"probe": PROBE_MARKER},
        "limit": SWEEP_PAGE,
        "offset": 0,
        "sort_by": "created_at",
        "sort_order": "asc",
    }
    deleted = 0
    skipped = 0  # old threads that could not be deleted: the next page starts after them
    errors: tuple[type[Exception], ...] = (TimeoutError, *transport_errors())
    try:
        async with asyncio.timeout(SWEEP_TIMEOUT_S):
            for _ in range(SWEEP_MAX_PAGES):
                body["offset"] = skipped
                r = await fetch(
                    client,
                    "POST",
                    f"{target.url}/threads/search",
                    content=orjson.dumps(body),
                    headers=headers,
                )
                if r.status_code >= 300:
                    detail = await response_excerpt(r)
                    return Sweep(deleted, f"POST /threads/search: HTTP {r.status_code}: {detail}")
                try:
                    page = orjson.loads(r.content)
                except orjson.JSONDecodeError:
                    return Sweep(deleted, "POST /threads/search: response is not JSON")
                if not isinstance(page, list):
                    return Sweep(deleted, "POST /threads/search: expected a JSON array")
                for thread in page:
                    created_s = _created_s(thread)
                    if created_s is None or created_s >= cutoff_s:
                        return Sweep(deleted)  # oldest first: the rest are younger
                    thread_id = thread.get("thread_id") if isinstance(thread, dict) else None
                    if not isinstance(thread_id, str):
                        skipped += 1
                        continue
                    status = await delete_thread(client, target, headers, thread_id)
                    if status < 300 or status == 404:  # 404: someone else deleted it meanwhile
                        deleted += status < 300
                    else:
                        skipped += 1
                if len(page) < SWEEP_PAGE:
                    return Sweep(deleted)
    except errors as exc:
        return Sweep(deleted, f"{type(exc).__name__}: {exc}")
    return Sweep(deleted)
