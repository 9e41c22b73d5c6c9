"""scripts/install-tools.sh: idempotent, and every tool it installs runs."""

from __future__ import annotations

import subprocess
import time

import pytest

from . import paths


@pytest.mark.parametrize(
    ("tool", "version_args", "expected"),
    [
        ("prometheus", ["--version"], "prometheus, version 2."),
        ("promtool", ["--version"], "promtool, version 2."),
        ("helm", ["version", "--short"], "v3."),
        ("kubectl", ["version", "--client"], "Client Version: v1."),
        ("hadolint", ["--version"], "Haskell Dockerfile Linter"),
    ],
)
def test_installed_tool_runs(tool: str, version_args: list[str], expected: str) -> None:
    """Each tool in .tools/bin runs and reports the expected version line."""
    proc = subprocess.run(
        [str(paths.tool(tool)), *version_args], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert expected in proc.stdout + proc.stderr


def test_second_run_is_a_fast_no_op() -> None:
    """With every tool present, the script exits 0 quickly without fetching anything."""
    paths.tool("helm")  # installed by `make tools` before the tests
    started = time.monotonic()
    proc = subprocess.run(
        ["bash", str(paths.REPO / "scripts" / "install-tools.sh")],
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed_s = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    assert "npm pack" not in proc.stderr
    assert "apt-get" not in proc.stderr
    assert elapsed_s < 10  # tolerant: it takes about 0.1 s
