"""`watch`: a live terminal view of a running exporter, per target and per node.

It reads the exporter's own `/-/probes` endpoint once a second, so it works against any running
daemon (local, or port-forwarded from a cluster). On a terminal it redraws one table; piped, it
prints a line per new probe result. `--url` is the exporter's base URL or its `/metrics` URL.
Something that answers but is not an exporter ends the watch at once (exit 1); so does never
having reached the exporter by the end of `duration_s` or Ctrl-C.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from exporter.core.report import ms

__all__ = ["NotAnExporter", "base_url", "watch"]


class NotAnExporter(Exception):
    """The URL answers HTTP, but not as this exporter does."""


def base_url(url: str) -> str:
    """The exporter's base URL from what a user may paste: the base or its `/metrics` URL."""
    url = url.rstrip("/")
    return url.removesuffix("/metrics").rstrip("/")


def _fetch(url: str) -> dict[str, Any]:
    """`/-/probes` as a dict; `NotAnExporter` when the answer is not the exporter's, `OSError`
    when nothing answers."""
    try:
        with urllib.request.urlopen(url + "/-/probes", timeout=5) as resp:
            data = json.load(resp)
    except urllib.error.HTTPError as exc:
        raise NotAnExporter(f"GET {url}/-/probes: HTTP {exc.code}") from exc
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise NotAnExporter(f"GET {url}/-/probes: not JSON") from exc
    if not isinstance(data, dict) or not isinstance(data.get("last"), dict):
        raise NotAnExporter(f"GET {url}/-/probes: not the exporter's probe list")
    return data


def _nodes(summary: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(node, fields) per node execution, in order: a node that ran twice is two rows.

    Exporters up to 0.1.0 sent a dict keyed by node name (one execution per node); both read.
    """
    nodes = summary.get("nodes") or []
    if isinstance(nodes, dict):
        return list(nodes.items())
    return [(str(n.get("node")), n) for n in nodes]


def _table(last: dict[str, Any], now_s: float) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False, show_edge=False)
    left = ("target", "last probe", "node")
    for col in (*left[:2], "age", "run TTFT", "node", "node TTFT", "ITL p50", "tokens"):
        table.add_column(col, justify="left" if col in left else "right")
    for name in sorted(last):
        s = last[name]
        ok = s["outcome"] == "success"
        outcome = Text("ok", "green") if ok else Text(s.get("reason") or "failure", "red")
        age = f"{now_s - s['finished_at']:.0f} s"
        nodes = _nodes(s) or [("–", {"ttft_s": None, "itl_p50_s": None})]
        for i, (node, n) in enumerate(nodes):
            first = i == 0
            table.add_row(
                name if first else "",
                outcome if first else "",
                age if first else "",
                ms(s.get("ttft_s")) if first else "",
                node,
                ms(n.get("ttft_s")),
                ms(n.get("itl_p50_s")),
                str(s.get("tokens", "")) if first else "",
            )
    return table


def watch(url: str, *, interval_s: float = 1.0, duration_s: float | None = None) -> int:
    """Follow an exporter until Ctrl-C (or `duration_s`); returns an exit status."""
    url = base_url(url)
    console = Console()
    connected = False
    stop_at = None if duration_s is None else time.monotonic() + duration_s
    seen: set[tuple[str, float]] = set()

    def view(data: dict[str, Any]) -> Group:
        head = Text(f"{url}/metrics · {len(data.get('last', {}))} targets · Ctrl-C to stop", "dim")
        return Group(head, _table(data.get("last", {}), time.time()))

    def never_connected() -> int:
        if not connected:
            console.print(f"never reached the exporter at {url}", style="red")
            return 1
        return 0

    try:
        if console.is_terminal:
            with Live(Text("waiting for the first probe…"), console=console) as live:
                while stop_at is None or time.monotonic() < stop_at:
                    try:
                        live.update(view(_fetch(url)))
                        connected = True
                    except OSError as exc:
                        live.update(Text(f"cannot reach {url}: {exc}", "red"))
                    time.sleep(interval_s)
        else:
            while stop_at is None or time.monotonic() < stop_at:
                try:
                    data = _fetch(url)
                    connected = True
                except OSError as exc:
                    console.print(f"cannot reach {url}: {exc}")
                    time.sleep(interval_s)
                    continue
                for name, s in sorted(data.get("last", {}).items()):
                    key = (name, s["finished_at"])
                    if key in seen:
                        continue
                    seen.add(key)
                    nodes = " ".join(
                        f"{node}: ttft {ms(n.get('ttft_s'))} itl {ms(n.get('itl_p50_s'))}"
                        for node, n in _nodes(s)
                    )
                    verdict = "ok" if s["outcome"] == "success" else f"FAIL {s.get('reason')}"
                    console.print(
                        f"{name:<20} {verdict:<18} run ttft {ms(s.get('ttft_s')):>9}  {nodes}",
                        soft_wrap=True,
                    )
                time.sleep(interval_s)
    except NotAnExporter as exc:
        console.print(f"this is not an exporter: {url} ({exc})", style="red", soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        return never_connected()
    return never_connected()
