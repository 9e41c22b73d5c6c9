"""Fixtures for the ship tests: the real tools from .tools/bin, and rendered chart output.

The tools are installed by `make tools` (scripts/install-tools.sh), which `make pytest` runs
first; a missing tool is an error here, never a skip.
"""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from . import paths

Render = Callable[..., list[dict[str, Any]]]


@pytest.fixture(scope="session")
def helm() -> Path:
    """The helm binary."""
    return paths.tool("helm")


@pytest.fixture(scope="session")
def promtool() -> Path:
    """The promtool binary."""
    return paths.tool("promtool")


@pytest.fixture(scope="session")
def prometheus_bin() -> Path:
    """The prometheus server binary."""
    return paths.tool("prometheus")


@pytest.fixture(scope="session")
def hadolint() -> Path:
    """The hadolint binary."""
    return paths.tool("hadolint")


def run(cmd: Sequence[str | Path], *, cwd: Path = paths.REPO) -> subprocess.CompletedProcess[str]:
    """Run a command, capturing text output; the caller asserts on the return code."""
    return subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, cwd=cwd, check=False
    )


@pytest.fixture(scope="session")
def render(helm: Path) -> Render:
    """Render the chart with `helm template` (extra args as given) into a list of manifests."""

    def _render(*args: str) -> list[dict[str, Any]]:
        proc = run([helm, "template", "lgse", paths.CHART, "--namespace", "monitoring", *args])
        assert proc.returncode == 0, proc.stderr
        return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]

    return _render


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """The manifests of one kind."""
    return [doc for doc in docs if doc["kind"] == kind]


def only(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The single manifest of one kind."""
    (doc,) = by_kind(docs, kind)
    return doc


def container(deployment: dict[str, Any], name: str = "exporter") -> dict[str, Any]:
    """A container of a Deployment's pod template, by name."""
    containers: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    (found,) = [c for c in containers if c["name"] == name]
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def empty_prometheus(
    prometheus_bin: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A real Prometheus on 127.0.0.1 with no scrape targets; yields its base URL.

    Every PromQL expression can be run against it: a syntax or type error comes back as an error,
    a valid query as an empty result.
    """
    workdir = tmp_path_factory.mktemp("prometheus")
    config = workdir / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1m\nscrape_configs: []\n")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = (workdir / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            str(prometheus_bin),
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(
                    f"prometheus did not become ready:\n{(workdir / 'prometheus.log').read_text()}"
                )
            time.sleep(0.1)  # readiness poll of a starting process, not a race fix
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
