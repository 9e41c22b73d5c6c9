"""`/-/events`, `/-/probes/<id>.svg` and `watch` against the real daemon probing real `langgraph dev`."""

from __future__ import annotations

import os
import queue
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.support.daemon import DaemonProcess

pytestmark = pytest.mark.integration

SECRET = "simulated provider failure"  # the demo `boom` model's error message contains it


def config(url: str) -> dict[str, object]:
    return {
        "defaults": {"interval": "1h"},  # probes come from /probe only
        "targets": [
            {"name": "parallel", "url": url, "assistant_id": "parallel"},
            {"name": "nested", "url": url, "assistant_id": "nested"},
            {"name": "boom", "url": url, "assistant_id": "boom", "api_key_env": "PICTURES_KEY"},
        ],
    }


class EventStream:
    """A `curl -N` of `/-/events`: a thread reads raw lines; `next()` returns parsed events."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.comments: list[str] = []
        self._client = httpx.Client(timeout=httpx.Timeout(5.0, read=10.0))
        self.response = self._client.send(
            self._client.build_request("GET", url + "/-/events", headers=headers), stream=True
        )
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        event: dict[str, Any] = {}
        try:
            for line in self.response.iter_lines():
                if line.startswith(":"):
                    self.comments.append(line)
                elif not line:
                    if "data" in event:  # as in the SSE spec: no data, no event
                        self.events.put(event)
                    event = {}
                else:
                    key, _, value = line.partition(": ")
                    event[key] = value
        except (httpx.HTTPError, RuntimeError):
            pass

    def next(self, timeout_s: float = 30) -> dict[str, Any]:
        return self.events.get(timeout=timeout_s)

    def close(self) -> None:
        self.response.close()
        self._client.close()


@pytest.fixture
def daemon(langgraph_server: str, tmp_path: Path):
    env = {"LGSE_EVENTS_HEARTBEAT_S": "0.2", "LGSE_EVENTS_MAX_SUBSCRIBERS": "3",
           "PICTURES_KEY": SECRET}  # fmt: skip
    with DaemonProcess(config(langgraph_server), tmp_path, env=env, lifecycle=True) as d:
        yield d


def test_one_event_per_finished_probe_same_json_as_probes(daemon: DaemonProcess) -> None:
    """Each finished probe is one `probe` event whose data is its `/-/probes` entry, ids count
    up by one, and idle streams carry heartbeat comments."""
    stream = EventStream(daemon.url)
    try:
        assert stream.response.status_code == 200
        assert stream.response.headers["content-type"].startswith("text/event-stream")
        for name in ("parallel", "nested"):
            assert daemon.get("/probe", params={"target": name}).status_code == 200
        recent = daemon.get("/-/probes").json()["recent"]
        got = [stream.next() for _ in recent]
        time.sleep(0.5)  # idle: heartbeats only, no other event
        assert stream.events.empty(), "an event without a finished probe"
        assert [e["event"] for e in got] == ["probe"] * len(recent)
        seqs = [int(e["id"].rpartition("-")[2]) for e in got]
        assert seqs == list(range(seqs[0], seqs[0] + len(got)))
        assert [orjson.loads(e["data"]) for e in got] == list(reversed(recent))
        assert ": heartbeat" in stream.comments
    finally:
        stream.close()


def test_resume_with_last_event_id(daemon: DaemonProcess) -> None:
    """A client that comes back with Last-Event-ID gets exactly the events it missed."""
    stream = EventStream(daemon.url)
    daemon.get("/probe", params={"target": "parallel"})
    first = stream.next()
    stream.close()
    daemon.get("/probe", params={"target": "nested"})
    daemon.get("/probe", params={"target": "parallel"})
    again = EventStream(daemon.url, headers={"Last-Event-ID": first["id"]})
    try:
        missed = [orjson.loads(again.next(5)["data"])["target"] for _ in range(2)]
        assert missed == ["nested", "parallel"]
        time.sleep(0.3)
        assert again.events.empty()
    finally:
        again.close()


def test_subscribers_beyond_the_limit_get_503(daemon: DaemonProcess) -> None:
    """LGSE_EVENTS_MAX_SUBSCRIBERS=3: the fourth stream is refused with 503 and Retry-After."""
    streams = [EventStream(daemon.url) for _ in range(3)]
    try:
        assert [s.response.status_code for s in streams] == [200, 200, 200]
        extra = EventStream(daemon.url)
        assert extra.response.status_code == 503 and extra.response.headers["retry-after"]
        extra.close()
    finally:
        for s in streams:
            s.close()


def test_secrets_are_masked_in_events(daemon: DaemonProcess) -> None:
    """A failure message holding a target's secret reaches the stream as ***."""
    stream = EventStream(daemon.url)
    try:
        daemon.get("/probe", params={"target": "boom"})
        data = stream.next()["data"]
        assert SECRET not in data and "***" in orjson.loads(data)["error"]
    finally:
        stream.close()


def test_svg_of_a_kept_result_and_of_a_probe_now(daemon: DaemonProcess) -> None:
    """`/-/probes/<trace id>.svg` draws a kept result, `latest.svg?target=` redirects to it,
    `/probe?format=svg` probes and draws; unknown ids are 404. Scripts are forbidden by CSP."""
    result = daemon.get("/probe", params={"target": "nested"}).json()
    svg = daemon.get(f"/-/probes/{result['trace_id']}.svg")
    assert svg.status_code == 200 and svg.headers["content-type"] == "image/svg+xml"
    assert "default-src 'none'" in svg.headers["content-security-policy"]
    assert "research/inner_agent" in svg.text and result["run_id"] in svg.text
    latest = daemon.get("/-/probes/latest.svg", params={"target": "nested"})
    assert latest.status_code == 302
    assert latest.headers["location"] == f"/-/probes/{result['trace_id']}.svg"
    fresh = daemon.get("/probe", params={"target": "parallel", "format": "svg"})
    assert fresh.status_code == 200 and "writer_a" in fresh.text and fresh.text.startswith("<?xml")
    assert daemon.get("/-/probes/" + "0" * 32 + ".svg").status_code == 404
    assert daemon.get("/probe", params={"target": "nope", "format": "svg"}).status_code == 404


def _stall(url: str) -> socket.socket:
    """Open `/-/events` and never read: the kernel buffers fill, then the daemon's queue."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(b"GET /-/events HTTP/1.1\r\nHost: x\r\n\r\n")
    return sock


def _writer_itl_s(daemon: DaemonProcess, runs: int) -> list[float]:
    gaps: list[float] = []
    for _ in range(runs):
        result = daemon.get("/probe", params={"target": "parallel"}).json()
        assert result["outcome"] == "success"
        for node in result["nodes"]:
            if node["node"] == "writer_a":
                gaps += [g for c in node["calls"] for g in c["itl_s"]]
    return gaps


@pytest.mark.timing
def test_stalled_subscribers_do_not_change_itl(daemon: DaemonProcess) -> None:
    """ITL of `writer_a` (30 ms apart at the source) is the same with the subscriber limit
    filled by clients that never read as without them."""
    _writer_itl_s(daemon, 1)  # warm-up
    without = statistics.median(_writer_itl_s(daemon, 3))
    stalled = [_stall(daemon.url) for _ in range(3)]
    try:
        with_stalled = statistics.median(_writer_itl_s(daemon, 3))
        assert daemon.get("/-/probes").json()["events"]["subscribers"] == 3
    finally:
        for sock in stalled:
            sock.close()
    assert with_stalled >= 0.030 * 0.9, (
        f"ITL p50 with stalled subscribers {with_stalled * 1000:.2f} ms"
    )
    assert abs(with_stalled - without) < 0.005, (
        f"ITL p50 writer_a: {without * 1000:.2f} ms without, {with_stalled * 1000:.2f} ms"
        " with 3 stalled /-/events subscribers"
    )


def test_watch_reconnects_to_a_restarted_daemon_and_resumes(daemon: DaemonProcess) -> None:
    """Piped `watch` prints a line per probe, says when the daemon went away, reconnects to the
    restarted daemon by itself and prints the probes made after the restart."""
    before = daemon.get("/probe", params={"target": "parallel"}).json()["trace_id"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter", "watch", "--url", daemon.url, "--duration", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "COLUMNS": "300"},
    )  # fmt: skip
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(x) for x in proc.stdout], daemon=True).start()  # type: ignore[union-attr]

    def wait_for(text: str, timeout_s: float = 30) -> list[str]:
        seen: list[str] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                seen.append(lines.get(timeout=0.5))
            except queue.Empty:
                continue
            if text in seen[-1]:
                return seen
        raise AssertionError(f"watch never printed {text!r}; printed {seen!r}")

    try:
        wait_for("connected to")
        daemon.get("/probe", params={"target": "nested"})
        wait_for("nested")
        daemon.stop()
        wait_for("disconnected from")
        daemon.start()
        after = daemon.get("/probe", params={"target": "nested"}).json()["trace_id"]
        printed = wait_for(after)
        assert any("connected to" in line for line in printed), printed
        assert before not in "".join(printed)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()  # type: ignore[union-attr]


def test_sigterm_stops_the_daemon_while_an_event_stream_is_open(
    langgraph_server: str, tmp_path: Path
) -> None:
    """An open `/-/events` client (a `watch`) must not hold the daemon past its grace period:
    SIGTERM ends the stream and the process exits 0 (it once stayed up until the last client
    left)."""
    import signal

    env = {"LGSE_GRACE_PERIOD_S": "2"}
    with DaemonProcess(config(langgraph_server), tmp_path, env=env) as d:
        stream = EventStream(d.url)
        try:
            assert stream.response.status_code == 200
            t0 = time.monotonic()
            d.signal(signal.SIGTERM)
            code = d.wait(timeout_s=15)
            took = time.monotonic() - t0
        finally:
            stream.close()
    assert code == 0, d.log()
    assert took < 5, f"exit took {took:.1f} s after SIGTERM with a stream open"
