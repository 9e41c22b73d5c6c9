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
from collections.abc import Callable, Mapping

import orjson

from exporter.core.result import ProbeResult
from exporter.core.waterfall import layout
from exporter.core.waterfall_svg import render_svg
from exporter.sinks.log import summary

__all__ = ["SVG", "SVG_HEADERS", "picture", "svg_bytes"]

_ID = re.compile(r"^/-/probes/(?P<id>[0-9a-f]{32})\.(?P<ext>svg|json)$")
SVG = "image/svg+xml"
TEXT = "text/plain; charset=utf-8"
SVG_HEADERS = (
    ("content-security-policy", "default-src 'none'; style-src 'unsafe-inline'"),
    ("x-content-type-options", "nosniff"),
)


def svg_bytes(result: ProbeResult) -> bytes:
    """The waterfall SVG of one result (unmasked: the caller masks)."""
    return render_svg(layout(result)).encode()


Answer = tuple[int, bytes, str, tuple[tuple[str, str], ...]]


def picture(
    path: str,
    query: Mapping[str, list[str]],
    *,
    find: Callable[[str], ProbeResult | None],
    latest: Callable[[str], ProbeResult | None],
    mask: Callable[[bytes], bytes],
) -> Answer | None:
    """(status, body, content type, headers) for a `/-/probes/...` picture path; None for a
    path that is not one (`/-/probes/<id>` without a suffix is the web layer's)."""
    if path == "/-/probes/latest.svg":
        names = query.get("target", [])
        result = latest(names[0]) if len(names) == 1 else None
        if result is None or not result.trace_id:
            return 404, b"no kept result for that ?target=NAME\n", TEXT, ()
        return 302, b"", TEXT, (("location", f"/-/probes/{result.trace_id}.svg"),)
    if not path.endswith((".svg", ".json")):
        return None
    match = _ID.match(path)
    result = find(match["id"]) if match else None
    if match is None or result is None:
        return 404, b"no kept result with that id (only recent ones are kept)\n", TEXT, ()
    if match["ext"] == "svg":
        return 200, mask(svg_bytes(result)), SVG, SVG_HEADERS
    body = {"summary": summary(result), "result": result.to_dict(),
            "waterfall": layout(result).to_dict()}  # fmt: skip
    return 200, mask(orjson.dumps(body)), "application/json", ()
