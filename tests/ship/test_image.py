"""The image's install path, without a container engine: build the wheel as the Dockerfile's first
stage does, install it into a fresh venv as its second stage does, and run the console script."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from exporter import __version__

from . import paths


@dataclass(frozen=True)
class Image:
    """A venv built like /opt/venv in the image, and the environment the image sets."""

    venv: Path
    env: dict[str, str]
    installed: frozenset[Path]  # every file in the venv right after the install

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run the installed console script the way ENTRYPOINT does."""
        return subprocess.run(
            [str(self.venv / "bin" / "langgraph-stream-exporter"), *args],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.env["HOME"],
            timeout=60,
            check=False,
        )


def _files(root: Path) -> frozenset[Path]:
    return frozenset(p for p in root.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Image]:
    """Wheel built with `pip wheel --no-deps`, installed into a fresh venv (Dockerfile stage 2)."""
    root = tmp_path_factory.mktemp("image")
    wheels = root / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--wheel-dir",
            str(wheels),
            str(paths.REPO),
        ],
        check=True,
        capture_output=True,
    )
    venv = root / "opt-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    (wheel,) = wheels.glob("*.whl")
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", "--no-cache-dir", str(wheel)],
        check=True,
        capture_output=True,
    )
    home = root / "tmp"  # the image's HOME=/tmp, the only writable path
    home.mkdir()
    env = {
        "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "HOME": str(home),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
    }
    yield Image(venv, env, _files(venv))


def test_console_script_prints_the_version(image: Image) -> None:
    """`langgraph-stream-exporter --version` from the clean venv prints the package version."""
    proc = image.run("--version")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"langgraph-stream-exporter {__version__}"


def test_check_config_accepts_the_baked_default_config(image: Image) -> None:
    """`check-config config/default.yaml` (the file the image bakes in) exits 0."""
    proc = image.run("check-config", str(paths.REPO / "config" / "default.yaml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_check_config_rejects_an_invalid_file(image: Image, tmp_path: Path) -> None:
    """`check-config` exits 1 on a targets file with an unknown key."""
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "targets:\n  - name: x\n    url: http://127.0.0.1:1\n    assistant_id: a\n    bogus: 1\n"
    )
    assert image.run("check-config", str(bad)).returncode == 1


def test_running_the_cli_writes_nothing_into_the_venv(image: Image) -> None:
    """With PYTHONDONTWRITEBYTECODE the installed tree stays unchanged (read-only root fs)."""
    image.run("--version")
    image.run("check-config", str(paths.REPO / "config" / "default.yaml"))
    assert _files(image.venv) == image.installed
