"""A probe against what other servers send, over a real socket (docs/WIRE.md §2, §6, §8, §12).

The scripted server plays the LangGraph.js server's framing (LF lines, `id:` lines, no
heartbeats, no end markers, `ai` chunks) and an older server that rejects `tasks`.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from exporter.config import Target
from exporter.core.errors import FailureKind
from exporter.probe import probe
from tests.support.scripted_server import (
    DEFAULT_RUN,
    RecordedRequest,
    ScriptedServer,
    Step,
    body,
    end,
    hang,
    langgraph_stream,
    send,
    sleep,
    status,
)

pytestmark = pytest.mark.anyio

RUN = DEFAULT_RUN.run_id
THREAD = DEFAULT_RUN.thread_id
TASK = "36681833-0000-4000-8000-000000000001"


def target(url: str, **fields: Any) -> Target:
    timeout = {"connect": 2, "headers": 2, "first_event": 3, "first_token": 3, "idle": 1}
    timeout |= {"total": 4, **fields.pop("timeout", {})}
    return Target.model_validate(
        {"name": "js", "url": url, "assistant_id": "agent", "timeout": timeout, **fields}
    )


def js_event(event: str, data: Any, seq: int | None = None) -> bytes:
    """One event framed as the JS server frames it: LF lines, optional `id:` (docs/WIRE.md §2)."""
    out = f"event: {event}\ndata: ".encode() + orjson.dumps(data) + b"\n"
    if seq is not None:
        out += f"id: {seq}\n".encode()
    return out + b"\n"


def js_token(text: str, *, mid: str = "run-01a228f6") -> bytes:
    msg = {
        "content": text,
        "tool_calls": [],
        "invalid_tool_calls": [],
        "tool_call_chunks": [],
        "additional_kwargs": {},
        "response_metadata": {},
        "id": mid,
        "type": "ai",
    }
    meta = {
        "ls_integration": "langchain_chat_model",
        "langgraph_node": "agent",
        "langgraph_checkpoint_ns": f"agent:{TASK}",
        "thread_id": THREAD,
        "run_id": RUN,
        "ls_model_name": "fake-stream-1",
        "ls_provider": "fakeprovider",
    }
    return js_event("messages", [msg, meta])


def js_head() -> list[Step]:
    return [
        send(js_event("metadata", {"run_id": RUN, "attempt": 1})),
        send(js_event("tasks", {"id": TASK, "name": "agent", "input": {}, "triggers": []})),
    ]


async def test_js_shaped_stream_is_timed_and_succeeds() -> None:
    """`ai` chunks, LF framing, no heartbeats, no end markers, EOF 500 ms after the last event:
    tokens are counted, node TTFT measured, and the probe succeeds (was `no_tokens`)."""
    script: list[Step] = [
        *js_head(),
        sleep(0.2),
        send(js_token("It's")),
        sleep(0.03),
        send(js_token(" 60")),
        send(js_event("tasks", {"id": TASK, "name": "agent", "result": {}, "error": None})),
        sleep(0.5),
        end(),
    ]
    async with ScriptedServer() as server:
        server.route_stateless(script)
        result = await probe(target(server.url))
    assert result.failure is None, result.failure
    (node,) = result.nodes
    assert node.tokens == 2
    assert node.ttft_s is not None and node.ttft_s >= 0.2, f"node TTFT {node.ttft_s}"


async def test_given_up_stateless_run_is_cancelled_through_its_thread() -> None:
    """The JS server ignores `on_disconnect` for stateless runs (docs/WIRE.md §8): a probe that gives up
    cancels the run through the temporary thread named in the tokens' metadata."""
    script = [*js_head(), send(js_token("It's")), hang()]
    async with ScriptedServer() as server:
        server.route_stateless(script)
        server.route("POST", "/threads/{tid}/runs/{rid}/cancel", [status(202), end()])
        result = await probe(target(server.url, timeout={"total": 1}))
        await server.wait_idle()
    assert result.failure is not None and result.failure.kind is FailureKind.DEADLINE
    cancels = [r for r in server.requests if r.path.endswith("/cancel")]
    assert [r.path for r in cancels] == [f"/threads/{THREAD}/runs/{RUN}/cancel"]


async def test_finished_stateless_run_is_not_cancelled() -> None:
    """A stateless run that ended cleanly needs no cancel."""
    async with ScriptedServer() as server:
        server.route_stateless(langgraph_stream(["agent"], tokens=3, first_token_s=0.01))
        result = await probe(target(server.url))
    assert result.failure is None
    assert not [r for r in server.requests if r.path.endswith("/cancel")]


REJECT_TASKS = (
    '{"detail":"[\\"messages-tuple\\",\\"tasks\\"] is not valid under any of the schemas'
    " listed in the 'anyOf' keyword\\n\\nFailed validating \\\"anyOf\\\" in"
    ' schema[\\"properties\\"][\\"stream_mode\\"]"}'
)


def older_server(request: RecordedRequest) -> list[Step]:
    """A server from before the `tasks` mode: 422 for it, a tasks-less stream otherwise."""
    if "tasks" in request.json()["stream_mode"]:
        return [body(422, REJECT_TASKS.encode())]
    return langgraph_stream(["agent"], tokens=3, first_token_s=0.05, tasks=False)


async def test_server_rejecting_tasks_is_probed_again_without_it_and_remembered() -> None:
    """A 422 about `stream_mode` makes the probe ask once more with `messages-tuple` alone,
    say so in the result, and ask that way from then on (was an `http_status` failure)."""
    async with ScriptedServer() as server:
        server.route_stateless(older_server)
        url = server.url
        first = await probe(target(url))
        second = await probe(target(url))
    assert first.failure is None, first.failure
    assert first.stream_mode == ("messages-tuple",) and first.stream_mode_fallback
    assert first.to_dict()["stream_mode"] == ["messages-tuple"]
    assert second.failure is None and second.tokens == 3
    runs = [r.json()["stream_mode"] for r in server.requests if r.path == "/runs/stream"]
    assert runs == [["messages-tuple", "tasks"], ["messages-tuple"], ["messages-tuple"]]


async def test_busy_thread_422_is_not_retried() -> None:
    """The JS server's 422 for a busy thread is not about `stream_mode`: no retry."""
    busy = b"Thread is already running a task. Wait for it to finish."
    async with ScriptedServer() as server:
        server.route_stateless([body(422, busy, "text/plain")])
        result = await probe(target(server.url))
    assert result.failure is not None and result.failure.kind is FailureKind.HTTP_STATUS
    assert len([r for r in server.requests if r.path == "/runs/stream"]) == 1
