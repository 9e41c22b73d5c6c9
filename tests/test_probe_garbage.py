"""A probe leaves no reference cycle behind (docs/PERFORMANCE.md, "Daemon scale").

Everything a finished probe made must be freed by reference counting. A cycle is freed only
by the cycle collector, and its full passes scan every object the daemon holds (hundreds of
milliseconds at 1000 targets), blocking the loop that stamps reads; `runtime.py` freezes
long-lived objects on the assumption that probes make no cyclic garbage.
"""

from __future__ import annotations

import collections
import gc
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from exporter.config import Target
from exporter.probe import probe
from tests.support.scripted_server import (
    Script,
    ScriptedServer,
    body,
    close,
    hang,
    langgraph_stream,
    send,
)

pytestmark = pytest.mark.anyio

OURS = ("exporter.", "httpx", "httptools", "uvloop", "ssl")


TID = "7f3e0c8a-1b2d-4e5f-8a9b-0c1d2e3f4a5b"
OK = langgraph_stream(["agent", "tools"], tokens=3, first_token_s=0.01)


def target(url: str, **fields: Any) -> Target:
    timeout = {"connect": 2, "headers": 2, "first_event": 2, "first_token": 2, "idle": 1}
    return Target.model_validate(
        {"name": "gc", "url": url, "assistant_id": "agent", "timeout": {**timeout, "total": 1},
         **fields}
    )  # fmt: skip


def stateless(script: Script) -> Callable[[ScriptedServer], dict[str, Any]]:
    def setup(server: ScriptedServer) -> dict[str, Any]:
        server.route_stateless(script)
        return {}

    return setup


def thread(script: Script) -> Callable[[ScriptedServer], dict[str, Any]]:
    def setup(server: ScriptedServer) -> dict[str, Any]:
        server.route_thread(TID, script)
        return {"mode": "thread"}

    return setup


@pytest.fixture
def saved_garbage() -> Iterator[list[Any]]:
    """Collector off; what a collection finds unreachable is kept in `gc.garbage`."""
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    gc.garbage.clear()
    try:
        yield gc.garbage
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


def cyclic_garbage_of_ours(garbage: list[Any]) -> collections.Counter[str]:
    gc.collect()
    kinds = (f"{type(o).__module__}.{type(o).__qualname__}" for o in garbage)
    return collections.Counter(k for k in kinds if k.startswith(OURS))


@pytest.mark.parametrize(
    "setup",
    [
        pytest.param(stateless(OK), id="ok"),
        pytest.param(stateless([body(500, b'{"detail":"boom"}')]), id="http_500"),
        pytest.param(
            stateless([send(b"event: metadata\r\ndata: {}\r\n\r\n"), close()]), id="cut_mid_body"
        ),
        pytest.param(
            stateless([send(b"event: metadata\r\ndata: {}\r\n\r\n"), hang()]), id="deadline"
        ),
        pytest.param(thread(OK), id="thread_ok"),
        pytest.param(thread([*OK[:3], hang()]), id="thread_cancelled"),
    ],
)
async def test_a_finished_probe_leaves_no_cyclic_garbage(
    setup: Callable[[ScriptedServer], dict[str, Any]], saved_garbage: list[Any]
) -> None:
    async with ScriptedServer() as server:
        fields = setup(server)
        cyclic_garbage_of_ours(saved_garbage)  # the server's own start-up
        saved_garbage.clear()
        for _ in range(3):
            result = await probe(target(server.url, **fields))
        assert result.target == "gc"
        leftovers = cyclic_garbage_of_ours(saved_garbage)
    assert not leftovers, f"objects only the cycle collector frees, per 3 probes: {leftovers}"
