"""Record SSE fixtures from a real ``langgraph dev`` server running the demo project.

    .venv/bin/python scripts/record_fixtures.py [--out tests/data/sse] [--case agent ...]

For each case it writes, into the output directory:

* ``<name>.sse``           the response body, byte for byte (de-chunked, nothing else done)
* ``<name>.chunks.jsonl``  one line per network chunk as read: ``{"t_ns": ns since the
                           request was sent (monotonic), "len": bytes}``
* ``<name>.meta.json``     method, path, request body, status, response headers, the
                           LangGraph package versions in demo/.venv, date
* ``<name>.events.jsonl``  the expected decoded SSE events, ``{"event", "data"}`` per
                           line, comments excluded; from the small reference parser below,
                           deliberately independent of the exporter's own decoder

A case that is an HTTP error (``unknown_assistant``) gets ``<name>.body`` + meta only.
The provider cases (``openai_chat``, ``openai_responses``, ``anthropic_thinking``,
``anthropic_tools``) run the real langchain-openai / langchain-anthropic integrations against
the scripted provider API that DevServer starts (demo/provider_graphs.py); each of those
graphs is run once unrecorded first, so the capture shows a warm process (the first
Responses API call after a server start spends about 0.6 s in one-off set-up before its
last chunks).
After recording, ``check()`` asserts the wire facts the fixtures exist to show.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import importlib.metadata
import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "demo"))
from devserver import DevServer  # noqa: E402  (stdlib only; demo/ is not a package)
from devserver_js import JsDevServer  # noqa: E402

DEFAULT_OUT = ROOT / "tests" / "data" / "sse"
INPUT = {"messages": [{"role": "user", "content": "what's the weather in sf?"}]}
VERSIONED = (
    "langgraph-cli",
    "langgraph-api",
    "langgraph-runtime-inmem",
    "langgraph",
    "langgraph-prebuilt",
    "langgraph-sdk",
    "langchain-core",
    "langchain-openai",
    "openai",
    "langchain-anthropic",
    "anthropic",
    "sse-starlette",
    "starlette",
    "uvicorn",
)


# ---------------------------------------------------------------------- reference SSE parser
def parse_sse(body: bytes) -> Iterator[tuple[str, str]]:
    """Yield ``(event, data)`` per dispatched event, as the WHATWG spec interprets a stream.

    Lines end in CRLF, LF or CR; ``:`` lines are comments; a blank line dispatches;
    an event without an ``event:`` field is named ``message``; an event with no data
    is not dispatched. ``id``/``retry`` are not needed by the fixtures and are skipped.
    """
    text = body.decode("utf-8")
    if text.startswith("\ufeff"):
        text = text[1:]
    event = ""
    data: list[str] = []
    for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        if line == "":
            if data:
                yield event or "message", "\n".join(data)
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
    # NOTE: a trailing event without its blank line is dropped, as the spec says.


# ---------------------------------------------------------------------- cases
@dataclass
class Case:
    name: str
    assistant: str
    stream_mode: list[str] | str = field(default_factory=lambda: ["messages-tuple", "tasks"])
    extra: dict[str, Any] = field(default_factory=dict)
    thread: bool = False  # POST /threads, stream on it, then DELETE it
    expect_status: int = 200
    server: str = "python"  # or "js": the LangGraph.js dev server serving demo/js

    def body(self) -> dict[str, Any]:
        return {
            "assistant_id": self.assistant,
            "input": INPUT,
            "stream_mode": self.stream_mode,
            "on_disconnect": "cancel",
            "metadata": {"probe": "langgraph-stream-exporter", "probe_target": self.name},
            **self.extra,
        }


# The scripted provider's defaults, spelled out so the fixture's request documents them.
PROVIDER_TIMING = {"first_output_s": 0.15, "answer_s": 0.6, "gap_s": 0.025}

CASES = [
    Case("agent", "agent"),
    Case("agent_thread", "agent", thread=True),
    Case("agent_messages_only", "agent", stream_mode="messages-tuple"),
    Case("parallel", "parallel"),
    Case("nested_subgraphs", "nested", extra={"stream_subgraphs": True}),
    Case("nested", "nested", extra={"stream_subgraphs": False}),
    Case("boom", "boom"),
    Case("boom_custom", "boom_custom"),
    Case("unknown_assistant", "nope", expect_status=422),
    Case("slow", "slow"),
    *(
        Case(g, g, extra={"config": {"configurable": PROVIDER_TIMING}})
        for g in ("openai_chat", "openai_responses", "anthropic_thinking", "anthropic_tools")
    ),
]
PROVIDER_GRAPHS = {"openai_chat", "openai_responses", "anthropic_thinking", "anthropic_tools"}
#: The same demo graphs on the LangGraph.js dev server (demo/js; docs/WIRE.md §16).
CASES += [
    Case("js_agent", "agent", server="js"),
    Case("js_agent_thread", "agent", thread=True, server="js"),
    Case("js_parallel", "parallel", server="js"),
    Case("js_nested_subgraphs", "nested", extra={"stream_subgraphs": True}, server="js"),
    Case("js_boom", "boom", server="js"),
    Case("js_unknown_assistant", "nope", expect_status=404, server="js"),
]


def js_versions() -> dict[str, str]:
    """The LangGraph.js packages installed in demo/js (its package-lock pins them)."""
    modules = ROOT / "demo" / "js" / "node_modules" / "@langchain"
    found = {}
    for name in ("langgraph-cli", "langgraph-api", "langgraph", "core"):
        package = modules / name / "package.json"
        found[f"@langchain/{name}"] = (
            json.loads(package.read_text())["version"] if package.exists() else "?"
        )
    return found


def demo_versions() -> dict[str, str]:
    site = sorted((ROOT / "demo" / ".venv" / "lib").glob("python*/site-packages"))
    found = {
        d.metadata["Name"].lower(): d.version
        for d in importlib.metadata.distributions(path=[str(p) for p in site])
        if d.metadata["Name"]
    }
    return {name: found.get(name, "?") for name in VERSIONED}


def _dump(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


async def record(
    client: httpx.AsyncClient, case: Case, out: Path, versions: dict[str, str]
) -> Path:
    setup: list[dict[str, Any]] = []
    path = "/runs/stream"
    thread_id = None
    if case.thread:
        r = await client.post("/threads", json={})
        r.raise_for_status()
        thread_id = r.json()["thread_id"]
        setup.append({"method": "POST", "path": "/threads", "status": r.status_code})
        path = f"/threads/{thread_id}/runs/stream"
    body = case.body()
    request = client.build_request("POST", path, json=body)
    chunks: list[dict[str, int]] = []
    raw = bytearray()
    t0 = time.monotonic_ns()  # just before the request is written (docs/WIRE.md §17)
    response = await client.send(request, stream=True)
    t_headers = time.monotonic_ns() - t0
    try:
        async for chunk in response.aiter_raw():
            chunks.append({"t_ns": time.monotonic_ns() - t0, "len": len(chunk)})
            raw += chunk
    finally:
        await response.aclose()
    cleanup: list[dict[str, Any]] = []
    if thread_id is not None:
        r = await client.delete(f"/threads/{thread_id}")
        cleanup.append(
            {"method": "DELETE", "path": f"/threads/{thread_id}", "status": r.status_code}
        )
    if response.status_code != case.expect_status:
        raise RuntimeError(
            f"{case.name}: HTTP {response.status_code}, expected {case.expect_status}: "
            + repr(bytes(raw))
        )

    meta = {
        "name": case.name,
        "method": "POST",
        "path": path,
        "request_body": body,
        "status": response.status_code,
        "response_headers": [[k, v] for k, v in response.headers.multi_items()],
        "t_headers_ns": t_headers,
        "setup": setup,
        "cleanup": cleanup,
        "versions": versions,
        "recorded_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    (out / f"{case.name}.meta.json").write_text(
        json.dumps(meta, indent=2, ensure_ascii=False) + "\n"
    )
    if response.status_code != 200:
        (out / f"{case.name}.body").write_bytes(bytes(raw))
        return out / f"{case.name}.body"
    (out / f"{case.name}.sse").write_bytes(bytes(raw))
    (out / f"{case.name}.chunks.jsonl").write_text("".join(_dump(c) + "\n" for c in chunks))
    events = [{"event": e, "data": json.loads(d)} for e, d in parse_sse(bytes(raw))]
    (out / f"{case.name}.events.jsonl").write_text("".join(_dump(e) + "\n" for e in events))
    return out / f"{case.name}.sse"


# ---------------------------------------------------------------------- checks
def _events(out: Path, name: str) -> list[dict[str, Any]]:
    lines = (out / f"{name}.events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _chunks(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        e["data"][0]
        for e in events
        if e["event"].split("|")[0] == "messages" and e["data"][0]["type"] == "AIMessageChunk"
    ]


def _check_agent(out: Path, name: str) -> None:
    ev = _events(out, name)
    names = [e["event"] for e in ev]
    assert names[0] == "metadata", names[:3]
    tasks = [e["data"] for e in ev if e["event"] == "tasks"]
    assert any("input" in t for t in tasks) and any("result" in t for t in tasks), "tasks start+end"
    chunks = _chunks(ev)
    assert any(c["tool_call_chunks"] for c in chunks), "tool_call_chunks"
    assert any(c["usage_metadata"] and c["content"] == "" for c in chunks), "usage-only chunk"
    assert sum(c["chunk_position"] == "last" for c in chunks) == 2, (
        "one chunk_position:last per LLM call"
    )
    assert "foggy" in "".join(c["content"] for c in chunks if isinstance(c["content"], str)), (
        "foggy"
    )


def _check_messages_only(out: Path, name: str) -> None:
    ev = _events(out, name)
    assert {e["event"] for e in ev} == {"metadata", "messages"}, {e["event"] for e in ev}


def _check_nested_subgraphs(out: Path, name: str) -> None:
    names = [e["event"] for e in _events(out, name)]
    assert any(n.startswith("messages|research:") for n in names), "messages|research:<id>"


def _check_nested(out: Path, name: str) -> None:
    ev = _events(out, name)
    assert not any("|" in e["event"] for e in ev), "no namespaced events without stream_subgraphs"
    nodes = {
        c_meta["langgraph_node"]
        for e in ev
        if e["event"] == "messages"
        for c_meta in [e["data"][1]]
    }
    assert "inner_agent" not in nodes, nodes


def _check_parallel(out: Path, name: str) -> None:
    ev = _events(out, name)
    started = [e["data"]["name"] for e in ev if e["event"] == "tasks" and "input" in e["data"]]
    assert started[:2] in (["writer_a", "writer_b"], ["writer_b", "writer_a"]), started


def _js_chunks(out: Path, name: str) -> list[dict[str, Any]]:
    return [
        e["data"][0]
        for e in _events(out, name)
        if e["event"].split("|")[0] == "messages"
        and e["data"][1].get("ls_integration") == "langchain_chat_model"
    ]


def _check_js_agent(out: Path, name: str) -> None:
    chunks = _js_chunks(out, name)
    assert chunks and all(c["type"] == "ai" for c in chunks), "JS chunks are typed ai"
    assert not any("chunk_position" in c for c in chunks), "no end-of-call marker on JS"
    assert b"\r\n" not in (out / f"{name}.sse").read_bytes(), "LF framing"
    assert b"\n:" not in (out / f"{name}.sse").read_bytes(), "no heartbeats"
    assert "foggy" in "".join(c["content"] for c in chunks if isinstance(c["content"], str))


def _check_js_boom(out: Path, name: str) -> None:
    ev = _events(out, name)
    assert ev[-1]["event"] == "error" and ev[-1]["data"]["error"] == "Error", ev[-1]
    ends = [e["data"] for e in ev if e["event"] == "tasks" and e["data"].get("error")]
    assert ends and set(ends[0]["error"]) == {"message", "name"}, ends


def _check_boom(out: Path, name: str, tokens: int, error: str) -> None:
    ev = _events(out, name)
    assert ev[-1]["event"] == "error" and ev[-1]["data"]["error"] == error, ev[-1]
    assert len([c for c in _chunks(ev) if c["content"]]) == tokens, "tokens before the failure"
    assert not any(c["chunk_position"] == "last" for c in _chunks(ev)), (
        "a failed call has no last chunk"
    )


def _check_slow(out: Path, name: str) -> None:
    assert b": heartbeat\r\n\r\n" in (out / f"{name}.sse").read_bytes(), "heartbeat comment"
    chunk_lines = (out / f"{name}.chunks.jsonl").read_text().splitlines()
    assert json.loads(chunk_lines[-1])["t_ns"] > 7e9, "first token after 7 s"


def _provider_chunks(out: Path, name: str) -> list[dict[str, Any]]:
    ev = _events(out, name)
    assert ev[-1]["event"] != "error", ev[-1]
    return _chunks(ev)


def _blocks(chunks: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [
        b
        for c in chunks
        if isinstance(c["content"], list)
        for b in c["content"]
        if b.get("type") == kind
    ]


def _check_openai_chat(out: Path, name: str) -> None:
    chunks = _provider_chunks(out, name)
    assert all(isinstance(c["content"], str) for c in chunks), "string content"
    assert len({c["id"] for c in chunks}) == 1, "one message id"
    assert sum(bool(c["content"]) for c in chunks) == 20, "20 text chunks"
    usage = [c["usage_metadata"] for c in chunks if c["usage_metadata"]]
    assert len(usage) == 1 and usage[0]["output_tokens"] == 20, usage
    assert usage[0]["output_token_details"]["reasoning"] == 0, usage
    assert chunks[-1]["chunk_position"] == "last" and not chunks[-1]["usage_metadata"]


def _check_openai_responses(out: Path, name: str) -> None:
    chunks = _provider_chunks(out, name)
    assert chunks[0]["id"].startswith("resp_"), chunks[0]["id"]
    assert all(c["id"].startswith("lc_run--") for c in chunks[1:]), "then lc_run--"
    summaries = [
        s["text"] for b in _blocks(chunks, "reasoning") for s in b.get("summary", []) if s["text"]
    ]
    assert len(summaries) == 12, summaries
    assert len([b for b in _blocks(chunks, "text") if b["text"]]) == 20, "20 text blocks"
    last = chunks[-1]
    assert last["chunk_position"] == "last" and last["usage_metadata"], last
    assert last["usage_metadata"]["output_token_details"]["reasoning"] == 64, last
    assert last["usage_metadata"]["output_tokens"] == 84, last


def _check_anthropic_thinking(out: Path, name: str) -> None:
    chunks = _provider_chunks(out, name)
    thinking = _blocks(chunks, "thinking")
    assert len([b for b in thinking if b.get("thinking")]) == 12, thinking
    assert sum("signature" in b for b in thinking) == 1, "one signature"
    assert len([b for b in _blocks(chunks, "text") if b["text"]]) == 20, "20 text blocks"
    last = chunks[-1]
    assert last["chunk_position"] == "last" and last["usage_metadata"], last
    assert last["usage_metadata"]["output_token_details"] == {"reasoning": 12}, last
    assert last["usage_metadata"]["output_tokens"] == 32, last


def _check_anthropic_tools(out: Path, name: str) -> None:
    ev = _events(out, name)
    chunks = _provider_chunks(out, name)
    deltas = _blocks(chunks, "input_json_delta")
    assert deltas and deltas[0]["partial_json"] == "", "the first input_json_delta is empty"
    assert any(c["tool_call_chunks"] for c in chunks), "tool_call_chunks"
    assert sum(c["chunk_position"] == "last" for c in chunks) == 2, "two calls"
    tools = [e for e in ev if e["event"] == "messages" and e["data"][0]["type"] == "tool"]
    assert len(tools) == 1, "one ToolMessage"


def _check_unknown(out: Path, name: str) -> None:
    meta = json.loads((out / f"{name}.meta.json").read_text())
    assert meta["status"] == 422 and b"Invalid assistant" in (out / f"{name}.body").read_bytes()


CHECKS: dict[str, Callable[[Path, str], None]] = {
    "agent": _check_agent,
    "agent_thread": _check_agent,
    "agent_messages_only": _check_messages_only,
    "parallel": _check_parallel,
    "nested_subgraphs": _check_nested_subgraphs,
    "nested": _check_nested,
    "boom": lambda out, name: _check_boom(out, name, 5, "RuntimeError"),
    "boom_custom": lambda out, name: _check_boom(out, name, 3, "ProviderRateLimitError"),
    "unknown_assistant": _check_unknown,
    "slow": _check_slow,
    "openai_chat": _check_openai_chat,
    "openai_responses": _check_openai_responses,
    "anthropic_thinking": _check_anthropic_thinking,
    "anthropic_tools": _check_anthropic_tools,
    "js_agent": _check_js_agent,
    "js_agent_thread": _check_js_agent,
    "js_parallel": lambda out, name: None if _js_chunks(out, name) else _fail("no JS tokens"),
    "js_nested_subgraphs": _check_nested_subgraphs,
    "js_boom": _check_js_boom,
    "js_unknown_assistant": lambda out, name: None,
}


def _fail(message: str) -> None:
    raise AssertionError(message)


async def warm_up(client: httpx.AsyncClient, cases: list[Case]) -> None:
    """Run each provider graph once, unrecorded, so one-off set-up stays out of the capture."""
    for case in cases:
        if case.assistant in PROVIDER_GRAPHS:
            async with client.stream("POST", "/runs/stream", json=case.body()) as response:
                async for _ in response.aiter_raw():
                    pass


async def run(cases: list[Case], out: Path, port: int | None) -> int:
    failures = 0
    for kind, server_class, versions in (
        ("python", DevServer, demo_versions()),
        ("js", JsDevServer, js_versions()),
    ):
        mine = [c for c in cases if c.server == kind]
        if mine:
            failures += await run_on(server_class, mine, out, port, versions)
    return 1 if failures else 0


async def run_on(
    server_class: type[DevServer],
    cases: list[Case],
    out: Path,
    port: int | None,
    versions: dict[str, str],
) -> int:
    """Record `cases` from one server; the number of failed checks."""
    failures = 0
    with server_class(port=port) as server:
        print(f"server {server.url} ready in {server.startup_s:.2f} s", file=sys.stderr)
        # trust_env=False: a proxy from the environment must not see loopback probe traffic.
        timeout = httpx.Timeout(30.0)
        async with httpx.AsyncClient(
            base_url=server.url, timeout=timeout, trust_env=False
        ) as client:
            await warm_up(client, cases)
            for case in cases:
                written = await record(client, case, out, versions)
                try:
                    CHECKS[case.name](out, case.name)
                    verdict = "ok"
                except AssertionError as e:
                    failures += 1
                    verdict = f"CHECK FAILED: {e}"
                print(
                    f"{written.relative_to(out)}: {written.stat().st_size} bytes, {verdict}",
                    file=sys.stderr,
                )
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--case", action="append", choices=[c.name for c in CASES], help="repeatable; default: all"
    )
    parser.add_argument("--port", type=int, default=None)
    parser.add_argument(
        "--configurable",
        type=json.loads,
        default=None,
        metavar="JSON",
        help="ad-hoc runs: config.configurable for every case, e.g. '{\"token_gap_s\": 0.05}'",
    )
    args = parser.parse_args(argv)
    cases = [c for c in CASES if not args.case or c.name in args.case]
    if args.configurable is not None:
        for c in cases:
            c.extra = {**c.extra, "config": {"configurable": args.configurable}}
    args.out.mkdir(parents=True, exist_ok=True)
    return asyncio.run(run(cases, args.out, args.port))


if __name__ == "__main__":
    sys.exit(main())
