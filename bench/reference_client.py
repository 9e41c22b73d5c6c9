"""Minimal raw-asyncio-socket load client: the benchmark's reference for timing error and CPU.

It does the least a correct LangGraph streaming client can do: one TCP connection per stream
(an ``asyncio.Protocol`` on uvloop), an HTTP/1.1 request written by hand, chunked decoding,
SSE events split on ``\\r\\n\\r\\n``, and orjson for each event's data line. Every socket read
is stamped with ``time.monotonic_ns()`` before anything is parsed; all events completed by
that read share the stamp (docs/WIRE.md §17).

It takes the same flags as the product's ``load`` subcommand and writes the same
``--trace-out`` JSON lines and ``--json-summary`` last line, so the harness treats both alike:

    python bench/reference_client.py --url http://127.0.0.1:PORT --assistant parallel \\
        --concurrency 50 --duration 20 --trace-out trace.jsonl --json-summary
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import resource
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any, cast

import orjson

STREAM_TIMEOUT_S = 120.0  # a stream that takes longer is a bench failure, not a slow run


@dataclass
class Trace:
    """What one stream produced, in the shared trace format."""

    t_request_ns: int = 0
    run_id: str | None = None
    recv_ns: list[int] = field(default_factory=list)
    nodes: list[str | None] = field(default_factory=list)
    error: str | None = None
    task_start_ns: dict[str, int] = field(default_factory=dict)
    # msg id -> [node, model, token receive stamps]
    calls: dict[str, tuple[str | None, str | None, list[int]]] = field(default_factory=dict)
    heartbeats: int = 0

    def to_json(self) -> bytes:
        """One --trace-out line; per-call TTFT is node TTFT (first token - tasks start)."""
        calls = []
        for msg_id, (node, model, toks) in self.calls.items():
            start = self.task_start_ns.get(node or "", self.t_request_ns)
            calls.append(
                {
                    "msg_id": msg_id,
                    "node": node,
                    "model": model,
                    "first_token_s": (toks[0] - self.t_request_ns) / 1e9,
                    "last_token_s": (toks[-1] - self.t_request_ns) / 1e9,
                    "tokens": len(toks),
                    "ttft_s": (toks[0] - start) / 1e9,
                    "itl_s": [(b - a) / 1e9 for a, b in itertools.pairwise(toks)],
                }
            )
        return orjson.dumps(
            {
                "run_id": self.run_id,
                "t_request_ns": self.t_request_ns,
                "recv_ns": self.recv_ns,
                "nodes": self.nodes,
                "calls": calls,
                "error": self.error,
            }
        )


class StreamProtocol(asyncio.Protocol):
    """One POST /runs/stream: send the request, decode the chunked SSE response."""

    def __init__(self, request: bytes, trace: Trace, done: asyncio.Future[None]) -> None:
        self.request = request
        self.trace = trace
        self.done = done
        self.transport: asyncio.Transport | None = None
        self.raw = bytearray()  # undecoded HTTP bytes
        self.sse = bytearray()  # de-chunked SSE bytes not yet split into events
        self.in_body = False
        self.finished = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Write the request; t_request is taken just before the write."""
        # uvloop's TCPTransport does not subclass asyncio.Transport, hence a cast, not a check.
        self.transport = cast(asyncio.Transport, transport)
        self.trace.t_request_ns = time.monotonic_ns()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        """Stamp the read first, then decode whatever it completed."""
        now = time.monotonic_ns()
        raw = self.raw
        raw += data
        pos = 0
        if not self.in_body:
            end = raw.find(b"\r\n\r\n")
            if end < 0:
                return
            status_line = bytes(raw[: raw.find(b"\r\n")])
            parts = status_line.split(b" ", 2)
            if len(parts) < 2 or parts[1] != b"200":
                self._end("http_status")
                return
            self.in_body = True
            pos = end + 4
        # Chunked transfer decoding: "<hex size>\r\n<payload>\r\n", ended by a 0-size chunk.
        sse = self.sse
        while True:
            nl = raw.find(b"\r\n", pos)
            if nl < 0:
                break
            size = int(raw[pos:nl].split(b";", 1)[0], 16)
            if size == 0:
                self._split_events(now)
                self._end(None)
                return
            stop = nl + 2 + size
            if len(raw) < stop + 2:
                break
            sse += raw[nl + 2 : stop]
            pos = stop + 2
        del raw[:pos]
        self._split_events(now)

    def _split_events(self, now: int) -> None:
        sse = self.sse
        tr = self.trace
        start = 0
        while True:
            end = sse.find(b"\r\n\r\n", start)
            if end < 0:
                break
            block = bytes(sse[start:end])
            start = end + 4
            if block.startswith(b":"):
                tr.heartbeats += 1  # comments are not events and get no index
                continue
            name = b""
            data = b""
            for line in block.split(b"\r\n"):
                if line.startswith(b"event:"):
                    name = line[6:].strip()
                elif line.startswith(b"data:"):
                    data = line[5:].lstrip(b" ")
            self._event(name.split(b"|", 1)[0], data, now)
        del sse[:start]

    def _event(self, name: bytes, data: bytes, now: int) -> None:
        tr = self.trace
        tr.recv_ns.append(now)
        node: str | None = None
        if name == b"messages":
            msg, meta = orjson.loads(data)
            node = meta.get("langgraph_node")
            if msg.get("type") == "AIMessageChunk" and (
                msg.get("content") or msg.get("tool_call_chunks")
            ):
                call = tr.calls.get(msg["id"])
                if call is None:
                    call = tr.calls[msg["id"]] = (node, meta.get("ls_model_name"), [])
                call[2].append(now)
        elif name == b"tasks":
            task = orjson.loads(data)
            if "input" in task:  # a start carries "input", an end carries "result"
                tr.task_start_ns[task["name"]] = now
        elif name == b"metadata":
            tr.run_id = orjson.loads(data)["run_id"]
        elif name == b"error":
            tr.error = "run_error"
        tr.nodes.append(node)

    def _end(self, error: str | None) -> None:
        if self.finished:
            return
        self.finished = True
        if error and not self.trace.error:
            self.trace.error = error
        if self.transport is not None:
            self.transport.close()
        if not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        """EOF before the final chunk means the stream was cut short."""
        self._end("incomplete")


async def run_stream(host: str, port: int, request: bytes) -> Trace:
    """Open a connection, run one stream to its end, return its trace."""
    loop = asyncio.get_running_loop()
    trace = Trace()
    done: asyncio.Future[None] = loop.create_future()
    try:
        transport, _ = await loop.create_connection(
            lambda: StreamProtocol(request, trace, done), host, port
        )
    except OSError:
        trace.error = "connect"
        return trace
    try:
        await asyncio.wait_for(done, STREAM_TIMEOUT_S)
    except TimeoutError:
        trace.error = "deadline"
        transport.close()
    return trace


def vm_hwm_kb() -> int:
    """Peak resident set size (VmHWM) of this process in KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def build_request(url: str, assistant: str, mode: str) -> tuple[str, int, bytes]:
    """The stateless request the product sends (docs/WIRE.md §1), as raw HTTP/1.1 bytes."""
    if mode != "stateless":
        raise SystemExit("the reference client implements --mode stateless only")
    u = urllib.parse.urlsplit(url)
    host = u.hostname or "127.0.0.1"
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("the benchmark client only talks to loopback")
    port = u.port or 80
    body = orjson.dumps(
        {
            "assistant_id": assistant,
            "input": {"messages": [{"role": "human", "content": "what's the weather in sf?"}]},
            "stream_mode": ["messages-tuple", "tasks"],
            "stream_subgraphs": True,
            "on_disconnect": "cancel",
            "metadata": {"probe": "langgraph-stream-exporter", "probe_target": "bench"},
        }
    )
    path = u.path.rstrip("/") + "/runs/stream"
    head = (
        f"POST {path} HTTP/1.1\r\nhost: {host}:{port}\r\n"
        "accept: text/event-stream\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return host, port, head.encode() + body


async def load(args: argparse.Namespace) -> tuple[list[Trace], float]:
    """Keep at most C streams open; start no new one after S seconds or N streams."""
    host, port, request = build_request(args.url, args.assistant, args.mode)
    traces: list[Trace] = []
    started = 0
    t_stop = time.monotonic() + args.duration

    async def worker() -> None:
        nonlocal started
        while time.monotonic() < t_stop and (
            args.max_streams is None or started < args.max_streams
        ):
            started += 1
            traces.append(await run_stream(host, port, request))

    t0 = time.monotonic()
    async with asyncio.TaskGroup() as tg:
        for _ in range(args.concurrency):
            tg.create_task(worker())
    return traces, time.monotonic() - t0


def main(argv: list[str] | None = None) -> None:
    """Run the load phase, then write traces and the summary."""
    p = argparse.ArgumentParser(description="raw-socket reference load client")
    p.add_argument("--url", required=True)
    p.add_argument("--assistant", default="parallel")
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--max-streams", type=int, default=None)
    p.add_argument("--mode", choices=["stateless", "thread"], default="stateless")
    p.add_argument("--trace-out")
    p.add_argument("--json-summary", action="store_true")
    p.add_argument("--no-uvloop", action="store_true", help="use the stdlib asyncio loop")
    args = p.parse_args(argv)

    import uvloop  # imported before the CPU window opens, so its import is not counted

    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    if args.no_uvloop:
        traces, wall_s = asyncio.run(load(args))
    else:
        traces, wall_s = uvloop.run(load(args))
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)

    if args.trace_out:
        with open(args.trace_out, "wb") as f:
            for t in traces:
                f.write(t.to_json() + b"\n")
    if args.json_summary:
        summary: dict[str, Any] = {
            "cpu_s": round(cpu_s, 6),
            "wall_s": round(wall_s, 6),
            "maxrss_kb": vm_hwm_kb(),
            "streams": len(traces),
            "events": sum(len(t.recv_ns) for t in traces),
            "errors": sum(1 for t in traces if t.error),
        }
        sys.stdout.write(orjson.dumps(summary).decode() + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
