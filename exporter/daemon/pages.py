"""The HTML page at `/`: recent probes with their log lines, as blackbox_exporter's start page.

Rendered from the same dict as `/-/probes` (`History.snapshot()` plus `last` and `schedule`), so
the page and the JSON never disagree. Every value from the data passes through `html.escape`
(or `urllib.parse.quote` inside a link): target names, error messages and log lines come from
the config file and from the probed servers. The caller masks secrets in the rendered bytes.
Standard library only: a page this small does not justify a template engine.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from html import escape
from typing import Any
from urllib.parse import quote

from exporter.core.words import counted

__all__ = ["index_page", "probe_link"]

_STYLE = """body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}
td,th{border-bottom:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
.failure{color:#b00}pre{margin:.2em 0;font-size:90%;white-space:pre-wrap}"""


_NO_PROBE = "No probe has finished yet."
_ON_DEMAND = (
    "<p>Probe a configured target now: <code>/probe?target=NAME</code> (JSON, add "
    "<code>&amp;debug=true</code> for its log) or <code>/probe?target=NAME&amp;"
    "format=prometheus</code> (blackbox style).</p>"
)
_NO_ON_DEMAND = (
    "<p>On-demand probes are off (lifecycle APIs are not enabled): start the exporter with "
    "<code>LGSE_WEB_ENABLE_LIFECYCLE=true</code> or <code>--web.enable-lifecycle</code> to "
    "turn them on.</p>"
)


def probe_link(probe_id: str) -> str:
    """Path of one probe's details (JSON): `/-/probes/<id>`."""
    return "/-/probes/" + quote(probe_id, safe="")


def _e(value: Any) -> str:
    return escape("" if value is None else str(value))


def _ms(seconds: Any) -> str:
    return "–" if not isinstance(seconds, int | float) else f"{seconds * 1000:.1f} ms"


def _when(unix_s: Any) -> str:
    if not isinstance(unix_s, int | float):
        return ""
    return (
        time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(unix_s)) + f".{int(unix_s % 1 * 1000):03d}Z"
    )


def _rows(entries: Iterable[Mapping[str, Any]], empty: str) -> str:
    """A table of probe entries; the sentence `empty` when there is none."""
    rows = []
    for p in entries:
        outcome = p.get("outcome")
        reason = f" ({p['reason']})" if p.get("reason") else ""
        probe_id = p.get("id")
        link = f'<a href="{_e(probe_link(str(probe_id)))}">details</a>' if probe_id else ""
        lines = p.get("log") or []
        log = (
            f"<details><summary>{counted(len(lines), 'line')}</summary><pre>"
            + "\n".join(_e(line) for line in lines)
            + "</pre></details>"
            if lines
            else ""
        )
        error = f"<br><span class=failure>{_e(p.get('error'))}</span>" if p.get("error") else ""
        rows.append(
            f"<tr class={_e(outcome)}><td>{_e(_when(p.get('finished_at')))}</td>"
            f"<td>{_e(p.get('target'))}</td><td>{_e(outcome)}{_e(reason)}{error}</td>"
            f"<td>{_e(_ms(p.get('duration_s')))}</td><td>{_e(_ms(p.get('ttft_s')))}</td>"
            f"<td>{_e(p.get('tokens'))}</td><td>{link}</td><td>{log}</td></tr>"
        )
    if not rows:
        return f"<p>{_e(empty)}</p>"
    head = (
        "<tr><th>finished (UTC)</th><th>target</th><th>outcome</th><th>duration</th>"
        "<th>TTFT</th><th>tokens</th><th></th><th>log</th></tr>"
    )
    return "<table>" + head + "".join(rows) + "</table>"


def index_page(probes: Mapping[str, Any], *, lifecycle: bool = False) -> bytes:
    """The start page: endpoints, then recent probes and recent failures, newest first.

    `probes` has the shape of `/-/probes`: `recent` and `failures` are lists of entries with
    `id`, `target`, `outcome`, `reason`, `error`, `finished_at` (Unix s), `duration_s`,
    `ttft_s`, `tokens` and `log` (a list of lines). `lifecycle`: lifecycle APIs are on, so
    `/probe` answers (otherwise it is 403 and the page says how to turn it on instead of
    offering it). Returns UTF-8 HTML.
    """
    recent = list(probes.get("recent", []))
    # Failures are kept at least as long as recent probes: none kept means none since the start.
    no_failure = "No probe has failed since the exporter started." if recent else _NO_PROBE
    links = "".join(
        f'<li><a href="{path}">{path}</a></li>'
        for path in ("/metrics", "/-/probes", "/healthz", "/readyz")
    )
    body = (
        "<!doctype html><html><head><meta charset=utf-8>"
        "<title>langgraph-stream-exporter</title>"
        f"<style>{_STYLE}</style></head><body><h1>langgraph-stream-exporter</h1>"
        f"<ul>{links}</ul>"
        + (_ON_DEMAND if lifecycle else _NO_ON_DEMAND)
        + "<h2>Recent probes</h2>"
        + _rows(recent, _NO_PROBE)
        + "<h2>Recent failures</h2>"
        + _rows(probes.get("failures", []), no_failure)
        + "</body></html>\n"
    )
    return body.encode()
