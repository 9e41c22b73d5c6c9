"""Shared fixtures: the anyio backend and a real `langgraph dev` server running the demo project."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

pytest_plugins: list[str] = []


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Proxy and OTel settings from the caller's shell must not leak into tests (httpx's clean_environ)."""
    for name in list(os.environ):
        if name.lower().endswith("_proxy") or name.startswith("OTEL_"):
            monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def langgraph_server() -> Iterator[str]:
    """A real `langgraph dev` serving demo/, on a free loopback port, for the whole session."""
    from devserver import DevServer  # demo/devserver.py, stdlib only

    with DevServer() as server:
        yield server.url
