"""The Dockerfile: hadolint-clean, and the runtime contract the chart relies on."""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path

from . import paths
from .conftest import run


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", paths.DOCKERFILE.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, args = line.partition(" ")
            pairs.append((keyword.upper(), args.strip()))
    return pairs


def _final_stage() -> list[tuple[str, str]]:
    instructions = _instructions()
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


def _args(keyword: str) -> list[str]:
    return [args for kw, args in _final_stage() if kw == keyword]


def test_hadolint_passes(hadolint: Path) -> None:
    """hadolint reports nothing on the Dockerfile."""
    proc = run([hadolint, paths.DOCKERFILE])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_both_stages_use_python_311_slim() -> None:
    """The build and the runtime stage start from python:3.11-slim."""
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", paths.DOCKERFILE.read_text(), re.MULTILINE)
    froms = [args.split()[0] for kw, args in _instructions() if kw == "FROM"]
    assert base is not None
    assert base.group(1).startswith("python:3.11-slim")
    assert froms == ["${PYTHON_IMAGE}", "${PYTHON_IMAGE}"]


def test_build_stage_builds_the_wheel_without_dependencies() -> None:
    """Stage 1 runs `pip wheel --no-deps`; stage 2 installs the wheel into /opt/venv."""
    runs = [args for kw, args in _instructions() if kw == "RUN"]
    assert any("pip wheel" in r and "--no-deps" in r for r in runs)
    assert any(
        "python -m venv /opt/venv" in r and "/opt/venv/bin/pip install" in r for r in _args("RUN")
    )


def test_runtime_runs_as_uid_1000() -> None:
    """The final USER is uid 1000, the chart's runAsUser."""
    assert _args("USER")[-1].split(":")[0] == "1000"


def test_runtime_writes_no_bytecode() -> None:
    """PYTHONDONTWRITEBYTECODE=1 is set, so a read-only root fs is fine."""
    assert any("PYTHONDONTWRITEBYTECODE=1" in env for env in _args("ENV"))


def test_entrypoint_cmd_and_port() -> None:
    """ENTRYPOINT is the console script, CMD runs the baked config, and 9465 is exposed."""
    assert json.loads(_args("ENTRYPOINT")[-1]) == ["langgraph-stream-exporter"]
    assert json.loads(_args("CMD")[-1]) == [
        "run",
        "--config",
        "/etc/langgraph-stream-exporter/config.yaml",
    ]
    assert _args("EXPOSE") == ["9465"]


def test_default_config_is_copied_to_the_cmd_path() -> None:
    """config/default.yaml is copied to the path CMD reads."""
    assert "config/default.yaml /etc/langgraph-stream-exporter/config.yaml" in _args("COPY")


def test_oci_labels_are_set() -> None:
    """The image carries the OCI title, description, version, revision and licence labels."""
    labels = " ".join(_args("LABEL"))
    for key in ("title", "description", "version", "revision", "licenses"):
        assert f"org.opencontainers.image.{key}=" in labels


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        bare = pattern.removeprefix("!").rstrip("/")
        if fnmatch.fnmatch(path, bare) or path.startswith(bare + "/"):
            ignored = not negate
    return ignored


def test_dockerignore_lets_in_everything_the_dockerfile_copies() -> None:
    """Every file a COPY takes from the build context survives .dockerignore."""
    patterns = [
        line.strip()
        for line in (paths.REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = []
    for keyword, args in _instructions():
        if keyword == "COPY" and "--from=" not in args:
            sources += args.split()[:-1]
    files = [
        str(p.relative_to(paths.REPO))
        for source in sources
        for p in (
            [paths.REPO / source]
            if (paths.REPO / source).is_file()
            else (paths.REPO / source).rglob("*.py")
        )
    ]
    assert files
    assert [f for f in files if _ignored(f, patterns)] == []


def test_dockerignore_keeps_the_venvs_and_tools_out() -> None:
    """.venv, .tools, tests and the chart are not sent to the Docker daemon."""
    patterns = [
        line.strip()
        for line in (paths.REPO / ".dockerignore").read_text().splitlines()
        if line.strip()
    ]
    for path in (
        ".venv/bin/python",
        ".tools/bin/helm",
        "tests/conftest.py",
        "helm/langgraph-stream-exporter/Chart.yaml",
    ):
        assert _ignored(path, patterns), path
