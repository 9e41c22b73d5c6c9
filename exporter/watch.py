"""`watch`: a live terminal view of a running exporter, per target and per node.

It follows the exporter's own `GET /-/events` stream (Server-Sent Events, read with httpx-sse), so
a result shows the moment its probe finishes, and it works against any running daemon (local, or
port-forwarded from a cluster). When the stream breaks (daemon restarted, network cut) it says so,
reconnects on its own with `Last-Event-ID`, and gets the events it missed from the daemon's
replay buffer. On a terminal it redraws one table (and, with `--target NAME`, the waterfall of
that target's latest probe); piped, it prints a line per new probe result.
`--url` is the exporter's base URL or its `/metrics` URL. Something that answers but is not
an exporter ends the watch at once (exit 1); so does never having reached the exporter by the end
of `duration_s` or Ctrl-C.
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import httpx
from httpx_sse import SSEError, connect_sse
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from exporter.core.report import ms
from exporter.core.waterfall import Waterfall
from exporter.core.waterfall_text import render_text
from exporter.core.words import counted

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


class _Follower(threading.Thread):
    """Reads `/-/events` in the background and puts what happens on a queue for the UI thread:
    ("probe", entry), ("connected", url), ("disconnected", reason), ("polling", reason) or
    ("not_exporter", reason). Reconnects by itself, with `Last-Event-ID`, after 0.5 s then
    doubling up to 5 s. An exporter without `/-/events` (404, or no event stream: an older
    version) is read by polling `/-/probes` every `interval_s` instead."""

    def __init__(
        self,
        url: str,
        out: queue.Queue[tuple[str, Any]],
        interval_s: float,
        seen: set[tuple[str, float]],
    ) -> None:
        super().__init__(name="watch-events", daemon=True)
        self.url = url
        self.out = out
        self.interval_s = interval_s
        self.seen = seen  # (target, finished_at) already shown, for polling
        self.last_id: str | None = None

    def run(self) -> None:
        backoff_s = 0.5
        # NOTE: the daemon sends a comment at least every 15 s; 45 s of silence is a dead peer.
        timeout = httpx.Timeout(5.0, read=45.0)
        while True:
            try:
                with httpx.Client(timeout=timeout) as client:
                    headers = {"Last-Event-ID": self.last_id} if self.last_id else {}
                    with connect_sse(client, "GET", self.url + "/-/events", headers=headers) as es:
                        code = es.response.status_code
                        ctype = es.response.headers.get("content-type", "")
                        if code == 404 or (code == 200 and "text/event-stream" not in ctype):
                            self._poll()
                            return
                        if code >= 400 and code not in (502, 503, 504):
                            self.out.put(("not_exporter", f"GET {self.url}/-/events: HTTP {code}"))
                            return
                        es.response.raise_for_status()
                        self.out.put(("connected", self.url))
                        backoff_s = 0.5
                        for event in es.iter_sse():
                            if event.id:
                                self.last_id = event.id
                            if event.event == "probe":
                                self.out.put(("probe", json.loads(event.data)))
                    reason = "the stream ended"
            except (httpx.HTTPError, SSEError, ValueError) as exc:
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            self.out.put(("disconnected", reason))
            time.sleep(backoff_s)
            backoff_s = min(5.0, backoff_s * 2)

    def _poll(self) -> None:
        self.out.put(("polling", "no /-/events here: reading /-/probes"))
        up = True
        while True:
            try:
                data = _fetch(self.url)
            except NotAnExporter as exc:
                self.out.put(("not_exporter", str(exc)))
                return
            except OSError as exc:
                if up:
                    self.out.put(("disconnected", f"{type(exc).__name__}: {exc}"))
                up = False
            else:
                if not up:
                    self.out.put(("connected", self.url))
                up = True
                for name, entry in sorted(data.get("last", {}).items()):
                    key = (name, entry.get("finished_at", 0.0))
                    if key not in self.seen:
                        self.seen.add(key)
                        self.out.put(("probe", entry))
            time.sleep(self.interval_s)


def _waterfall_of(url: str, entry: dict[str, Any]) -> Waterfall | None:
    """The waterfall of a kept result (`/-/probes/<id>.json`); None when it is gone."""
    trace_id = entry.get("trace_id")
    if not trace_id:
        return None
    try:
        resp = httpx.get(f"{url}/-/probes/{trace_id}.json", timeout=5)
        if resp.status_code != 200:
            return None
        return Waterfall.from_dict(resp.json()["waterfall"])
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None


def _line(s: dict[str, Any]) -> str:
    nodes = " ".join(
        f"{node}: ttft {ms(n.get('ttft_s'))} itl {ms(n.get('itl_p50_s'))}" for node, n in _nodes(s)
    )
    verdict = "ok" if s["outcome"] == "success" else f"FAIL {s.get('reason')}"
    return (
        f"{s['target']:<20} {verdict:<18} run ttft {ms(s.get('ttft_s')):>9}  {nodes}"
        f"  trace {s.get('trace_id') or '–'}"
    )


def _not_an_exporter(console: Console, url: str, exc: NotAnExporter) -> int:
    """Say that `url` answered but is not an exporter; the exit status (1)."""
    console.print(f"this is not an exporter: {url} ({exc})", style="red", soft_wrap=True)
    return 1


def watch(
    url: str,
    *,
    interval_s: float = 1.0,
    duration_s: float | None = None,
    target: str | None = None,
) -> int:
    """Follow an exporter until Ctrl-C (or `duration_s`); returns an exit status.

    `target` adds the waterfall of that target's latest probe under the table (terminal only).
    `interval_s` is how often the terminal view redraws the ages.
    """
    url = base_url(url)
    console = Console()
    connected = False
    stop_at = None if duration_s is None else time.monotonic() + duration_s
    events: queue.Queue[tuple[str, Any]] = queue.Queue()
    last: dict[str, Any] = {}
    try:
        last.update(_fetch(url).get("last", {}))
        connected = True  # reached the exporter
    except NotAnExporter as exc:
        return _not_an_exporter(console, url, exc)
    except OSError:
        pass  # not up yet: the follower keeps trying
    status = Text(f"connecting to {url}/-/events …", "dim")
    picture: Waterfall | None = None
    if target and target in last:
        picture = _waterfall_of(url, last[target])
    if not console.is_terminal:
        for name in sorted(last):  # what is there already, then each new result
            console.print(_line(last[name]), soft_wrap=True, highlight=False)
    seen = {(name, e.get("finished_at", 0.0)) for name, e in last.items()}
    _Follower(url, events, interval_s, seen).start()

    def view() -> Group:
        head = Text(f"{url} · {counted(len(last), 'target')} · Ctrl-C to stop · ", "dim")
        head.append_text(status)
        parts: list[Any] = [head, _table(last, time.time())]
        if target:
            if picture is not None:
                parts += [Text(""), render_text(picture, width=console.width)]
            else:
                parts.append(Text(f"\nno probe of {target} yet", "dim"))
        return Group(*parts)

    def handle(kind: str, value: Any, printing: bool) -> None:
        nonlocal status, picture, connected
        if kind == "not_exporter":
            raise NotAnExporter(value)
        if kind == "probe":
            last[value["target"]] = value
            if target and value["target"] == target and not printing:
                picture = _waterfall_of(url, value) or picture
            if printing:
                console.print(_line(value), soft_wrap=True, highlight=False)
        elif kind == "connected":
            connected = True
            status = Text("live", "green")
            if printing:
                console.print(f"connected to {value}", highlight=False)
        elif kind == "polling":
            status = Text(value, "yellow")
        else:
            status = Text(f"disconnected ({value}); reconnecting", "bold red")
            if printing:
                console.print(f"disconnected from {url}: {value}; reconnecting", highlight=False)

    def remaining() -> float:
        return (
            interval_s if stop_at is None else max(0.0, min(interval_s, stop_at - time.monotonic()))
        )

    def never_connected() -> int:
        if not connected:
            console.print(f"never reached the exporter at {url}", style="red")
            return 1
        return 0

    try:
        if console.is_terminal:
            with Live(view(), console=console) as live:
                while stop_at is None or time.monotonic() < stop_at:
                    with contextlib.suppress(queue.Empty):
                        handle(*events.get(timeout=remaining()), printing=False)
                    live.update(view())
        else:
            while stop_at is None or time.monotonic() < stop_at:
                with contextlib.suppress(queue.Empty):
                    handle(*events.get(timeout=remaining()), printing=True)
    except NotAnExporter as exc:
        return _not_an_exporter(console, url, exc)
    except KeyboardInterrupt:
        return never_connected()
    return never_connected()
