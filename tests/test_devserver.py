"""The demo dev-server launcher and the demo graphs' timing knobs, on a real ``langgraph dev``."""

from __future__ import annotations

import itertools
import json
import os
import socket
import statistics
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from devserver import DevServer, DevServerError  # demo/ is on pythonpath (pyproject)

pytestmark = pytest.mark.integration

GRAPH_IDS = {
    *("agent", "parallel", "nested", "boom", "boom_custom", "slow"),
    *("openai_chat", "openai_responses", "anthropic_thinking", "anthropic_tools"),
}
ENV_WRITER_A_GAP_S = 0.070  # DEMO_WRITER_A_TOKEN_GAP_S for the shared server (default is 0.030)


@pytest.fixture(scope="module")
def server() -> Iterator[DevServer]:
    with DevServer(env={"DEMO_WRITER_A_TOKEN_GAP_S": str(ENV_WRITER_A_GAP_S)}) as srv:
        yield srv


def _run(
    server: DevServer, assistant: str, configurable: dict[str, Any] | None = None
) -> list[tuple[float, str, Any]]:
    """Stream one stateless run; return (receive time s, event name, data) per event."""
    body: dict[str, Any] = {
        "assistant_id": assistant,
        "input": {"messages": [{"role": "user", "content": "hi"}]},
        "stream_mode": ["messages-tuple", "tasks"],
        "on_disconnect": "cancel",
    }
    if configurable is not None:
        body["config"] = {"configurable": configurable}
    events: list[tuple[float, str, Any]] = []
    buf = b""
    with (
        httpx.Client(base_url=server.url, timeout=30.0, trust_env=False) as client,
        client.stream("POST", "/runs/stream", json=body) as response,
    ):
        assert response.status_code == 200
        for chunk in response.iter_raw():
            t = time.monotonic()
            buf += chunk
            # The server frames every event with CRLF and sends one data line (docs/WIRE.md §2).
            *frames, buf = buf.split(b"\r\n\r\n")
            for frame in frames:
                fields = dict(
                    line.split(": ", 1) for line in frame.decode().split("\r\n") if ": " in line
                )
                if "event" in fields:
                    events.append((t, fields["event"], json.loads(fields["data"])))
    return events


def _token_times(events: list[tuple[float, str, Any]], node: str) -> list[float]:
    return [
        t
        for t, name, data in events
        if name == "messages"
        and data[1].get("langgraph_node") == node
        and data[0]["type"] == "AIMessageChunk"
        and (data[0]["content"] or data[0]["tool_call_chunks"])
    ]


def _median_gap(events: list[tuple[float, str, Any]], node: str) -> float:
    times = _token_times(events, node)
    assert len(times) >= 5, f"{node}: only {len(times)} tokens"
    return statistics.median(b - a for a, b in itertools.pairwise(times))


def test_start_serves_ok_and_lists_the_six_graphs(server: DevServer) -> None:
    """A started DevServer answers /ok and serves the six demo graph ids."""
    with httpx.Client(base_url=server.url, trust_env=False) as client:
        assert client.get("/ok").status_code == 200
        found = {a["graph_id"] for a in client.post("/assistants/search", json={}).json()}
    assert found == GRAPH_IDS


def test_busy_port_raises_a_clear_error() -> None:
    """A port held by another listener fails start() instead of silently serving elsewhere."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(DevServerError, match=f"port {port} is already in use"):
            DevServer(port=port, startup_timeout_s=30).start()


def test_stop_ends_the_process_group() -> None:
    """After stop() no process of the server's process group is left."""
    srv = DevServer().start()
    pgid = srv.pid
    assert pgid is not None
    srv.stop()
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)


def test_env_node_knob_sets_the_gap(server: DevServer) -> None:
    """DEMO_WRITER_A_TOKEN_GAP_S in the server's environment sets writer_a's token gap."""
    assert _median_gap(_run(server, "parallel"), "writer_a") >= ENV_WRITER_A_GAP_S - 0.002


def test_request_node_config_sets_the_gap(server: DevServer) -> None:
    """configurable.nodes.writer_b.token_gap_s sets writer_b's gap for that request only."""
    events = _run(server, "parallel", {"nodes": {"writer_b": {"token_gap_s": 0.09}}})
    assert _median_gap(events, "writer_b") >= 0.09 - 0.002


def test_request_global_config_beats_env_node_knob(server: DevServer) -> None:
    """configurable.token_gap_s wins over the DEMO_WRITER_A_TOKEN_GAP_S env knob."""
    events = _run(server, "parallel", {"token_gap_s": 0.01})
    assert _median_gap(events, "writer_a") < ENV_WRITER_A_GAP_S - 0.02


def test_request_node_config_sets_first_token_delay(server: DevServer) -> None:
    """configurable.nodes.<node>.first_token_s delays the node's first token after its start."""
    events = _run(server, "nested", {"nodes": {"answer": {"first_token_s": 0.5}}})
    started = next(
        t
        for t, name, data in events
        if name == "tasks" and data["name"] == "answer" and "input" in data
    )
    # 10 ms slack: the tasks event may leave the server a little later than the node started.
    assert _token_times(events, "answer")[0] - started >= 0.49
