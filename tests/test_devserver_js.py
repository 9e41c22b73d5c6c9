"""The JS twins of the demo graphs on the real LangGraph.js dev server (demo/js, ``JsDevServer``).

Plain httpx against the server, no exporter code: every twin graph streams tokens from the
expected nodes with the configured first-token delay and gaps, the knobs work as in
demo/fake_model.py, and the wire traits listed in demo/js/README.md hold.
"""

from __future__ import annotations

import itertools
import json
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from devserver import DevServerError  # demo/ is on pythonpath (pyproject)
from devserver_js import JsDevServer

pytestmark = pytest.mark.integration

# The fixture module; tests/conftest.py may list it too (a plugin registers once).


GRAPH_IDS = {"agent", "parallel", "nested", "boom", "boom_custom", "slow"}

#: Hard lower bound: a node starts after the request was sent, so its first token arrives at
#: least its configured delay after the request, less 1 ms for a node timer firing early
#: (libuv compares against the loop time cached at the start of the iteration).
HARD_LOWER_SLACK_S = 0.001
#: Lower bound on node TTFT as a prober measures it (first token arrival - `tasks` start
#: arrival). Not 1 ms as on the Python server: on the JS server the `metadata` and `tasks`
#: start events can reach the client after the node's model began its sleep (even the
#: metadata-anchored time read 5 ms short once). Observed: up to 5 ms short of the configured
#: delay on an idle machine, 15 ms on a loaded one (demo/js/README.md).
TTFT_LOWER_SLACK_S = 0.025
#: Upper bound: scheduling noise on a loaded 2-core machine.
TTFT_UPPER_SLACK_S = 0.150
#: The median inter-token gap of one call is within this of the configured gap.
ITL_MEDIAN_TOLERANCE_S = 0.003


# ------------------------------------------------------------------ reading a stream


@dataclass
class Event:
    t: float  # arrival of the read that completed the event, seconds after the request
    name: str
    data: Any
    id: str | None


@dataclass
class Stream:
    status: int
    headers: httpx.Headers
    raw: bytes
    reads: list[float]  # arrival of every socket read
    events: list[Event]
    eof: float

    def tokens(self) -> list[Event]:
        """LLM chunks with text or tool-call chunks (not the usage-only chunk, not node outputs)."""
        return [
            e
            for e in self.events
            if e.name.split("|")[0] == "messages"
            and e.data[1].get("ls_integration") == "langchain_chat_model"
            and (e.data[0].get("content") or e.data[0].get("tool_call_chunks"))
        ]

    def task_starts(self) -> dict[str, tuple[str, float]]:
        """tasks id -> (node name, arrival) for every `tasks` start, subgraphs included."""
        return {
            e.data["id"]: (e.data["name"], e.t)
            for e in self.events
            if e.name.split("|")[0] == "tasks" and "input" in e.data
        }


@dataclass
class Call:
    """The tokens of one node execution (one LLM call), joined to its `tasks` start."""

    node: str
    started: float
    tokens: list[Event] = field(default_factory=list)

    @property
    def ttft_s(self) -> float:
        return self.tokens[0].t - self.started

    @property
    def gaps_s(self) -> list[float]:
        return [b.t - a.t for a, b in itertools.pairwise(self.tokens)]

    @property
    def text(self) -> str:
        return "".join(str(e.data[0]["content"]) for e in self.tokens)


def calls(stream: Stream) -> list[Call]:
    """Token groups per node execution, in order of their tasks start.

    The tasks id is the last ``:`` suffix of ``langgraph_checkpoint_ns`` (after the last ``|``
    inside a subgraph)."""
    starts = stream.task_starts()
    by_task: dict[str, Call] = {}
    for e in stream.tokens():
        task_id = e.data[1]["langgraph_checkpoint_ns"].split("|")[-1].rsplit(":", 1)[-1]
        node, started = starts[task_id]
        by_task.setdefault(task_id, Call(node, started)).tokens.append(e)
    return sorted(by_task.values(), key=lambda c: c.started)


def parse(chunks: Iterator[tuple[float, bytes]]) -> tuple[bytes, list[float], list[Event]]:
    """SSE events from timed reads (LF framing; a CR before LF is tolerated)."""
    raw, reads, events = b"", [], []
    buf = b""
    fields: dict[str, str] = {}
    for t, chunk in chunks:
        raw += chunk
        reads.append(t)
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            text = line.decode().removesuffix("\r")
            if text:
                key, _, value = text.partition(":")
                fields[key] = value.removeprefix(" ")
            elif "event" in fields:
                data = json.loads(fields["data"]) if "data" in fields else None
                events.append(Event(t, fields["event"], data, fields.get("id")))
                fields = {}
            else:
                fields = {}
    return raw, reads, events


def stream_run(
    url: str,
    assistant: str,
    *,
    configurable: dict[str, Any] | None = None,
    path: str = "/runs/stream",
    **extra: Any,
) -> Stream:
    """One run with ``stream_mode: ["messages-tuple", "tasks"]``; times relative to the request."""
    body: dict[str, Any] = {
        "assistant_id": assistant,
        "input": {"messages": [{"role": "user", "content": "hi"}]},
        "stream_mode": ["messages-tuple", "tasks"],
        **extra,
    }
    if configurable is not None:
        body["config"] = {"configurable": configurable}
    with httpx.Client(base_url=url, timeout=60.0, trust_env=False) as client:
        t0 = time.monotonic()
        with client.stream("POST", path, json=body) as response:

            def timed() -> Iterator[tuple[float, bytes]]:
                for chunk in response.iter_raw():
                    yield time.monotonic() - t0, chunk

            raw, reads, events = parse(timed())
            eof = time.monotonic() - t0
            return Stream(response.status_code, response.headers, raw, reads, events, eof)


# ------------------------------------------------------------------ what each twin must do


@dataclass(frozen=True)
class Expected:
    node: str
    first_token_s: float
    token_gap_s: float
    text: str | None  # None: a tool call
    n_tokens: int


WEATHER = "It's 60 degrees and foggy in San Francisco, with a light breeze."
#: demo/graphs.py, call by call, in order of their tasks start.
EXPECTED: dict[str, list[Expected]] = {
    "agent": [
        Expected("agent", 0.200, 0.030, None, 5),
        Expected("agent", 0.200, 0.030, WEATHER, 12),
    ],
    "parallel": [
        Expected(
            "writer_a", 0.100, 0.030, "alpha one two three four five six seven eight nine", 10
        ),
        Expected("writer_b", 0.200, 0.045, "beta uno dos tres cuatro cinco seis siete", 8),
    ],
    "nested": [
        Expected("inner_agent", 0.150, 0.020, "inner research notes: fog likely", 5),
        Expected("answer", 0.100, 0.030, "Final: bring a jacket", 4),
    ],
    "boom": [Expected("agent", 0.100, 0.030, "It's 60 degrees and foggy", 5)],
    "boom_custom": [Expected("agent", 0.100, 0.030, "It's 60 degrees", 3)],
    "slow": [Expected("agent", 7.000, 0.030, "Sorry for the wait.", 4)],
}
ERRORS = {
    "boom": {"error": "Error", "message": "simulated provider failure after 5 chunks"},
    "boom_custom": {
        "error": "ProviderRateLimitError",
        "message": "429 simulated rate limit after 3 chunks",
    },
}


class Runs:
    """One stateless run per (graph, request) on the session's JS server, streamed once."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._cache: dict[str, Stream] = {}

    def get(self, graph: str, **extra: Any) -> Stream:
        if graph == "nested":
            extra.setdefault("stream_subgraphs", True)
        key = json.dumps([graph, extra], sort_keys=True)
        if key not in self._cache:
            self._cache[key] = stream_run(self.url, graph, **extra)
        return self._cache[key]


def warm_up(url: str) -> None:
    """One fast run: the first run after a start pays one-off costs (module loading, JIT)."""
    stream_run(url, "agent", configurable={"first_token_s": 0, "token_gap_s": 0})


@pytest.fixture(scope="module")
def runs(langgraph_js_server: str) -> Runs:
    warm_up(langgraph_js_server)
    return Runs(langgraph_js_server)


def check_timing(
    graph: str, stream: Stream, call: Call, first_token_s: float, token_gap_s: float
) -> None:
    where = f"{graph}/{call.node}"
    since_request = call.tokens[0].t
    assert since_request >= first_token_s - HARD_LOWER_SLACK_S, (
        f"{where}: first token arrival - request sent = {since_request * 1e3:.1f} ms, "
        f"below the configured first-token delay {first_token_s * 1e3:.0f} ms"
    )
    ttft = call.ttft_s
    assert ttft >= first_token_s - TTFT_LOWER_SLACK_S, (
        f"{where}: node TTFT (first token arrival - tasks start arrival) = {ttft * 1e3:.1f} ms, "
        f"below the configured first-token delay {first_token_s * 1e3:.0f} ms"
    )
    assert ttft <= first_token_s + TTFT_UPPER_SLACK_S, (
        f"{where}: node TTFT (first token arrival - tasks start arrival) = {ttft * 1e3:.1f} ms, "
        f"more than {TTFT_UPPER_SLACK_S * 1e3:.0f} ms over the configured {first_token_s * 1e3:.0f} ms"
    )
    gaps = call.gaps_s
    assert gaps, f"{where}: only {len(call.tokens)} token(s), no inter-token gap to measure"
    median = statistics.median(gaps)
    assert abs(median - token_gap_s) <= ITL_MEDIAN_TOLERANCE_S, (
        f"{where}: median inter-token gap (arrival to arrival) over {len(gaps)} gaps = "
        f"{median * 1e3:.2f} ms, configured {token_gap_s * 1e3:.0f} ms "
        f"(± {ITL_MEDIAN_TOLERANCE_S * 1e3:.0f} ms); gaps ms: {[round(g * 1e3, 1) for g in gaps]}"
    )


# ------------------------------------------------------------------ the server


def test_info_and_the_six_graphs(langgraph_js_server: str) -> None:
    """GET /info identifies the pinned JS server; the six twin graph ids are served."""
    with httpx.Client(base_url=langgraph_js_server, trust_env=False) as client:
        info = client.get("/info").json()
        found = {a["graph_id"] for a in client.post("/assistants/search", json={}).json()}
    assert (info["context"], info["version"], info["langgraph_js_version"]) == (
        "js",
        "1.5.1",
        "1.7.3",
    ), f"GET /info reported {info}"
    assert found == GRAPH_IDS, f"graph ids from POST /assistants/search: {sorted(found)}"


# ------------------------------------------------------------------ every twin graph


@pytest.mark.timing
@pytest.mark.parametrize(
    "graph", [pytest.param(g, marks=pytest.mark.slow) if g == "slow" else g for g in EXPECTED]
)
def test_twin_streams_each_node_with_the_default_timing(runs: Runs, graph: str) -> None:
    """Tokens come from the expected nodes, in the expected calls, with the default delays."""
    stream = runs.get(graph)
    assert stream.status == 200, f"POST /runs/stream {graph}: HTTP {stream.status}"
    got = calls(stream)
    expected = EXPECTED[graph]
    assert [(c.node, len(c.tokens)) for c in got] == [(e.node, e.n_tokens) for e in expected], (
        f"{graph}: (node, tokens) per LLM call as streamed"
    )
    for call, exp in zip(got, expected, strict=True):
        check_timing(graph, stream, call, exp.first_token_s, exp.token_gap_s)


@pytest.mark.parametrize("graph", [g for g in EXPECTED if g != "slow"])
def test_twin_streams_the_python_texts_tool_call_and_usage(runs: Runs, graph: str) -> None:
    """The same texts and tool call as demo/fake_model.py, word by word, then a usage-only chunk."""
    stream = runs.get(graph)
    for call, exp in zip(calls(stream), EXPECTED[graph], strict=True):
        if exp.text is not None:
            assert call.text == exp.text, f"{graph}/{call.node}: concatenated token text"
            continue
        chunks = [tc for e in call.tokens for tc in e.data[0]["tool_call_chunks"]]
        assert (chunks[0]["name"], chunks[0]["id"][:5]) == ("get_weather", "call_")
        args = "".join(tc["args"] for tc in chunks)
        assert args == '{"city": "sf"}', f"{graph}: tool-call args joined from the chunks"
    if graph in ERRORS:
        return  # a failing call has no usage chunk
    usage = [
        e.data[0]["usage_metadata"]
        for e in stream.events
        if e.name.split("|")[0] == "messages" and e.data[0].get("usage_metadata")
    ]
    assert [u["output_tokens"] for u in usage] == [e.n_tokens for e in EXPECTED[graph]], (
        f"{graph}: usage_metadata.output_tokens per call"
    )
    assert all(u["total_tokens"] == u["input_tokens"] + u["output_tokens"] for u in usage)


def test_nested_subgraph_node_is_in_the_namespace(runs: Runs) -> None:
    """With stream_subgraphs, inner_agent's tokens and tasks come as `…|research:<task id>`."""
    stream = runs.get("nested")
    inner = [e for e in stream.tokens() if e.data[1]["langgraph_node"] == "inner_agent"]
    assert inner, "no inner_agent token with stream_subgraphs: true"
    research_id = next(
        e.data["id"]
        for e in stream.events
        if e.name == "tasks" and e.data["name"] == "research" and "input" in e.data
    )
    names = {e.name for e in inner}
    assert names == {f"messages|research:{research_id}"}, f"event names of inner tokens: {names}"
    inner_tasks = {
        e.name
        for e in stream.events
        if e.name.split("|")[0] == "tasks" and e.data["name"] == "inner_agent"
    }
    assert inner_tasks == {f"tasks|research:{research_id}"}, f"inner tasks events: {inner_tasks}"


@pytest.mark.parametrize("graph", sorted(ERRORS))
def test_failing_twin_ends_with_an_error_event(runs: Runs, graph: str) -> None:
    """boom / boom_custom: tokens, the failed `tasks` end, then `event: error` last."""
    stream = runs.get(graph)
    last = stream.events[-1]
    assert last.name == "error", f"{graph}: last event is {last.name!r}"
    assert last.data == ERRORS[graph], f"{graph}: error payload"
    failed = stream.events[-2]
    assert failed.name == "tasks" and failed.data["error"] == {
        "message": ERRORS[graph]["message"],
        "name": ERRORS[graph]["error"],
    }, f"{graph}: the event before the error: {failed.name} {failed.data}"


@pytest.mark.timing
@pytest.mark.slow
def test_slow_first_token_has_no_heartbeat_in_between(runs: Runs) -> None:
    """No byte at all between the `tasks` start and the 7 s first token (no heartbeats on JS)."""
    stream = runs.get("slow")
    (call,) = calls(stream)
    between = [t for t in stream.reads if call.started < t < call.tokens[0].t]
    assert between == [], f"socket reads between tasks start and first token at {between} s"


# ------------------------------------------------------------------ the knobs


@pytest.mark.timing
def test_request_knobs_per_node_and_global(runs: Runs) -> None:
    """configurable.token_gap_s for all nodes, configurable.nodes.writer_b.first_token_s for one."""
    stream = runs.get(
        "parallel",
        configurable={"token_gap_s": 0.02, "nodes": {"writer_b": {"first_token_s": 0.3}}},
    )
    a, b = calls(stream)
    check_timing("parallel", stream, a, 0.100, 0.020)
    check_timing("parallel", stream, b, 0.300, 0.020)


def test_bad_knob_fails_the_run(runs: Runs) -> None:
    """A knob that is not seconds ends the run with `event: error`, not with a default."""
    stream = runs.get("agent", configurable={"nodes": {"agent": {"token_gap_s": "soon"}}})
    last = stream.events[-1]
    assert (last.name, last.data["message"]) == (
        "error",
        'configurable.nodes.agent.token_gap_s: expected seconds as a number, got "soon"',
    ), f"last event: {last.name} {last.data}"
    assert not stream.tokens(), "tokens streamed despite a bad knob"


ENV_KNOBS = {"DEMO_WRITER_A_TOKEN_GAP_S": "0.07", "DEMO_FIRST_TOKEN_S": "0.05"}


@pytest.fixture(scope="module")
def env_server() -> Iterator[JsDevServer]:
    with JsDevServer(env=ENV_KNOBS) as server:
        warm_up(server.url)
        yield server


@pytest.mark.timing
def test_env_knobs_per_node_and_global(env_server: JsDevServer) -> None:
    """DEMO_WRITER_A_TOKEN_GAP_S sets one node's gap, DEMO_FIRST_TOKEN_S every first token."""
    stream = stream_run(env_server.url, "parallel")
    a, b = calls(stream)
    check_timing("parallel", stream, a, 0.050, 0.070)
    check_timing("parallel", stream, b, 0.050, 0.045)


@pytest.mark.timing
def test_request_knob_beats_env_knob(env_server: JsDevServer) -> None:
    """configurable.token_gap_s wins over DEMO_WRITER_A_TOKEN_GAP_S."""
    stream = stream_run(env_server.url, "parallel", configurable={"token_gap_s": 0.01})
    a, _ = calls(stream)
    check_timing("parallel", stream, a, 0.050, 0.010)


# ------------------------------------------------------------------ wire traits (demo/js/README.md)


def test_wire_lf_framing_ai_chunks_no_chunk_position_no_ids_stateless(runs: Runs) -> None:
    """Stateless stream: LF only, no comments, `ai` chunks without chunk_position, no `id:`."""
    stream = runs.get("agent")
    assert b"\r" not in stream.raw, "CR bytes in the SSE body"
    assert not [ln for ln in stream.raw.split(b"\n") if ln.startswith(b":")], "SSE comment lines"
    assert stream.events[0].name == "metadata", f"first event {stream.events[0].name}"
    types = {e.data[0]["type"] for e in stream.tokens()}
    assert types == {"ai"}, f"message types of LLM chunks: {types}"
    assert not any("chunk_position" in e.data[0] for e in stream.events if e.name == "messages")
    assert {e.id for e in stream.events} == {None}, "id: lines on a stateless stream"
    assert stream.headers["content-type"] == "text/event-stream"
    assert "location" not in stream.headers, "a Location header"
    assert stream.headers["content-location"].startswith("/runs/")


def test_wire_thread_stream_ids_and_busy_thread_422(langgraph_js_server: str) -> None:
    """Thread stream: `id: 0..n` on every event; a second run on the busy thread gets 422."""
    with httpx.Client(base_url=langgraph_js_server, timeout=30.0, trust_env=False) as client:
        thread_id = client.post("/threads", json={}).json()["thread_id"]
        path = f"/threads/{thread_id}/runs/stream"
        result: list[Stream] = []
        runner = threading.Thread(
            target=lambda: result.append(stream_run(langgraph_js_server, "agent", path=path))
        )
        runner.start()
        try:
            deadline = time.monotonic() + 10
            while client.get(f"/threads/{thread_id}").json()["status"] != "busy":
                assert time.monotonic() < deadline, "the thread never became busy"
                time.sleep(0.02)
            busy = client.post(path, json={"assistant_id": "agent", "input": None})
        finally:
            runner.join(30)
    assert (busy.status_code, busy.headers["content-type"].split(";")[0]) == (422, "text/plain")
    assert busy.text.startswith("Thread is already running a task"), busy.text
    (stream,) = result
    ids = [e.id for e in stream.events]
    assert ids == [str(i) for i in range(len(ids))], f"id: values of the thread stream: {ids}"


# ------------------------------------------------------------------ the launcher


def test_busy_port_raises_a_clear_error() -> None:
    """A port held by another listener fails start() at once instead of hanging."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        t0 = time.monotonic()
        with pytest.raises(DevServerError, match=f"port {port} is already in use"):
            JsDevServer(port=port, startup_timeout_s=30).start()
        took = time.monotonic() - t0
    assert took < 20, f"start() took {took:.1f} s to report the busy port"


def test_stop_ends_the_process_group_and_removes_the_project() -> None:
    """After stop() no process of the server's group is left and the temp project is gone."""
    srv = JsDevServer().start()
    pgid, project = srv.pid, srv.project_dir
    assert pgid is not None and project is not None
    assert "Server running at" in srv.log_text()
    srv.stop()
    # Killed grandchildren are reparented and may stay zombies until init reaps them.
    assert _live_group_members(pgid) == [], f"processes of group {pgid} alive after stop()"
    assert not project.exists(), f"{project} left behind"


def _live_group_members(pgid: int) -> list[str]:
    """Processes of process group ``pgid`` that are not zombies (Linux /proc)."""
    live = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # gone meanwhile
        comm_end = text.rindex(")")
        state, _ppid, pgrp = text[comm_end + 2 :].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            live.append(text[: comm_end + 1])
    return live
