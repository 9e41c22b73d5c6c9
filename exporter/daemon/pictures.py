"""Recent probe results as pictures: `GET /-/probes/<id>.svg`, `GET /-/probes/<id>.json` and
`GET /-/probes/latest.svg?target=NAME` (a redirect to the latest result's own address).

A result's id is its trace id (the `traceparent` the probe sent, also the Prometheus exemplar's
`trace_id`), so a dashboard can go from an exemplar or a table row straight to the picture.
Only results still kept by the daemon's history (`LGSE_HISTORY_SIZE`, failures kept longer) are
found; older ids are 404. Every body passes through the daemon's secret mask.

The SVG carries a `Content-Security-Policy` that forbids scripts, and `nosniff`: it is escaped
already (exporter/core/waterfall_svg.py), this only keeps it so if that ever broke.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from exporter.core.result import ProbeResult
from exporter.core.waterfall import layout
from exporter.core.waterfall_svg import render_svg
from exporter.sinks.log import summary

__all__ = ["SVG_HEADERS", "serve_picture", "svg_bytes"]

Send = Callable[[dict[str, Any]], Awaitable[None]]

_ID = re.compile(r"^/-/probes/(?P<id>[0-9a-f]{32})\.(?P<ext>svg|json)$")
SVG_HEADERS = [
    (b"content-security-policy", b"default-src 'none'; style-src 'unsafe-inline'"),
    (b"x-content-type-options", b"nosniff"),
]


def svg_bytes(result: ProbeResult) -> bytes:
    """The waterfall SVG of one result (unmasked: the caller masks)."""
    return render_svg(layout(result)).encode()


async def _respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: str = "text/plain; charset=utf-8",
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
                *(extra or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def serve_picture(
    path: str,
    query: dict[str, list[str]],
    send: Send,
    *,
    find: Callable[[str], ProbeResult | None],
    latest: Callable[[str], ProbeResult | None],
    mask: Callable[[bytes], bytes],
) -> None:
    """Answer one `/-/probes/...` request (404 for an unknown id or path)."""
    if path == "/-/probes/latest.svg":
        names = query.get("target", [])
        result = latest(names[0]) if len(names) == 1 else None
        if result is None or not result.trace_id:
            await _respond(send, 404, b"no kept result for that ?target=NAME\n")
            return
        location = f"/-/probes/{result.trace_id}.svg".encode()
        await _respond(send, 302, b"", extra=[(b"location", location)])
        return
    match = _ID.match(path)
    result = find(match["id"]) if match else None
    if match is None or result is None:
        await _respond(send, 404, b"no kept result with that id\n")
        return
    if match["ext"] == "svg":
        await _respond(send, 200, mask(svg_bytes(result)), "image/svg+xml", SVG_HEADERS)
        return
    body = {"summary": summary(result), "result": result.to_dict(),
            "waterfall": layout(result).to_dict()}  # fmt: skip
    await _respond(send, 200, mask(orjson.dumps(body)), "application/json")
