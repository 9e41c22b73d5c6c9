"""`probe` end to end against a real `langgraph dev` serving the demo graphs."""

from __future__ import annotations

import socket
import statistics
import subprocess
import sys
from typing import Any

import httpx
import orjson
import pytest

pytestmark = pytest.mark.integration


def cli(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args], capture_output=True, timeout=timeout_s
    )


def probe_json(url: str, *args: str) -> tuple[int, dict[str, Any]]:
    proc = cli("probe", "--url", url, "--json", "--protocol", "legacy", *args)
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, proc.stdout + proc.stderr  # exactly one JSON object
    return proc.returncode, orjson.loads(lines[0])


#: The server emits the `tasks` start before the node's model starts its sleep, so node TTFT is
#: at least the configured delay on the server's clock. On ours, the two events' loopback
#: transit times differ by some microseconds (the `tasks` event is the larger one), so the
#: lower bound allows 1 ms of that difference and no more.
TRANSIT_SLACK_S = 0.001
#: The JS server may put the `tasks` start on the wire after the node's model has started its
#: delay (docs/WIRE.md §16): up to ~5 ms on an idle machine, ~15 ms under load. Its lower bound
#: allows that much; the upper bound is the same for both servers.
JS_TASKS_LATE_S = 0.015


@pytest.fixture
def low_slack_s(langgraph: Any) -> float:
    return TRANSIT_SLACK_S if langgraph.kind == "python" else JS_TASKS_LATE_S


def node(result: dict[str, Any], name: str, index: int = 0) -> dict[str, Any]:
    return [n for n in result["nodes"] if n["node"] == name][index]


@pytest.mark.timing
def test_agent_node_ttft_and_itl_match_the_configured_model(
    langgraph_server: str, low_slack_s: float
) -> None:
    """200 ms to first token, 30 ms gaps: node TTFT in 200–215 ms, median ITL within ±3 ms."""
    code, result = probe_json(langgraph_server, "--assistant", "agent")
    assert code == 0, result["failure"]
    for index in (0, 1):  # the tool-call turn and the answer turn
        agent = node(result, "agent", index)
        measured = f"node TTFT {agent['ttft_s']}"
        assert 0.200 - low_slack_s <= agent["ttft_s"] <= 0.215, measured
        gaps = [g for c in agent["calls"] for g in c["itl_s"]]
        assert abs(statistics.median(gaps) - 0.030) <= 0.003, (
            f"ITL median {statistics.median(gaps)}"
        )


def test_json_shape_has_the_documented_fields(langgraph_server: str) -> None:
    """The one JSON object carries the documented `probe --json` fields, events in order, metadata first."""
    _, result = probe_json(langgraph_server, "--assistant", "agent")
    assert result["outcome"] == "success" and result["failure"] is None
    phases = {"request_write", "headers", "first_event", "first_token", "first_answer_token"}
    assert phases | {"total"} <= set(result["phases_s"])
    assert result["events"]["name"][0] == "metadata"
    recv = result["events"]["recv_ns"]
    assert recv == sorted(recv) and recv[0] > result["t_request_ns"]
    call = node(result, "agent")["calls"][0]
    assert {
        "msg_id",
        "model",
        "provider",
        "first_token_s",
        "last_token_s",
        "tokens",
        "output_tokens",
        "ttft_s",
        "itl_s",
        "tpot_s",
    } <= set(call)
    assert call["model"] == "fake-stream-1" and call["output_tokens"] is not None


def test_parallel_nodes_each_get_their_own_gap(langgraph_server: str) -> None:
    """writer_a (30 ms) and writer_b (45 ms) interleave; each node's ITL is its own."""
    code, result = probe_json(langgraph_server, "--assistant", "parallel")
    assert code == 0, result["failure"]
    for name, gap in (("writer_a", 0.030), ("writer_b", 0.045)):
        gaps = [g for c in node(result, name)["calls"] for g in c["itl_s"]]
        assert abs(statistics.median(gaps) - gap) <= 0.003, (name, gaps)
    names = result["events"]["node"]
    assert "writer_a" in names and "writer_b" in names


@pytest.mark.timing
def test_subgraph_llm_node_is_reported_as_parent_child(
    langgraph_server: str, low_slack_s: float
) -> None:
    """The subgraph's LLM node is `research/inner_agent` with its own TTFT (docs/WIRE.md §7)."""
    code, result = probe_json(langgraph_server, "--assistant", "nested")
    assert code == 0, result["failure"]
    inner = node(result, "research/inner_agent")
    assert inner["calls"], inner
    assert 0.150 - low_slack_s <= inner["ttft_s"] <= 0.165, f"node TTFT {inner['ttft_s']}"


def test_without_subgraphs_the_inner_node_streams_nothing(langgraph_server: str) -> None:
    """`--no-subgraphs`: no inner tokens reach the client (docs/WIRE.md §7), only the outer ones."""
    code, result = probe_json(langgraph_server, "--assistant", "nested", "--no-subgraphs")
    assert code == 0, result["failure"]
    assert not [n for n in result["nodes"] if n["node"] == "research/inner_agent"]


def test_failing_graph_is_run_error_with_tokens_before_it_counted(langgraph: Any) -> None:
    """`boom` raises after 5 chunks: run_error with the server's error class (Python's
    `RuntimeError`, JS's `Error`), the 5 tokens kept (docs/WIRE.md §8)."""
    code, result = probe_json(langgraph.url, "--assistant", "boom")
    assert code == 1
    assert result["failure"]["kind"] == "run_error"
    assert (
        result["failure"]["error_type"] == {"python": "RuntimeError", "js": "Error"}[langgraph.kind]
    )
    assert node(result, "agent")["calls"][0]["tokens"] == 5


def test_masked_server_error_keeps_the_error_type(langgraph_server: str) -> None:
    """A non-builtin exception is masked by the server; its type still reaches the result."""
    _, result = probe_json(langgraph_server, "--assistant", "boom_custom")
    assert result["failure"]["error_type"] == "ProviderRateLimitError"


def test_thread_mode_leaves_no_thread_behind(langgraph_server: str) -> None:
    """Thread mode creates a thread, streams on it, then deletes it. (Other tests' probes run on
    the same server, so this checks the probe's own thread rather than a count.)"""
    code, result = probe_json(langgraph_server, "--assistant", "agent", "--mode", "thread")
    assert code == 0, result["failure"]
    thread_id = result["thread_id"]
    assert thread_id
    assert httpx.get(f"{langgraph_server}/threads/{thread_id}", timeout=10).status_code == 404


def test_unreachable_url_is_a_connect_failure() -> None:
    """Nothing listening: `connect`, exit 1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code, result = probe_json(f"http://127.0.0.1:{port}", "--assistant", "agent")
    assert (code, result["failure"]["kind"]) == (1, "connect")


def test_unknown_assistant_is_http_status_with_the_server_message(langgraph: Any) -> None:
    """An unknown assistant: `http_status` with the server's own text (Python: 422 JSON
    `detail`; JS: 404 plain text; docs/WIRE.md §16)."""
    code, result = probe_json(langgraph.url, "--assistant", "nope")
    assert code == 1
    assert result["failure"]["kind"] == "http_status"
    status, text = {"python": (422, "Invalid assistant"), "js": (404, "No assistant found")}[
        langgraph.kind
    ]
    assert result["failure"]["http_status"] == status
    assert text in result["failure"]["message"]


@pytest.mark.parametrize(
    "args",
    [
        ["probe", "--assistant", "agent"],
        ["probe", "--url", "ftp://x", "--assistant", "agent"],
        ["probe", "--url", "http://127.0.0.1:1", "--assistant", "a", "--header", "nocolon"],
        ["probe", "--url", "http://127.0.0.1:1", "--assistant", "a", "--input-file", "/nope"],
        ["probe", "--url", "http://127.0.0.1:1", "--assistant", "a", "--mode", "sideways"],
    ],
    ids=["missing-url", "bad-scheme", "bad-header", "missing-input-file", "bad-mode"],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str]) -> None:
    """Usage errors print one clear line on stderr and exit 2, without a traceback."""
    proc = cli(*args)
    assert proc.returncode == 2
    assert b"Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(b"langgraph-stream-exporter")


def test_readable_report_lists_nodes_in_run_order(langgraph_server: str) -> None:
    """Without --json the report names the outcome, then agent, action, agent in that order."""
    proc = cli("probe", "--url", langgraph_server, "--assistant", "agent", "--protocol", "legacy")
    out = proc.stdout.decode()
    assert proc.returncode == 0 and "success" in out
    rows = [
        line.split()[0] for line in out.splitlines() if line.split()[:1] in (["agent"], ["action"])
    ]
    assert rows == ["agent", "action", "agent"]
