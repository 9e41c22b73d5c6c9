"""`watch --url`: the exporter's base URL or its /metrics URL both work; something that is not
the exporter is named as such; never connecting is a failure (exit 1)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.daemon import DaemonProcess, free_port
from tests.support.scripted_server import ScriptedServer, body


def watch(url: str, duration: str = "2s") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", "watch", "--url", url, "--duration", duration],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_watch_accepts_the_metrics_url(tmp_path: Path) -> None:
    """`watch --url http://HOST:PORT/metrics` (the URL watch itself prints) reads the exporter
    and exits 0 after its duration."""
    config = {"targets": [{"name": "a", "url": f"http://127.0.0.1:{free_port()}",
                           "assistant_id": "agent", "interval": "1h"}]}  # fmt: skip
    with DaemonProcess(config, tmp_path, lifecycle=True) as daemon:
        daemon.get("/probe?target=a")  # one result to show
        proc = watch(daemon.url + "/metrics")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "cannot reach" not in proc.stdout and "404" not in proc.stdout
    assert "FAIL connect" in proc.stdout


def test_watch_of_something_else_says_it_is_not_an_exporter() -> None:
    """An HTTP server that is not the exporter (404 on /-/probes, as a LangGraph server
    answers): 'this is not an exporter', exit 1, at once."""

    async def main() -> subprocess.CompletedProcess[str]:
        async with ScriptedServer() as server:
            server.route("GET", "/-/probes", [body(404, {"detail": "Not Found"})])
            return await asyncio.to_thread(watch, server.url, "30s")

    proc = asyncio.run(main())
    assert proc.returncode == 1
    assert "this is not an exporter" in proc.stdout


def test_watch_that_never_connects_exits_1() -> None:
    """Nothing listens on the port: exit 1 after the duration, saying it never reached it."""
    proc = watch(f"http://127.0.0.1:{free_port()}", "1s")
    assert proc.returncode == 1
    assert "never reached the exporter" in proc.stdout


@pytest.mark.parametrize(
    ("given", "base"),
    [("http://h:9465", "http://h:9465"), ("http://h:9465/", "http://h:9465"),
     ("http://h:9465/metrics", "http://h:9465"), ("http://h:9465/metrics/", "http://h:9465")],
)  # fmt: skip
def test_base_url_of_what_users_paste(given: str, base: str) -> None:
    """Base URL or /metrics URL, with or without a trailing slash, give the base URL."""
    from exporter.watch import base_url

    assert base_url(given) == base
