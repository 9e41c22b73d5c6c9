"""The daemon an operator starts: a missing secret is said at load and in each probe, a busy port
is one line before anything is scheduled, bad or unknown `LGSE_*` variables are named, and a
closed log pipe never stops shutdown, readiness or probing. Real subprocesses on loopback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml

from tests.support.daemon import DaemonProcess, free_port

ROOT = Path(__file__).parent.parent


def unreachable_targets(**extra: Any) -> dict[str, Any]:
    """One target on a loopback port nothing listens on, probed rarely."""
    return {"targets": [{"name": "a", "url": f"http://127.0.0.1:{free_port()}",
                         "assistant_id": "agent", "interval": "1h", **extra}]}  # fmt: skip


def test_missing_secret_is_warned_at_load_and_fails_each_probe_naming_it(
    tmp_path: Path,
) -> None:
    """`api_key_env: NOT_SET`: a `secret_missing` warning at start naming the variable, and a
    probe fails with kind `config` and a message naming it (nothing is sent)."""
    config = unreachable_targets(api_key_env="OPTEST_NOT_SET")
    with DaemonProcess(config, tmp_path, lifecycle=True) as daemon:
        result = daemon.get("/probe?target=a").json()
        log = daemon.log()
    assert result["failure"]["kind"] == "config"
    assert "environment variable OPTEST_NOT_SET is not set" in result["failure"]["message"]
    warnings = [orjson.loads(line) for line in log.splitlines() if "secret_missing" in line]
    assert warnings and warnings[0]["level"] == "warning"
    assert "OPTEST_NOT_SET" in warnings[0]["problem"]


def test_busy_port_is_one_line_and_nothing_is_scheduled(tmp_path: Path) -> None:
    """Listening on a taken port: exit 1, exactly one line naming HOST:PORT and the reason, no
    traceback, and no probe ran (bind first, then schedule)."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"targets": [
        {"name": "a", "url": f"http://127.0.0.1:{free_port()}", "assistant_id": "agent",
         "interval": "100ms"}]}))  # fmt: skip
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "exporter", "run", "--config", str(config),
             "--listen", f"127.0.0.1:{port}"],
            capture_output=True, text=True, timeout=60,
            env={**os.environ, "LGSE_LOG_FORMAT": "json"},
        )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines() == [
        f"langgraph-stream-exporter: cannot listen on 127.0.0.1:{port}: address already in use"
    ]


def test_a_bad_setting_names_the_variable(tmp_path: Path) -> None:
    """`LGSE_LOG_LEVEL=verbose`: exit 2 with one line naming LGSE_LOG_LEVEL, no traceback."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(unreachable_targets()))
    proc = subprocess.run(
        [sys.executable, "-m", "exporter", "run", "--config", str(config),
         "--listen", f"127.0.0.1:{free_port()}"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "LGSE_LOG_LEVEL": "verbose"},
    )  # fmt: skip
    assert proc.returncode == 2
    (line,) = proc.stderr.splitlines()
    assert line.startswith("langgraph-stream-exporter: error: LGSE_LOG_LEVEL='verbose': ")


def test_an_unknown_setting_is_warned_with_a_suggestion(tmp_path: Path) -> None:
    """A misspelled `LGSE_LOG_FROMAT` is reported at start, suggesting LGSE_LOG_FORMAT."""
    with DaemonProcess(unreachable_targets(), tmp_path, env={"LGSE_LOG_FROMAT": "json"}) as d:
        log = d.log()
    lines = [orjson.loads(line) for line in log.splitlines() if "unknown_setting" in line]
    assert lines and "did you mean LGSE_LOG_FORMAT?" in lines[0]["problem"]


def test_grace_period_takes_a_duration(tmp_path: Path) -> None:
    """`LGSE_GRACE_PERIOD_S=1m` is 60 s (the same duration syntax as everywhere else)."""
    daemon = DaemonProcess(unreachable_targets(), tmp_path, env={"LGSE_GRACE_PERIOD_S": "1m"})
    with daemon:
        daemon.signal(signal.SIGTERM)
        assert daemon.wait() == 0
    (line,) = [orjson.loads(x) for x in daemon.log().splitlines() if "shutdown_requested" in x]
    assert line["grace_s"] == 60.0


def _sink_errors(url: str, sink: str) -> float:
    text = httpx.get(url + "/metrics", timeout=10).text
    for line in text.splitlines():
        if line.startswith(f'langgraph_probe_sink_errors_total{{sink="{sink}"}}'):
            return float(line.split()[-1])
    return 0.0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_closed_log_pipe_never_stops_shutdown_or_readiness(
    tmp_path: Path, sig: signal.Signals
) -> None:
    """stderr is a pipe whose reader is gone (`run … | cat`, cat killed): the daemon stays
    ready, counts the failed log writes, still probes, and stops on `sig` with exit 0."""
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(unreachable_targets()))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter", "run", "--config", str(config),
         "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env={**os.environ, "LGSE_LOG_FORMAT": "json", "LGSE_ORPHAN_SWEEP": "false",
             "LGSE_WEB_ENABLE_LIFECYCLE": "true"},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, "daemon exited before it was ready"
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "daemon not ready within 30 s"
            time.sleep(0.05)
        assert proc.stderr is not None
        proc.stderr.close()  # the reader is gone: every write to the pipe now fails (EPIPE)
        assert httpx.post(url + "/-/reload", timeout=10).status_code == 200  # logs a line
        probe = httpx.get(url + "/probe?target=a", timeout=30).json()  # logs a probe line
        assert probe["failure"]["kind"] == "connect"
        assert _sink_errors(url, "log") >= 2, "failed log writes are counted"
        assert httpx.get(url + "/readyz", timeout=5).status_code == 200
        proc.send_signal(sig)
        code = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 0
