"""Scripted LangGraph-wire SSE server for the streaming-timing benchmark.

It answers ``POST /runs/stream`` (and the thread-mode routes) on 127.0.0.1 with a
``text/event-stream`` body that copies what ``langgraph dev`` sends for the ``parallel``
graph with ``stream_mode: ["messages-tuple", "tasks"]`` (wire/21-parallel-messages-tuple+tasks.sse):
CRLF framing, one HTTP chunk per event, ``metadata`` first, ``tasks`` start/end events,
two interleaved parallel writer nodes whose tokens each carry the ~0.7 KB metadata dict,
a usage chunk and a ``chunk_position: "last"`` chunk per LLM call, a non-streamed node-output
message from ``merge``, ``: heartbeat`` comments every 5 s from the start of the response,
and no ``end`` event (the chunked body just ends, docs/WIRE.md §2).

Every stream's events are laid out in advance as a schedule of offsets from the response
start. All streams are driven by one timer (a heap holding each stream's next step), not by
one sleeping coroutine per node: one callback writes every step that is due, so 200
concurrent streams cost one wake-up per tick instead of 400 task switches, and the server's
own send jitter stays low. For every event the server records the scheduled time and the
true send time, so the harness can tell the client's error (receive - actual send) apart
from the server's lateness (actual send - schedule).

The send log is served (and cleared) by ``GET /-/sendlog`` and written to ``--send-log``
at shutdown (SIGTERM/SIGINT). Run it in its own process so its CPU is not the client's.

Usage: ``python bench/server.py --port 0 [--uvloop] [--send-log FILE]``; the first stdout
line is ``{"port": N, "pid": P, "loop": "uvloop"|"asyncio"}``.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import itertools
import os
import random
import resource
import signal
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, cast

import orjson

HOST = "127.0.0.1"  # loopback only, by house rule; there is deliberately no --host flag

# Kinds of scheduled steps; the one-letter codes also go into the send log.
METADATA = "M"
TASK_START = "S"
TOKEN = "T"
USAGE = "U"
LAST = "L"
TASK_END = "E"
WHOLE = "W"  # a node-output message (not streamed), ls_integration "langgraph"
HEARTBEAT = "H"  # a comment; not an event, not logged with an index
EOF = "Z"  # the terminating zero-length chunk

WORDS = (
    "alpha", " one", " two", " three", " four", " five", " six", " seven", " eight",
    " nine", " caf\u00e9", " \"quoted\"", " line\nbreak", " the", " quick", " brown",
    " fox", " jumps", " over", " lazy", " dog", ",", ".", " 42",
)  # fmt: skip
# Varied lengths, an escaped quote, an escaped newline and non-ASCII, as real tokens have.

PROVIDER = "fakeprovider"
REASONS = {200: "OK", 202: "Accepted", 204: "No Content", 404: "Not Found", 422: "Unprocessable"}

LANGGRAPH_STATIC = {
    "langgraph_version": "1.2.22",
    "langgraph_api_version": "0.16.7",
    "langgraph_plan": "enterprise",
    "langgraph_host": "self-hosted",
}


@dataclass(frozen=True)
class Scenario:
    """The shape of every stream: two parallel writers, then a merge node."""

    tokens_a: int = 113
    gap_a_ms: float = 40.0
    ttft_a_ms: float = 100.0
    tokens_b: int = 89
    gap_b_ms: float = 50.0
    ttft_b_ms: float = 150.0
    merge_ms: float = 500.0  # silent "thinking" in merge; the 5 s heartbeat lands in it
    heartbeat_s: float = 5.0
    # A random phase in [0, gap) added to each writer's first token, so concurrent streams
    # started together do not all send in the same millisecond (a synchronized burst would
    # measure queueing in the client, not its timing).
    phase_jitter: bool = True


@dataclass
class Step:
    """One scheduled write: an event, a heartbeat comment or the end of the body."""

    offset_ns: int
    kind: str
    node: str | None = None  # the langgraph_node the event carries (messages events only)
    text: str | None = None  # token content
    call: int | None = None  # index into Stream.calls for message events


@dataclass
class Call:
    """One LLM call (one message id) of a stream, for the send log."""

    msg_id: str
    node: str
    model: str
    start_idx: int = -1  # event index of the node's tasks start
    token_idx: list[int] = field(default_factory=list)


@dataclass
class Stream:
    """One response being sent; also its send-log record."""

    run_id: str
    thread_id: str
    transport: asyncio.Transport
    steps: list[Step]
    calls: list[Call]
    payloads: dict[str, Any]
    done: asyncio.Future[None]
    t0_ns: int = 0
    pos: int = 0
    sched_ns: list[int] = field(default_factory=list)
    send_ns: list[int] = field(default_factory=list)
    write_ns: list[int] = field(default_factory=list)
    nodes: list[str | None] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    heartbeats: int = 0
    buffered: int = 0  # writes that did not reach the kernel at once (send stamp is early)
    aborted: bool = False

    def record(self) -> dict[str, Any]:
        """The send-log line: one JSON object per stream, events by index."""
        return {
            "run_id": self.run_id,
            "t0_ns": self.t0_ns,
            "sched_ns": self.sched_ns,
            "send_ns": self.send_ns,
            "write_ns": self.write_ns,
            "nodes": self.nodes,
            "kinds": "".join(self.kinds),
            "calls": [
                {
                    "msg_id": c.msg_id,
                    "node": c.node,
                    "model": c.model,
                    "start_idx": c.start_idx,
                    "token_idx": c.token_idx,
                }
                for c in self.calls
            ],
            "heartbeats": self.heartbeats,
            "buffered": self.buffered,
            "aborted": self.aborted,
        }


def build_steps(sc: Scenario, rng: random.Random) -> list[Step]:
    """Lay out one stream's steps as offsets from the response start, in send order."""
    ms = 1_000_000
    steps: list[Step] = [
        Step(0, METADATA),
        Step(int(0.4 * ms), TASK_START, text="writer_a"),
        Step(int(0.8 * ms), TASK_START, text="writer_b"),
    ]
    ends: list[int] = []
    writers = (
        ("writer_a", 0, sc.tokens_a, sc.gap_a_ms, sc.ttft_a_ms),
        ("writer_b", 1, sc.tokens_b, sc.gap_b_ms, sc.ttft_b_ms),
    )
    for node, call, n, gap_ms, ttft_ms in writers:
        phase = rng.uniform(0.0, gap_ms) if sc.phase_jitter else 0.0
        first = int((ttft_ms + phase) * ms)
        gap = int(gap_ms * ms)
        for k in range(n):
            steps.append(Step(first + k * gap, TOKEN, node, WORDS[k % len(WORDS)], call))
        last = first + (n - 1) * gap
        # Usage chunk, "last" marker and tasks end follow the last token by about 1 ms each,
        # as in the capture (wire/21 timing: 1052.99, 1053.69, 1054.63 ms).
        steps.append(Step(last + 1 * ms, USAGE, node, None, call))
        steps.append(Step(last + int(1.7 * ms), LAST, node, None, call))
        steps.append(Step(last + int(2.6 * ms), TASK_END, text=node))
        ends.append(last + int(2.6 * ms))
    merge_start = max(ends) + 2 * ms
    steps.append(Step(merge_start, TASK_START, text="merge"))
    steps.append(Step(merge_start + int(sc.merge_ms * ms), WHOLE, "merge", "merged", 2))
    steps.append(Step(merge_start + int((sc.merge_ms + 0.8) * ms), TASK_END, text="merge"))
    end = merge_start + int((sc.merge_ms + 1.0) * ms)
    hb = int(sc.heartbeat_s * 1e9)
    # NOTE: the heartbeat timer counts from the response start and events do not reset it
    # (docs/WIRE.md §2: 5005, 10005, ... ms).
    steps.extend(Step(t, HEARTBEAT) for t in range(hb, end, hb))
    steps.append(Step(end, EOF))
    # sorted() is stable, so steps with equal offsets keep their listed order.
    return sorted(steps, key=lambda s: s.offset_ns)


def chunk(data: bytes) -> bytes:
    """Frame bytes as one HTTP/1.1 chunk."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def sse(event: str, data: bytes) -> bytes:
    """Frame one SSE event the way langgraph_api/sse.py does: CRLF lines, blank-line end."""
    return b"event: " + event.encode() + b"\r\ndata: " + data + b"\r\n\r\n"


def dumps(obj: object) -> bytes:
    """Compact JSON, as the server's orjson serde emits."""
    return orjson.dumps(obj)


class Scheduler:
    """Drives every open stream from one heap of (due time, seq, stream) entries."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.heap: list[tuple[int, int, Stream]] = []
        self.seq = itertools.count()
        self.timer: asyncio.TimerHandle | None = None
        self.timer_due = 0
        self.finished: list[Stream] = []
        self.streams_started = 0
        self.events_sent = 0

    def add(self, stream: Stream) -> None:
        """Start a stream now: its first step is due at once."""
        self.streams_started += 1
        stream.t0_ns = time.monotonic_ns()
        self._push(stream)

    def _push(self, stream: Stream) -> None:
        due = stream.t0_ns + stream.steps[stream.pos].offset_ns
        heapq.heappush(self.heap, (due, next(self.seq), stream))
        if self.timer is None or due < self.timer_due:
            self._arm(due)

    def _arm(self, due_ns: int) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer_due = due_ns
        # loop.time() is time.monotonic() on both asyncio and uvloop, the clock of due_ns.
        self.timer = self.loop.call_at(due_ns / 1e9, self._tick)

    def _tick(self) -> None:
        # Keep `timer` non-None while sending so _push() does not arm for each step: the
        # next wake-up is the heap's head, known only once every due step has gone out.
        heap = self.heap
        while heap and heap[0][0] <= time.monotonic_ns():
            due, _, stream = heapq.heappop(heap)
            if self._send(stream, due):
                self._push(stream)
        self.timer = None
        if heap:
            self._arm(heap[0][0])

    def _send(self, s: Stream, due_ns: int) -> bool:
        """Write the stream's current step; return whether it has more steps."""
        tr = s.transport
        if tr.is_closing():
            s.aborted = True
            self._finish(s)
            return False
        step = s.steps[s.pos]
        s.pos += 1
        if step.kind == HEARTBEAT:
            tr.write(chunk(b": heartbeat\r\n\r\n"))
            s.heartbeats += 1
            return True
        if step.kind == EOF:
            tr.write(b"0\r\n\r\n")
            self._finish(s)
            return False
        data = chunk(self._event_bytes(s, step))
        idx = len(s.send_ns)
        before = time.monotonic_ns()
        tr.write(data)
        # The stamp is taken right after write() returns. With an empty transport buffer,
        # write() has already handed the whole chunk to send(2), and on loopback send()
        # queues it on the receiver's socket before returning, so this is the moment the
        # client could first read it (give or take the microseconds write() needs to return;
        # a receiver on the other core can occasionally read a few us "before" the stamp).
        # Stamping before the write would charge the server's own syscall to the client.
        now = time.monotonic_ns()
        if tr.get_write_buffer_size():
            # Backpressure: part of the chunk waits in user space, so `now` is earlier than
            # the real send; counted so such runs can be recognised.
            s.buffered += 1
        s.send_ns.append(now)
        s.write_ns.append(now - before)  # how long write() took: the stamp's uncertainty
        s.sched_ns.append(due_ns)
        s.kinds.append(step.kind)
        s.nodes.append(step.node)
        self.events_sent += 1
        if step.call is not None:
            c = s.calls[step.call]
            if step.kind == TOKEN:
                c.token_idx.append(idx)
        elif step.kind == TASK_START:
            for c in s.calls:
                if c.node == step.text:
                    c.start_idx = idx
        return True

    def _finish(self, s: Stream) -> None:
        self.finished.append(s)
        if not s.done.done():
            s.done.set_result(None)

    def _event_bytes(self, s: Stream, step: Step) -> bytes:
        p = s.payloads
        kind = step.kind
        if kind == TOKEN:
            assert step.call is not None and step.text is not None
            c = s.calls[step.call]
            # Only the content differs between tokens of a call: splice it into the
            # pre-encoded rest of the message and the metadata dict.
            return sse(
                "messages",
                b'[{"content":'
                + dumps(step.text)
                + p["tok_mid"]
                + c.msg_id.encode()
                + p["tok_tail"][step.call],
            )
        if kind == METADATA:
            return sse("metadata", dumps({"run_id": s.run_id, "attempt": 1}))
        if kind == TASK_START:
            return sse("tasks", p["task_start"][step.text])
        if kind == TASK_END:
            return sse("tasks", p["task_end"][step.text])
        if kind == USAGE:
            assert step.call is not None
            return sse("messages", p["usage"][step.call])
        if kind == LAST:
            assert step.call is not None
            return sse("messages", p["last"][step.call])
        if kind == WHOLE:
            return sse("messages", p["whole"])
        raise AssertionError(kind)


def make_stream(
    sc: Scenario,
    rng: random.Random,
    transport: asyncio.Transport,
    request: dict[str, Any],
    thread_id: str | None,
    port: int,
    loop: asyncio.AbstractEventLoop,
) -> Stream:
    """Build one stream's schedule and pre-encoded payloads (ids differ per stream)."""
    run_id = str(uuid.uuid4())
    thread_id = thread_id or str(uuid.uuid4())
    assistant = str(request.get("assistant_id", "parallel"))
    req_meta = request.get("metadata") or {}
    if not isinstance(req_meta, dict):
        req_meta = {}
    task_ids = {n: str(uuid.uuid4()) for n in ("writer_a", "writer_b", "merge")}
    calls = [
        Call("lc_run--" + str(uuid.uuid4()), "writer_a", "fake-a"),
        Call("lc_run--" + str(uuid.uuid4()), "writer_b", "fake-b"),
        Call("merge-msg-" + run_id[:8], "merge", ""),
    ]
    base_meta: dict[str, Any] = {
        "created_by": "system",
        "graph_id": "parallel",
        "assistant_id": assistant,
        # NOTE: the request's metadata is merged at the top level (docs/WIRE.md §4); the product's
        # probe marker therefore appears in every token.
        **req_meta,
        "run_attempt": 1,
        **LANGGRAPH_STATIC,
        "langgraph_api_url": f"http://{HOST}:{port}",
        "run_id": run_id,
    }
    human: dict[str, Any] = {
        "content": "what's the weather in sf?",
        "additional_kwargs": {},
        "response_metadata": {},
        "type": "human",
        "name": None,
        "id": str(uuid.uuid4()),
    }

    def node_meta(node: str, step: int, llm: bool, model: str = "") -> dict[str, Any]:
        ns = f"{node}:{task_ids[node]}"
        triggers = [f"branch:to:{node}"]
        if node == "merge":
            triggers.append("join:writer_a+writer_b:merge")
        m: dict[str, Any] = {
            **base_meta,
            "thread_id": thread_id,
            "ls_integration": "langchain_chat_model" if llm else "langgraph",
            "langgraph_step": step,
            "langgraph_node": node,
            "langgraph_triggers": triggers,
            "langgraph_path": ["__pregel_pull", node],
            "langgraph_checkpoint_ns": ns,
        }
        if llm:
            m |= {
                "checkpoint_ns": ns,
                "ls_provider": PROVIDER,
                "ls_model_name": model,
                "ls_model_type": "chat",
                "ls_temperature": 0.0,
                "lc_versions": {"langchain-core": "1.7.2"},
            }
        return m

    def chunk_msg(
        call: Call, content: str, usage: dict[str, int] | None, last: bool
    ) -> dict[str, Any]:
        return {
            "content": content,
            "additional_kwargs": {},
            "response_metadata": (
                {"finish_reason": "stop", "model_name": call.model, "model_provider": PROVIDER}
                if usage
                else {}
            ),
            "type": "AIMessageChunk",
            "name": None,
            "id": call.msg_id,
            "tool_calls": [],
            "invalid_tool_calls": [],
            "usage_metadata": usage,
            "tool_call_chunks": [],
            "chunk_position": "last" if last else None,
        }

    final_msgs = []
    for i, n_tok in ((0, sc.tokens_a), (1, sc.tokens_b)):
        c = calls[i]
        text = "".join(WORDS[k % len(WORDS)] for k in range(n_tok))
        usage = {"input_tokens": 10, "output_tokens": n_tok, "total_tokens": 10 + n_tok}
        final_msgs.append(
            {
                **chunk_msg(c, text, usage, False),
                "type": "ai",
            }
        )
    for m in final_msgs:  # whole "ai" messages carry no chunk fields
        m.pop("tool_call_chunks")
        m.pop("chunk_position")
    whole_msg: dict[str, Any] = {
        "content": "merged",
        "additional_kwargs": {},
        "response_metadata": {},
        "type": "ai",
        "name": None,
        "id": calls[2].msg_id,
        "tool_calls": [],
        "invalid_tool_calls": [],
        "usage_metadata": None,
    }
    inputs = {
        "writer_a": {"messages": [human]},
        "writer_b": {"messages": [human]},
        "merge": {"messages": [human, *final_msgs]},
    }
    results = {
        "writer_a": {"messages": [final_msgs[0]]},
        "writer_b": {"messages": [final_msgs[1]]},
        "merge": {"messages": [whole_msg]},
    }
    task_start = {
        n: dumps(
            {
                "id": task_ids[n],
                "name": n,
                "input": inputs[n],
                "triggers": node_meta(n, 1, False)["langgraph_triggers"],
                "metadata": base_meta,  # tasks events carry the run-level metadata only
            }
        )
        for n in task_ids
    }
    task_end = {
        n: dumps(
            {"id": task_ids[n], "name": n, "error": None, "result": results[n], "interrupts": []}
        )
        for n in task_ids
    }
    # Token template: b'[{"content":' + <json text> + tok_mid + <msg id> + tok_tail[call].
    probe = dumps(
        [chunk_msg(calls[0], "\x00", None, False), node_meta("writer_a", 1, True, "fake-a")]
    )
    head, _, rest = probe.partition(b'"\\u0000"')
    assert head == b'[{"content":', head
    mid, _, _ = rest.partition(calls[0].msg_id.encode())
    tails = []
    for i in (0, 1):
        c = calls[i]
        full = dumps([chunk_msg(c, "", None, False), node_meta(c.node, 1, True, c.model)])
        tails.append(full.partition(c.msg_id.encode())[2])
    payloads: dict[str, Any] = {
        "tok_mid": mid,
        "tok_tail": tails,
        "task_start": task_start,
        "task_end": task_end,
        "usage": [
            dumps(
                [
                    chunk_msg(
                        calls[i],
                        "",
                        {"input_tokens": 10, "output_tokens": n, "total_tokens": 10 + n},
                        False,
                    ),
                    node_meta(calls[i].node, 1, True, calls[i].model),
                ]
            )
            for i, n in ((0, sc.tokens_a), (1, sc.tokens_b))
        ],
        "last": [
            dumps(
                [
                    chunk_msg(calls[i], "", None, True),
                    node_meta(calls[i].node, 1, True, calls[i].model),
                ]
            )
            for i in (0, 1)
        ],
        "whole": dumps([whole_msg, node_meta("merge", 2, False)]),
    }
    return Stream(
        run_id=run_id,
        thread_id=thread_id,
        transport=transport,
        steps=build_steps(sc, rng),
        calls=calls,
        payloads=payloads,
        done=loop.create_future(),
    )


class Server:
    """Minimal HTTP/1.1 front end: one request at a time per connection, keep-alive."""

    def __init__(self, sc: Scenario, seed: int | None) -> None:
        self.sc = sc
        self.rng = random.Random(seed)
        self.loop = asyncio.get_running_loop()
        self.sched = Scheduler(self.loop)
        self.port = 0
        self.connections = 0
        self.requests = 0
        self.started_ns = time.monotonic_ns()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve requests on one connection until the client closes it."""
        self.connections += 1
        # uvloop's TCPTransport does not subclass asyncio.Transport, hence a cast, not a check.
        transport = cast(asyncio.Transport, writer.transport)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.requests += 1
                path = target.split("?", 1)[0]
                keep = await self.route(method, path, body, transport)
                if not keep or headers.get("connection", "").lower() == "close":
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    async def route(self, method: str, path: str, body: bytes, tr: asyncio.Transport) -> bool:
        """Answer one request; return whether the connection stays usable."""
        parts = path.strip("/").split("/")
        thread_run = len(parts) == 4 and parts[0] == "threads" and parts[2:] == ["runs", "stream"]
        if method == "POST" and (parts == ["runs", "stream"] or thread_run):
            try:
                req = orjson.loads(body or b"{}")
            except orjson.JSONDecodeError:
                self.respond(tr, 422, dumps({"detail": "Invalid JSON in request body"}))
                return True
            if not isinstance(req, dict) or "assistant_id" not in req:
                self.respond(tr, 422, dumps({"detail": '"assistant_id" is a required property'}))
                return True
            thread_id = parts[1] if parts[0] == "threads" else None
            s = make_stream(self.sc, self.rng, tr, req, thread_id, self.port, self.loop)
            base = f"/threads/{thread_id}/runs/{s.run_id}" if thread_id else f"/runs/{s.run_id}"
            tr.write(
                (
                    "HTTP/1.1 200 OK\r\n"
                    "server: bench-langgraph-wire\r\n"
                    f"location: {base}/stream\r\n"
                    f"content-location: {base}\r\n"
                    "cache-control: no-store\r\n"
                    "connection: keep-alive\r\n"
                    "x-accel-buffering: no\r\n"
                    "content-type: text/event-stream; charset=utf-8\r\n"
                    "transfer-encoding: chunked\r\n\r\n"
                ).encode()
            )
            self.sched.add(s)
            await s.done
            return not s.aborted
        if method == "POST" and parts == ["threads"]:
            self.respond(
                tr, 200, dumps({"thread_id": str(uuid.uuid4()), "status": "idle", "metadata": {}})
            )
        elif method == "DELETE" and len(parts) == 2 and parts[0] == "threads":
            self.respond(tr, 204, b"")
        elif (
            method == "POST" and len(parts) == 5 and parts[0] == "threads" and parts[4] == "cancel"
        ):
            self.respond(tr, 202, b"")
        elif method == "POST" and parts == ["runs", "cancel"]:
            self.respond(tr, 204, b"")
        elif method == "GET" and parts == ["ok"]:
            self.respond(tr, 200, b'{"ok":true}')
        elif method == "GET" and parts == ["-", "sendlog"]:
            done, self.sched.finished = self.sched.finished, []
            self.respond(
                tr, 200, b"".join(dumps(s.record()) + b"\n" for s in done), "application/x-ndjson"
            )
        elif method == "GET" and parts == ["-", "stats"]:
            self.respond(tr, 200, dumps(self.stats()))
        else:
            self.respond(tr, 404, b'{"detail":"Not Found"}')
        return True

    def respond(
        self, tr: asyncio.Transport, status: int, body: bytes, ctype: str = "application/json"
    ) -> None:
        """Write a small non-streamed response."""
        head = (
            f"HTTP/1.1 {status} {REASONS[status]}\r\n"
            f"content-type: {ctype}\r\ncontent-length: {len(body)}\r\n\r\n"
        )
        tr.write(head.encode() + body)

    def stats(self) -> dict[str, Any]:
        """Counters and this process's CPU, for the harness."""
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "cpu_s": ru.ru_utime + ru.ru_stime,
            "wall_s": (time.monotonic_ns() - self.started_ns) / 1e9,
            "maxrss_kb": vm_hwm_kb(),
            "connections": self.connections,
            "requests": self.requests,
            "streams_started": self.sched.streams_started,
            "open_streams": len(self.sched.heap),
            "events_sent": self.sched.events_sent,
            "affinity": sorted(os.sched_getaffinity(0)),
        }


def vm_hwm_kb() -> int:
    """Peak resident set size (VmHWM) of this process in KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


async def serve(args: argparse.Namespace, loop_name: str) -> Server:
    """Run until SIGTERM/SIGINT; return the server so its unfetched send log can be written."""
    sc = Scenario(
        tokens_a=args.tokens_a,
        gap_a_ms=args.gap_a_ms,
        ttft_a_ms=args.ttft_a_ms,
        tokens_b=args.tokens_b,
        gap_b_ms=args.gap_b_ms,
        ttft_b_ms=args.ttft_b_ms,
        merge_ms=args.merge_ms,
        heartbeat_s=args.heartbeat_s,
        phase_jitter=not args.no_phase_jitter,
    )
    app = Server(sc, args.seed)
    # backlog: up to 200 clients connect in the same millisecond at the start of a level.
    server = await asyncio.start_server(app.handle, HOST, args.port, backlog=1024)
    app.port = server.sockets[0].getsockname()[1]
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        app.loop.add_signal_handler(sig, stop.set)
    print(
        orjson.dumps({"port": app.port, "pid": os.getpid(), "loop": loop_name}).decode(), flush=True
    )
    await stop.wait()
    server.close()
    return app


def main(argv: list[str] | None = None) -> None:
    """Parse flags and run the server on the chosen event loop."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (printed on stdout)")
    p.add_argument("--uvloop", action="store_true", help="run on uvloop, not the asyncio loop")
    p.add_argument("--send-log", help="write the send log (JSON lines) here at shutdown")
    p.add_argument("--seed", type=int, default=None, help="seed for the per-stream phase jitter")
    d = Scenario()
    p.add_argument("--tokens-a", type=int, default=d.tokens_a)
    p.add_argument("--gap-a-ms", type=float, default=d.gap_a_ms)
    p.add_argument("--ttft-a-ms", type=float, default=d.ttft_a_ms)
    p.add_argument("--tokens-b", type=int, default=d.tokens_b)
    p.add_argument("--gap-b-ms", type=float, default=d.gap_b_ms)
    p.add_argument("--ttft-b-ms", type=float, default=d.ttft_b_ms)
    p.add_argument("--merge-ms", type=float, default=d.merge_ms)
    p.add_argument("--heartbeat-s", type=float, default=d.heartbeat_s)
    p.add_argument("--no-phase-jitter", action="store_true")
    args = p.parse_args(argv)
    if args.uvloop:
        import uvloop

        app = uvloop.run(serve(args, "uvloop"))
    else:
        app = asyncio.run(serve(args, "asyncio"))
    if args.send_log:
        with open(args.send_log, "wb") as f:
            for s in app.sched.finished:
                f.write(dumps(s.record()) + b"\n")
    print(orjson.dumps({"stats": app.stats()}).decode(), flush=True)


if __name__ == "__main__":
    main()
