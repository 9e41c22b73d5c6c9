"""`watch` against a real HTTP server serving the daemon's `/-/probes` shape."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from exporter.sinks.log import History
from exporter.watch import watch
from tests.test_sinks import result


@pytest.fixture
def probes_server() -> Iterator[tuple[str, dict[str, Any]]]:
    """A loopback server answering `/-/probes` with whatever the test puts in `page`."""
    page: dict[str, Any] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(page).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", page
    finally:
        server.shutdown()
        server.server_close()


def test_watch_shows_each_execution_of_a_node_that_ran_twice(
    probes_server: tuple[str, dict[str, Any]], capsys: pytest.CaptureFixture[str]
) -> None:
    """agent -> tools -> agent: the piped line names agent twice, tools once, in order."""
    url, page = probes_server
    history = History(5)
    history.record(result(nodes=("agent", "tools", "agent")))
    page["last"] = {"t": history.snapshot()["recent"][0]}
    assert watch(url, interval_s=0.05, duration_s=0.2) == 0
    line = capsys.readouterr().out
    nodes = [word.rstrip(":") for word in line.split() if word.endswith(":")]
    assert nodes == ["agent", "tools", "agent"], line


def test_watch_terminal_view_counts_one_target_in_the_singular(
    probes_server: tuple[str, dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a terminal, the view's head says `1 target`, not `1 targets`."""
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich draws the live view as on a terminal
    url, page = probes_server
    history = History(5)
    history.record(result(nodes=("agent",)))
    page["last"] = {"t": history.snapshot()["recent"][0]}
    assert watch(url, interval_s=0.05, duration_s=0.2) == 0
    out = capsys.readouterr().out
    assert f"{url} · 1 target · Ctrl-C to stop" in out, out
