"""Daemon lifecycle against real `langgraph dev`: reload (HTTP and SIGHUP), shutdown, /probe."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.daemon import DaemonProcess
from tests.support.otlp_receiver import OTLPReceiver

pytestmark = pytest.mark.integration


def target(name: str, url: str, graph: str = "agent", **extra: Any) -> dict[str, Any]:
    return {"name": name, "url": url, "assistant_id": graph, "interval": "1h",
            "protocol": "legacy", **extra}  # fmt: skip


def series_targets(daemon: DaemonProcess) -> set[str]:
    names = set()
    for family in text_string_to_metric_families(daemon.get("/metrics").text):
        for sample in family.samples:
            if "target" in sample.labels:
                names.add(sample.labels["target"])
    return names


def gauge(daemon: DaemonProcess, name: str) -> float | None:
    for family in text_string_to_metric_families(daemon.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name:
                return float(sample.value)
    return None


def test_reload_adds_and_removes_targets(langgraph_server: str, tmp_path: Path) -> None:
    """A valid reload starts new targets and makes every series of removed ones vanish."""
    cfg = {"targets": [target("a", langgraph_server), target("b", langgraph_server)]}
    with DaemonProcess(cfg, tmp_path, lifecycle=True) as daemon:
        assert daemon.get("/probe", params={"target": "b"}).json()["outcome"] == "success"
        assert series_targets(daemon) == {"a", "b"}
        daemon.write_config(
            {"targets": [target("a", langgraph_server), target("c", langgraph_server)]}
        )
        r = daemon.post("/-/reload")
        assert r.status_code == 200, r.text
        assert series_targets(daemon) == {"a", "c"}
        assert daemon.get("/probe", params={"target": "b"}).status_code == 404
        assert gauge(daemon, "langgraph_probe_config_last_reload_successful") == 1.0


def test_invalid_reload_keeps_the_old_config(langgraph_server: str, tmp_path: Path) -> None:
    """An invalid file: 500 naming the problem, old targets still probed, reload gauge 0."""
    cfg = {"targets": [target("a", langgraph_server)]}
    with DaemonProcess(cfg, tmp_path, lifecycle=True) as daemon:
        daemon.write_config(
            "targets:\n  - name: a\n    url: http://x\n    assistant_id: g\n    intervall: 5s\n"
        )
        r = daemon.post("/-/reload")
        assert r.status_code == 500
        assert "targets[0].intervall: unknown key" in r.text
        assert gauge(daemon, "langgraph_probe_config_last_reload_successful") == 0.0
        assert daemon.get("/probe", params={"target": "a"}).json()["outcome"] == "success"
        assert "config_reload_failed" in daemon.log()


def test_sighup_reloads(langgraph_server: str, tmp_path: Path) -> None:
    """SIGHUP reloads the file like POST /-/reload does."""
    with DaemonProcess({"targets": [target("a", langgraph_server)]}, tmp_path) as daemon:
        daemon.write_config({"targets": [target("z", langgraph_server)]})
        daemon.signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while series_targets(daemon) != {"z"} and time.monotonic() < deadline:
            time.sleep(0.1)
        assert series_targets(daemon) == {"z"}


def test_sigterm_lets_a_running_probe_finish_and_flushes_its_span(
    langgraph_server: str, tmp_path: Path
) -> None:
    """1. a probe is in flight (2 s to first token)  2. SIGTERM  Result: it finishes,
    its span reaches the receiver, the process exits 0."""
    slow = target("slowish", langgraph_server,
                  config={"configurable": {"first_token_s": 2.0}})  # fmt: skip
    with OTLPReceiver() as rx:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": rx.http_endpoint,
               "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}  # fmt: skip
        daemon = DaemonProcess({"targets": [slow]}, tmp_path, env=env, lifecycle=True).start()
        try:
            answers: list[httpx.Response] = []
            caller = threading.Thread(
                target=lambda: answers.append(daemon.get("/probe", params={"target": "slowish"}))
            )
            caller.start()
            deadline = time.monotonic() + 10
            while gauge(daemon, "langgraph_probe_probes_in_flight") != 1.0:
                assert time.monotonic() < deadline, "probe never started"
                time.sleep(0.05)
            daemon.signal(signal.SIGTERM)
            assert daemon.wait(timeout_s=20) == 0
            caller.join(timeout=5)
            assert answers and answers[0].json()["outcome"] == "success"
            (root,) = [s for s in rx.spans() if not s.parent_span_id]
            assert root.trace_id == answers[0].json()["trace_id"]
        finally:
            daemon.stop()


def test_probe_endpoint_refuses_anything_but_a_configured_name(
    langgraph_server: str, tmp_path: Path
) -> None:
    """Unknown names and URLs are 404, empty or missing values 400; never an open proxy."""
    cfg = {"targets": [target("a", langgraph_server)]}
    with DaemonProcess(cfg, tmp_path, lifecycle=True) as daemon:
        assert daemon.get("/probe", params={"target": "nope"}).status_code == 404
        assert daemon.get("/probe", params={"target": langgraph_server}).status_code == 404
        assert daemon.get("/probe", params={"target": ""}).status_code == 400
        assert daemon.get("/probe").status_code == 400
        debug = daemon.get("/probe", params={"target": "a", "debug": "true"}).json()
        assert debug["log"] and debug["target_config"]["name"] == "a"


def test_invalid_config_at_start_exits_1_naming_file_and_key(tmp_path: Path) -> None:
    """Start with a bad file: exit 1, the file and the key path on stderr."""
    daemon = DaemonProcess(
        {"targets": [{"name": "a", "url": "ftp://x", "assistant_id": "g"}]}, tmp_path
    )
    with pytest.raises(RuntimeError, match=r"config.yaml: targets\[0\].url"):
        daemon.start()
    assert daemon.proc is not None and daemon.proc.returncode == 1
