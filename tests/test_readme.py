"""The README a newcomer follows: its "Try it" steps run as written, `make help` lists every
target, the README's Develop table names them all, and the LICENSE the package declares exists."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.support.daemon import free_port

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
MAKEFILES = [REPO / "Makefile", *sorted((REPO / "mk").glob("*.mk"))]
DEMO_URL = "http://127.0.0.1:2024"
CLI = ".venv/bin/langgraph-stream-exporter"


def _make_targets() -> set[str]:
    """Every explicit target of the Makefile and mk/*.mk (not file targets like $(VENV_STAMP))."""
    names: set[str] = set()
    for path in MAKEFILES:
        for match in re.finditer(r"^([a-zA-Z][\w.-]*)\s*:(?!=)", path.read_text(), re.M):
            names.add(match[1])
    return names


def _make_help() -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    proc = subprocess.run(
        ["make", "--no-print-directory", "help"],
        cwd=REPO, capture_output=True, text=True, check=True, env=env,
    )  # fmt: skip
    return proc.stdout


def test_make_help_lists_every_target() -> None:
    """`make help` names every target defined in Makefile and mk/*.mk, each with a description."""
    listed = dict(re.findall(r"^\s+make (\S+)\s+(.+)$", _make_help(), re.M))
    assert set(listed) == _make_targets()
    assert all(text.strip() for text in listed.values())


def test_readme_names_every_make_target() -> None:
    """The README's Develop section mentions `make X` for every target."""
    develop = README[README.index("## Develop") :]
    missing = sorted(t for t in _make_targets() if f"`make {t}" not in develop)
    assert not missing


def test_license_file_is_the_apache_2_text() -> None:
    """LICENSE holds the Apache License 2.0 that pyproject.toml declares."""
    text = (REPO / "LICENSE").read_text()
    assert "Apache License\n                           Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert 'license = "Apache-2.0"' in (REPO / "pyproject.toml").read_text()


def _try_it() -> str:
    return README[README.index("## Try it") : README.index("## Use it")]


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", _try_it(), re.S)


def _commands() -> list[str]:
    lines = [line.strip() for block in _blocks("sh") for line in block.splitlines()]
    return [line.split("  #")[0].strip() for line in lines if line]


def test_try_it_starts_the_devserver_on_the_port_the_other_steps_use() -> None:
    """The devserver step asks for the port every later step talks to, and says its URL."""
    commands = _commands()
    assert 'make devserver DEVSERVER_ARGS="--port 2024"' in commands
    assert "source .venv/bin/activate" in commands
    probe = [c for c in commands if c.startswith(f"{CLI} probe")]
    assert probe
    assert f"--url {DEMO_URL}" in probe[0]
    (targets,) = _blocks("yaml")
    assert f"url: {DEMO_URL}" in targets


@pytest.mark.integration
@pytest.mark.slow
def test_try_it_steps_work_as_written(langgraph_server: str, tmp_path: Path) -> None:
    """Against a real `langgraph dev`: the README's probe exits 0, its targets file passes
    check-config, and its daemon serves a successful probe of that file's target on /metrics
    and on the / page."""
    (targets_yaml,) = _blocks("yaml")
    targets = tmp_path / "my-targets.yaml"
    targets.write_text(targets_yaml.replace(DEMO_URL, langgraph_server))
    port = free_port()

    def argv(command: str) -> list[str]:
        command = command.replace(DEMO_URL, langgraph_server).replace(
            "my-targets.yaml", str(targets)
        )
        return shlex.split(command.replace("127.0.0.1:9465", f"127.0.0.1:{port}"))

    commands = [c for c in _commands() if c.startswith(CLI)]
    for command in commands:
        if f"{CLI} run" in command:
            continue
        proc = subprocess.run(argv(command), cwd=REPO, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"{command}\n{proc.stdout}\n{proc.stderr}"
    (run,) = [c for c in commands if f"{CLI} run" in c]
    daemon = subprocess.Popen(
        argv(run), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60  # the first probe lands within one 15 s interval
        success = ""
        while time.monotonic() < deadline and not success:
            try:
                text = httpx.get(base + "/metrics", timeout=5).text
            except httpx.TransportError:
                text = ""
            success = "\n".join(
                line for line in text.splitlines() if line.startswith("langgraph_probe_success")
            )
            if not success:
                time.sleep(0.5)  # polling a scheduled probe, not a race fix
        assert 'target="demo-agent"' in success
        assert success.endswith(" 1.0")
        assert "demo-agent" in httpx.get(base + "/", timeout=5).text
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
