"""Which streaming protocol a probe speaks, and the probe entry point that picks it.

`protocol: auto` (the default) uses v2 event streaming where the server offers it, legacy
`POST /runs/stream` otherwise. The answer is asked once per target URL and remembered for the
life of the process (docs/V2.md §1): the server's `/info` does not say, and `/openapi.json`
lists the v2 routes even when they answer 404, so the only reliable test is a request.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import httpx

from exporter.config import V2_RUN_MARKER, Target
from exporter.core.result import ProbeResult
from exporter.http.client import Transport, client_for, fetch, transport_errors
from exporter.probe import run, v2
from exporter.probe.request import TraceParent, request_headers

__all__ = ["detect_protocol", "forget_protocols", "probe", "resolved_protocol"]

#: target URL -> "legacy" or "v2", as detected (only definite answers are kept).
_DETECTED: dict[str, str] = {}


def forget_protocols() -> None:
    """Forget every detected protocol (tests; a server upgraded in place)."""
    _DETECTED.clear()


def resolved_protocol(target: Target) -> str | None:
    """The protocol `target` is probed with, if known without asking the server."""
    if target.protocol != "auto":
        return target.protocol
    configurable = (target.config or {}).get("configurable")
    if isinstance(configurable, dict) and configurable.get(V2_RUN_MARKER):
        return "v2"  # the legacy endpoint would answer in v2 envelopes (docs/V2.md §5)
    return _DETECTED.get(target.url)


async def detect_protocol(
    client: httpx.AsyncClient, target: Target, headers: dict[str, str]
) -> str:
    """Ask the server once: `POST /threads/<new uuid>/commands` with an empty envelope.

    404 means no v2 routes (legacy); 400 (the envelope is malformed) or any 2xx means v2.
    Nothing is created either way. Any other answer (401, a proxy's 502, a timeout) is not
    remembered: the probe goes legacy this time and asks again next time.
    """
    errors: tuple[type[Exception], ...] = (TimeoutError, *transport_errors())
    known = resolved_protocol(target)
    if known is not None:
        return known
    try:
        async with asyncio.timeout(target.timeout.headers):
            r = await fetch(
                client,
                "POST",
                f"{target.url}/threads/{uuid.uuid4()}/commands",
                content=b"{}",
                headers=headers,
            )
    except errors:
        return "legacy"
    if r.status_code == 404:
        _DETECTED[target.url] = "legacy"
    elif r.status_code == 400 or 200 <= r.status_code < 300:
        _DETECTED[target.url] = "v2"
    return _DETECTED.get(target.url, "legacy")


async def probe(
    target: Target,
    *,
    trace: TraceParent | None = None,
    client: httpx.AsyncClient | None = None,
    transport: Transport = "stamping",
    log: Callable[[str], None] | None = None,
    protocol: str | None = None,
) -> ProbeResult:
    """Run one probe of `target` with its protocol (`protocol` overrides the target's).

    Never raises for the target's faults: they are the result's `failure`.
    """
    trace = trace or TraceParent.new()
    if protocol is not None and protocol != target.protocol:
        target = target.model_copy(update={"protocol": protocol})
    if target.protocol == "legacy":
        return await run.probe(target, trace=trace, client=client, transport=transport, log=log)
    owns_client = client is None
    if client is None:
        # Two connections: the v2 subscription stays open while `run.start` is sent.
        client = client_for(target, transport=transport, max_connections=2)
    try:
        chosen = await detect_protocol(client, target, request_headers(target, trace))
        if chosen == "legacy":
            return await run.probe(target, trace=trace, client=client, transport=transport, log=log)
        result = await v2.probe_v2(target, trace=trace, client=client, log=log)
        if target.protocol == "auto" and result.failure is not None and v2.unsupported(result):
            _DETECTED[target.url] = "legacy"  # routes on, runtime without v2 (docs/V2.md §1)
        return result
    finally:
        if owns_client:
            await client.aclose()
