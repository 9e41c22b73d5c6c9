"""Run the real exporter daemon as a subprocess on a free loopback port, for tests."""

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
import yaml


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class DaemonProcess:
    """`python -m exporter run` with a config written from a dict; stderr goes to a log file."""

    def __init__(
        self,
        config: dict[str, Any],
        workdir: Path,
        *,
        env: dict[str, str] | None = None,
    ) -> None:
        self.config_path = workdir / "config.yaml"
        self.log_path = workdir / "daemon.log"
        self.write_config(config)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # NOTE: the orphan sweep is off unless a test turns it on: it would send
        # `POST /threads/search` to every scripted server, whose request counts tests check.
        self._env = {
            **os.environ,
            "LGSE_LOG_FORMAT": "json",
            "LGSE_ORPHAN_SWEEP": "false",
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def write_config(self, config: dict[str, Any] | str) -> None:
        text = config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False)
        self.config_path.write_text(text)

    def start(self, timeout_s: float = 20.0) -> DaemonProcess:
        with self.log_path.open("ab") as log:  # the child keeps its own copy of the fd
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "exporter", "run", "--config", str(self.config_path),
                 "--listen", f"127.0.0.1:{self.port}"],
                stdout=log, stderr=subprocess.STDOUT, env=self._env,
            )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"daemon not ready within {timeout_s}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.get(self.url + path, timeout=kw.pop("timeout", 30), **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.post(self.url + path, timeout=kw.pop("timeout", 30), **kw)

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout_s: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout_s)

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def __enter__(self) -> DaemonProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Prometheus:
    """The real `prometheus` binary (installed by scripts/install-tools.sh) on loopback."""

    def __init__(
        self,
        scrape_url: str,
        workdir: Path,
        *,
        scrape_interval: str = "1s",
        extra_scrape_configs: list[dict[str, Any]] | None = None,
    ) -> None:
        root = Path(__file__).resolve().parents[2]
        self.binary = root / ".tools" / "bin" / "prometheus"
        if not self.binary.exists():
            raise RuntimeError(
                f"{self.binary} missing: run `make tools` (scripts/install-tools.sh)"
            )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        target = scrape_url.removeprefix("http://")
        self.config = workdir / "prometheus.yml"
        self.config.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": scrape_interval, "evaluation_interval": "1s"},
                    "scrape_configs": [
                        {
                            "job_name": "langgraph-stream-exporter",
                            "static_configs": [{"targets": [target]}],
                        },
                        *(extra_scrape_configs or []),
                    ],
                }
            )
        )
        self.data = workdir / "prom-data"
        self.log_path = workdir / "prometheus.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 30.0) -> Prometheus:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(self.binary), f"--config.file={self.config}",
                 f"--storage.tsdb.path={self.data}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--storage.tsdb.retention.time=1h"],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.log_path.read_text()[-2000:]}")
            try:
                if httpx.get(self.url + "/-/ready", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError("prometheus not ready")

    def query(self, promql: str) -> list[dict[str, Any]]:
        r = httpx.get(self.url + "/api/v1/query", params={"query": promql}, timeout=10)
        body = r.json()
        if body.get("status") != "success":
            raise AssertionError(f"{promql}: {body}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def wait_for(self, promql: str, timeout_s: float = 60.0) -> list[dict[str, Any]]:
        """Poll a query until it returns samples (Prometheus has no push notification)."""
        deadline = time.monotonic() + timeout_s
        while True:
            result = self.query(promql)
            if result or time.monotonic() > deadline:
                return result
            time.sleep(0.5)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
