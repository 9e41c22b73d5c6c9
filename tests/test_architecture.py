"""The layout's rules that import-linter cannot state: every module sits in a layer, and the
default install carries only what runs (the comparison transport is an optional extra)."""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _modules() -> list[str]:
    """Every module of the `exporter` package, dotted (`exporter.core.sse`, `exporter.http`)."""
    out = []
    for path in sorted((ROOT / "exporter").rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out.append(".".join(parts))
    return out


def _top_layers() -> list[str]:
    """Names in the top-level layers contract (the one without `containers`)."""
    contracts = PYPROJECT["tool"]["importlinter"]["contracts"]
    top = [c for c in contracts if c["type"] == "layers" and "containers" not in c]
    assert len(top) == 1, "expected one top-level layers contract"
    return [name.strip() for layer in top[0]["layers"] for name in layer.split("|")]


def test_every_module_is_in_the_layers_contract() -> None:
    """A module outside every layer escapes the contracts: each must be named or inside a
    package that is named (`exporter.core` covers `exporter.core.sse`)."""
    named = _top_layers()
    outside = [
        m
        for m in _modules()
        if m != "exporter" and not any(m == n or m.startswith(n + ".") for n in named)
    ]
    assert outside == [], f"modules in no layer of pyproject.toml: {outside}"


def test_every_submodule_is_in_its_package_contract() -> None:
    """Inside a package that has its own layers contract, every module is one of its layers."""
    contracts = PYPROJECT["tool"]["importlinter"]["contracts"]
    missing = []
    for c in contracts:
        if c["type"] != "layers" or "containers" not in c:
            continue
        names = {n.strip() for layer in c["layers"] for n in layer.split("|")}
        for container in c["containers"]:
            prefix = container + "."
            missing += [
                m
                for m in _modules()
                if m.startswith(prefix) and m.removeprefix(prefix).split(".")[0] not in names
            ]
    assert missing == [], f"modules in no layer of their package's contract: {missing}"


def test_default_install_has_no_comparison_transport() -> None:
    """aiohttp and httpx-aiohttp are in the `[compare]` extra only."""
    deps = " ".join(PYPROJECT["project"]["dependencies"])
    compare = " ".join(PYPROJECT["project"]["optional-dependencies"]["compare"])
    assert "aiohttp" not in deps, deps
    assert "httpx-aiohttp" in compare and "aiohttp>=" in compare, compare


def test_aiohttp_transport_without_the_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the extra, choosing the aiohttp transport says which extra to install."""
    from exporter.http.client import make_client

    monkeypatch.setitem(sys.modules, "httpx_aiohttp", None)  # import now raises ImportError
    with pytest.raises(RuntimeError, match=r"\[compare\]"):
        make_client(transport="aiohttp")


def test_aiohttp_setting_without_the_extra_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`LGSE_TRANSPORT=aiohttp` without the extra fails at start, naming the variable."""
    from pydantic import ValidationError

    from exporter.config import Settings

    monkeypatch.setitem(sys.modules, "httpx_aiohttp", None)
    monkeypatch.setenv("LGSE_TRANSPORT", "aiohttp")
    with pytest.raises(ValidationError, match=r"LGSE_TRANSPORT=aiohttp needs the optional extra"):
        Settings()
