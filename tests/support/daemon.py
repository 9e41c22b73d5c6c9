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
from prometheus_client.parser import text_string_to_metric_families


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class DaemonProcess:
    """`python -m exporter run` with a config written from a dict; stderr goes to a log file.

    `lifecycle`: serve `/probe` and `POST /-/reload` (LGSE_WEB_ENABLE_LIFECYCLE), off by default
    like the daemon. `web_config`: a web-config file (dict, written next to the config) passed
    with `--web.config.file`; the URL is https when it has `tls_server_config`. `client`: httpx
    keyword arguments (`verify`, `auth`, `cert`) for every request this helper makes.
    """

    def __init__(
        self,
        config: dict[str, Any],
        workdir: Path,
        *,
        env: dict[str, str] | None = None,
        lifecycle: bool = False,
        web_config: dict[str, Any] | None = None,
        client: dict[str, Any] | None = None,
    ) -> None:
        self.config_path = workdir / "config.yaml"
        self.log_path = workdir / "daemon.log"
        self.write_config(config)
        self.port = free_port()
        tls = bool(web_config and web_config.get("tls_server_config"))
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self.web_config_path: Path | None = None
        if web_config is not None:
            self.web_config_path = workdir / "web-config.yml"
            self.web_config_path.write_text(yaml.safe_dump(web_config, sort_keys=False))
        self.client = dict(client or {})
        lifecycle_env = {"LGSE_WEB_ENABLE_LIFECYCLE": "true"} if lifecycle else {}
        # NOTE: the orphan sweep is off unless a test turns it on: it would send
        # `POST /threads/search` to every scripted server, whose request counts tests check.
        self._env = {
            **os.environ,
            "LGSE_LOG_FORMAT": "json",
            "LGSE_ORPHAN_SWEEP": "false",
            **lifecycle_env,
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def write_config(self, config: dict[str, Any] | str) -> None:
        text = config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False)
        self.config_path.write_text(text)

    def start(self, timeout_s: float = 20.0) -> DaemonProcess:
        args = [sys.executable, "-m", "exporter", "run", "--config", str(self.config_path),
                "--listen", f"127.0.0.1:{self.port}"]  # fmt: skip
        if self.web_config_path is not None:
            args.append(f"--web.config.file={self.web_config_path}")
        with self.log_path.open("ab") as log:  # the child keeps its own copy of the fd
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=self._env)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited {self.proc.returncode}:\n{self.log()}")
            try:
                if self.get("/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()  # a daemon that never became ready must not outlive the test
        raise RuntimeError(f"daemon not ready within {timeout_s}s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.get(self.url + path, timeout=kw.pop("timeout", 30), **{**self.client, **kw})

    def post(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.post(self.url + path, timeout=kw.pop("timeout", 30), **{**self.client, **kw})

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
        scrape_config: dict[str, Any] | None = None,
        extra_jobs: list[dict[str, Any]] | None = None,
        extra_scrape_configs: list[dict[str, Any]] | None = None,
    ) -> None:
        """`scrape_config`: extra keys of the scrape job (`basic_auth`, `tls_config`); the
        scheme comes from `scrape_url`. `extra_jobs`: more jobs scraping `scrape_url` too (their
        own keys win). `extra_scrape_configs`: more jobs exactly as given."""
        root = Path(__file__).resolve().parents[2]
        self.binary = root / ".tools" / "bin" / "prometheus"
        if not self.binary.exists():
            raise RuntimeError(
                f"{self.binary} missing: run `make tools` (scripts/install-tools.sh)"
            )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        scheme, _, target = scrape_url.partition("://")
        self.config = workdir / "prometheus.yml"
        self.config.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": scrape_interval, "evaluation_interval": "1s"},
                    "scrape_configs": [
                        {
                            "job_name": "langgraph-stream-exporter",
                            "scheme": scheme,
                            "static_configs": [{"targets": [target]}],
                            **(scrape_config or {}),
                        },
                        *(
                            {"scheme": scheme, "static_configs": [{"targets": [target]}], **job}
                            for job in (extra_jobs or [])
                        ),
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

    def targets(self) -> list[dict[str, Any]]:
        """The active scrape targets (`health`, `lastError`, `scrapeUrl`, ...)."""
        r = httpx.get(self.url + "/api/v1/targets", params={"state": "active"}, timeout=10)
        active: list[dict[str, Any]] = r.json()["data"]["activeTargets"]
        return active

    def wait_for_scrapes(self, timeout_s: float = 30.0) -> dict[str, dict[str, Any]]:
        """Every active target by job name, once each has been scraped (health not unknown)."""
        deadline = time.monotonic() + timeout_s
        while True:
            by_job = {t["scrapePool"]: t for t in self.targets()}
            if by_job and all(t["health"] != "unknown" for t in by_job.values()):
                return by_job
            if time.monotonic() > deadline:
                raise AssertionError(f"not every target scraped within {timeout_s}s: {by_job}")
            time.sleep(0.2)  # Prometheus has no push notification


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample of metric `name` in a text exposition, keyed by its sorted labels."""
    out: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out
