"""Thread mode's lifecycle around a probe's run: create the thread, then cancel and delete.

Kept apart from the stream reading: nothing here is timed (docs/WIRE.md §9).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from urllib.parse import quote

import httpx
import orjson

from exporter.config import Target
from exporter.core.errors import FailureKind, HTTPStatusFailure, ProbeFailure
from exporter.http.client import classify_transport_error, response_excerpt, transport_errors
from exporter.probe.request import probe_metadata

__all__ = ["CLEANUP_TIMEOUT_S", "cancel_run", "create_thread", "delete_thread"]

CLEANUP_TIMEOUT_S = 10.0


async def create_thread(client: httpx.AsyncClient, target: Target, headers: dict[str, str]) -> str:
    """`POST /threads` with the probe marker in its metadata; returns the thread id.

    Raises `ProbeFailure` (phase "thread") for every way this can fail.
    """
    body = {"metadata": probe_metadata(target)}
    try:
        async with asyncio.timeout(target.timeout.headers):
            response = await client.post(
                f"{target.url}/threads", content=orjson.dumps(body), headers=headers
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
    r = await client.post(
        f"{target.url}/threads/{quote(thread_id, safe='')}/runs/{quote(run_id, safe='')}/cancel",
        params={"action": "interrupt", "wait": "true"},
        headers=headers,
    )
    return r.status_code


async def delete_thread(
    client: httpx.AsyncClient, target: Target, headers: dict[str, str], thread_id: str
) -> int:
    """`DELETE /threads/<tid>`; the HTTP status."""
    r = await client.delete(f"{target.url}/threads/{quote(thread_id, safe='')}", headers=headers)
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
