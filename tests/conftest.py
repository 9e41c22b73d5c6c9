"""Shared fixtures: the anyio backend and a real `langgraph dev` server running the demo project."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

#: The JS server's fixtures (`langgraph_js_dev`, `langgraph_js_server`) live in their own module.
pytest_plugins: list[str] = ["tests.support.js_server"]

#: The real LangGraph API servers every real-server suite runs against (docs/WIRE.md §16).
SERVER_KINDS = ("python", "js")


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
def langgraph_dev() -> Iterator[Any]:
    """A real `langgraph dev` serving demo/ on a free loopback port (a `DevServer`, whose
    `log_text()` is the server's own log), for the whole session."""
    from devserver import DevServer  # demo/devserver.py, stdlib only

    with DevServer() as server:
        yield server


@pytest.fixture(scope="session", params=SERVER_KINDS)
def langgraph(request: pytest.FixtureRequest) -> Any:
    """Each real LangGraph API server in turn: Python `langgraph dev` (a `DevServer`) and the
    LangGraph.js dev server (a `JsDevServer`), both serving the demo graphs (demo/, demo/js/).
    `.kind` says which. Each starts once per session, when a test first needs it."""
    name = "langgraph_dev" if request.param == "python" else "langgraph_js_dev"
    server = request.getfixturevalue(name)
    server.kind = request.param
    return server


@pytest.fixture(scope="session")
def langgraph_server(langgraph: Any) -> str:
    """Base URL of each real LangGraph API server in turn (see `langgraph`)."""
    return str(langgraph.url)


#: The demo graphs' configured gaps per node (demo/graphs.py), used by live assertions.
DEMO_GAPS_S = {
    "agent": 0.030,
    "writer_a": 0.030,
    "writer_b": 0.045,
    "research/inner_agent": 0.020,
    "answer": 0.030,
}


def demo_targets(url: str, interval: str = "3s") -> dict[str, object]:
    """A daemon config probing every demo graph on `url`."""
    weather = {"messages": [{"role": "human", "content": "what's the weather in sf?"}]}
    return {
        # Legacy: these tests assert the legacy protocol's node names (v2: tests/test_v2_*.py).
        "defaults": {"interval": interval, "input": weather, "labels": {"env": "test"},
                     "protocol": "legacy"},
        "targets": [
            {"name": "demo-agent", "url": url, "assistant_id": "agent",
             "expect": {"nodes": ["agent", "action"], "content_regex": "foggy"}},
            {"name": "demo-agent-thread", "url": url, "assistant_id": "agent", "mode": "thread"},
            {"name": "demo-parallel", "url": url, "assistant_id": "parallel"},
            {"name": "demo-nested", "url": url, "assistant_id": "nested"},
            {"name": "demo-boom", "url": url, "assistant_id": "boom"},
        ],
    }  # fmt: skip


@dataclass
class LiveStack:
    """Real langgraph dev + the daemon probing every demo graph + Prometheus scraping it."""

    langgraph_url: str
    daemon: Any
    prometheus: Any


@pytest.fixture(scope="session")
def live_stack(
    langgraph_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveStack]:
    from tests.support.daemon import DaemonProcess, Prometheus

    workdir = tmp_path_factory.mktemp("live")
    daemon = DaemonProcess(demo_targets(langgraph_server), workdir).start()
    prometheus = Prometheus(daemon.url, workdir).start()
    try:
        # Wait until every demo LLM node has ITL observations in two scrapes (rate() needs two).
        for node in DEMO_GAPS_S:
            query = (
                "increase(langgraph_probe_inter_token_latency_seconds_count"
                f'{{node="{node}"}}[1m]) > 0'
            )
            if not prometheus.wait_for(query, timeout_s=90):
                # Fail set-up here, loudly: otherwise every live test fails later on empty data.
                pytest.fail(
                    f"live_stack not ready: no ITL observations for node {node!r} in Prometheus "
                    f"within 90 s ({query}); daemon log tail:\n{daemon.log()[-3000:]}"
                )
        yield LiveStack(langgraph_server, daemon, prometheus)
    finally:
        prometheus.stop()
        daemon.stop()


@pytest.fixture(scope="session")
def live_prometheus_url(live_stack: LiveStack) -> str:
    """Base URL of a real Prometheus that has scraped the daemon probing the demo graphs."""
    return str(live_stack.prometheus.url)
