"""A raw asyncio HTTP/1.1 server that plays scripted responses, plus LangGraph wire builders.

Why raw asyncio and not an ASGI app: ASGI servers re-chunk, buffer and hide when bytes reach the
socket (httpx's `ASGITransport` buffers the whole body). Timing tests need "one `send` step =
one TCP write, drained to the kernel, stamped with `time.monotonic_ns()`", and fault tests need
abrupt closes and RSTs at exact points. So this server parses just enough HTTP/1.1 for httpx and
aiohttp and writes every byte itself.

Usage::

    async with ScriptedServer() as server:
        server.route_stateless(langgraph_stream(["agent"], tokens=3, gap_s=0.05))
        ...  # point a client at server.url
        assert server.sent[0].tag == "metadata"

A *script* is a list of steps built with the factory functions below (`status`, `send`, `sleep`,
`wait`, `end`, `close`, `reset`, `hang`, `body`, `drip`, and `split` for an event cut across
writes). The wire builders (`sse`, `token`, `task_start` …) produce bytes identical to the
captures of a real server (CRLF framing, compact orjson JSON, same key order; docs/WIRE.md
§2–§7); `langgraph_stream` assembles a whole run from them.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import itertools
import re
import socket
import ssl
import struct
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, TypeAlias

import orjson

__all__ = [
    "DEFAULT_RUN",
    "Body",
    "Close",
    "Drip",
    "End",
    "Hang",
    "NodeSpec",
    "RecordedRequest",
    "Reset",
    "RunInfo",
    "Script",
    "ScriptError",
    "ScriptedServer",
    "Send",
    "SentRecord",
    "Sleep",
    "Status",
    "Step",
    "ThreadRoutes",
    "Wait",
    "body",
    "close",
    "drip",
    "end",
    "error_event",
    "hang",
    "heartbeat",
    "langgraph_stream",
    "last_chunk",
    "metadata_event",
    "node_output_message",
    "reset",
    "run_id_of",
    "send",
    "sleep",
    "split",
    "sse",
    "status",
    "task_end",
    "task_start",
    "token",
    "usage_chunk",
    "wait",
]

# --------------------------------------------------------------------------------------------
# Script steps
# --------------------------------------------------------------------------------------------

#: Headers of a real LangGraph stream response (docs/WIRE.md §9), minus the per-run location headers
#: (route helpers add those) and the framing headers (added from the step's own options).
SSE_HEADERS: Mapping[str, str] = {
    "cache-control": "no-store",
    "x-accel-buffering": "no",
    "content-type": "text/event-stream; charset=utf-8",
    "vary": "Origin",
}


@dataclass(frozen=True, slots=True)
class Status:
    """Write the status line and headers. `headers` is merged over the SSE defaults; a value of
    None removes that default header."""

    code: int = 200
    headers: Mapping[str, str | None] | None = None
    chunked: bool = True


@dataclass(frozen=True, slots=True)
class Send:
    """One write (one HTTP chunk when chunked), drained, recorded as a `SentRecord`."""

    data: bytes
    tag: str | None = None


@dataclass(frozen=True, slots=True)
class Sleep:
    s: float


@dataclass(frozen=True, slots=True)
class Wait:
    """Block the script until a test sets `event`."""

    event: asyncio.Event


@dataclass(frozen=True, slots=True)
class End:
    """Terminate the body cleanly (`0\\r\\n\\r\\n` when chunked), then close unless `keep_alive`."""

    keep_alive: bool = False


@dataclass(frozen=True, slots=True)
class Close:
    """Close the socket (FIN) without the chunked terminator: an incomplete body."""


@dataclass(frozen=True, slots=True)
class Reset:
    """Abort the connection with a TCP RST (SO_LINGER 1, 0)."""


@dataclass(frozen=True, slots=True)
class Hang:
    """Send nothing more and keep the connection open until the server stops."""


@dataclass(frozen=True, slots=True)
class Body:
    """A whole non-streaming response with Content-Length (JSON errors, 202/204 replies)."""

    code: int
    data: bytes = b""
    content_type: str | None = "application/json"
    headers: Mapping[str, str] | None = None
    keep_alive: bool = False


@dataclass(frozen=True, slots=True)
class Drip:
    """Send `data` one byte per write (one byte per HTTP chunk when chunked), `every_s` apart."""

    data: bytes
    every_s: float
    tag: str | None = None


Step: TypeAlias = Status | Send | Sleep | Wait | End | Close | Reset | Hang | Body | Drip
Script: TypeAlias = list[Step]


def status(
    code: int = 200,
    headers: Mapping[str, str | None] | None = None,
    chunked: bool = True,
) -> Status:
    """Status line + headers; without this step a default 200 SSE chunked head goes out lazily."""
    return Status(code, headers, chunked)


def send(data: bytes, tag: str | None = None) -> Send:
    return Send(data, tag)


def sleep(s: float) -> Sleep:
    return Sleep(s)


def wait(event: asyncio.Event) -> Wait:
    return Wait(event)


def end(*, keep_alive: bool = False) -> End:
    return End(keep_alive)


def close() -> Close:
    return Close()


def reset() -> Reset:
    return Reset()


def hang() -> Hang:
    return Hang()


def body(
    code: int,
    data: bytes | Any = b"",
    content_type: str | None = "application/json",
    *,
    headers: Mapping[str, str] | None = None,
    keep_alive: bool = False,
) -> Body:
    """A complete response; non-bytes `data` is encoded as compact JSON (like the real server)."""
    raw = data if isinstance(data, bytes) else orjson.dumps(data)
    return Body(code, raw, content_type, headers, keep_alive)


def drip(data: bytes, every_s: float, tag: str | None = None) -> Drip:
    return Drip(data, every_s, tag)


def split(data: bytes, *at: int, gap_s: float = 0.0, tag: str | None = None) -> list[Step]:
    """`data` as several writes cut at byte offsets `at` (e.g. an event split mid-line).

    Back-to-back writes may still reach the client in one read; give `gap_s` (~10 ms) when the
    client must see the pieces separately.
    """
    cuts = [0, *sorted(at), len(data)]
    steps: list[Step] = []
    for i, (lo, hi) in enumerate(itertools.pairwise(cuts)):
        if i and gap_s:
            steps.append(Sleep(gap_s))
        steps.append(Send(data[lo:hi], tag))
    return steps


class ScriptError(RuntimeError):
    """A script is malformed (e.g. `status` after the head was sent). Re-raised on server exit."""


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]  # lower-case keys; repeated headers joined with ", "
    body: bytes
    received_ns: int  # time.monotonic_ns() when the full request was read
    params: dict[str, str] = field(default_factory=dict)  # `{name}` segments of a pattern route
    connection: int = 0  # 1-based index of the TCP connection it arrived on
    #: when the client closed its side before the script finished (seen as EOF while the script
    #: runs on a `connection: close` response, or as a failed write); None if it never did
    disconnected_ns: int | None = None
    disconnected: asyncio.Event = field(default_factory=asyncio.Event, repr=False, compare=False)

    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass(frozen=True, slots=True)
class SentRecord:
    sent_ns: int  # time.monotonic_ns() right after the write was drained to the kernel
    nbytes: int  # payload bytes, excluding chunk framing
    tag: str | None
    connection: int = 0  # 1-based TCP connection index, as in RecordedRequest.connection


@dataclass
class ThreadRoutes:
    """What `ScriptedServer.route_thread` set up; the events let scripts react to cleanup calls."""

    thread_id: str
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)
    deleted: asyncio.Event = field(default_factory=asyncio.Event)
    run_status: str = "success"  # reported by GET /threads/{tid}/runs/{rid}


ScriptSource: TypeAlias = Sequence[Step] | Callable[[RecordedRequest], Sequence[Step]]


@dataclass
class _Route:
    script: ScriptSource
    headers: Mapping[str, str]
    run_location: str | None  # "/runs" or "/threads/<tid>/runs": location headers (docs/WIRE.md §9)
    run_id: str | None
    pattern: re.Pattern[str] | None = None


_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _compile(path: str) -> re.Pattern[str] | None:
    """`/threads/{tid}/runs/{rid}/cancel` → a regex with one group per `{name}`; None if literal."""
    if not _PARAM.search(path):
        return None
    out, pos = [], 0
    for m in _PARAM.finditer(path):
        out.append(re.escape(path[pos : m.start()]))
        out.append(f"(?P<{m.group(1)}>[^/]+)")
        pos = m.end()
    out.append(re.escape(path[pos:]))
    return re.compile("".join(out) + r"\Z")


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------

_MAX_HEAD = 1 << 20


class _Response:
    """Writes one response on a connection, tracking whether the head went out and its framing."""

    def __init__(
        self,
        writer: asyncio.StreamWriter,
        sent: list[SentRecord],
        base_headers: Mapping[str, str],
        keep_alive: bool,
        connection: int,
    ) -> None:
        self.connection = connection
        self.writer = writer
        self.sent = sent
        self.base_headers = base_headers
        self.keep_alive = keep_alive
        self.started = False
        self.chunked = True

    async def _write(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def start(self, st: Status) -> None:
        if self.started:
            raise ScriptError("status() after the response head was already sent")
        headers: dict[str, str] = dict(SSE_HEADERS)
        headers.update(self.base_headers)
        for k, v in (st.headers or {}).items():
            if v is None:
                headers.pop(k.lower(), None)
            else:
                headers[k.lower()] = v
        self.chunked = st.chunked
        if st.chunked:
            headers.setdefault("transfer-encoding", "chunked")
        else:
            # NOTE: without chunking (and without a caller-given content-length) the body is
            # delimited by the close, so the connection cannot be reused.
            self.keep_alive = self.keep_alive and "content-length" in headers
        headers.setdefault("connection", "keep-alive" if self.keep_alive else "close")
        self.started = True
        await self._write(_head(st.code, headers))

    async def send(self, data: bytes, tag: str | None) -> None:
        if not self.started:
            await self.start(Status())
        frame = data
        if self.chunked:
            # An empty chunk would be the terminator; `end()` is the way to send that.
            frame = b"%x\r\n%b\r\n" % (len(data), data) if data else b""
        if frame:
            await self._write(frame)
        self.sent.append(SentRecord(time.monotonic_ns(), len(data), tag, self.connection))

    async def end(self) -> None:
        if not self.started:
            await self.start(Status())
        if self.chunked:
            await self._write(b"0\r\n\r\n")

    async def body(self, b: Body) -> None:
        if self.started:
            raise ScriptError("body() after the response head was already sent")
        self.started = True
        headers: dict[str, str] = {}
        if b.content_type is not None:
            headers["content-type"] = b.content_type
        headers.update({k.lower(): v for k, v in (b.headers or {}).items()})
        no_body = b.code in (204, 304) or 100 <= b.code < 200
        if not no_body:
            headers.setdefault("content-length", str(len(b.data)))
        headers.setdefault("connection", "keep-alive" if b.keep_alive else "close")
        await self._write(_head(b.code, headers) + (b"" if no_body else b.data))


def _head(code: int, headers: Mapping[str, str]) -> bytes:
    try:
        phrase = http.HTTPStatus(code).phrase
    except ValueError:
        phrase = ""
    lines = [f"HTTP/1.1 {code} {phrase}"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _keeps_alive(steps: Sequence[Step]) -> bool:
    """The head's `connection` header must be decided before the script's last step runs."""
    for st in steps:
        if isinstance(st, End | Body):
            return st.keep_alive
        if isinstance(st, Close | Reset | Hang):
            return False
    return False


class ScriptedServer:
    """HTTP/1.1 on 127.0.0.1:<ephemeral>, optionally TLS; each request plays its route's script.

    Unmatched requests get 404 `{"detail":"Not Found"}`. Responses close the connection unless
    the script ends with `end(keep_alive=True)` / `body(..., keep_alive=True)`. Exceptions raised
    while playing a script (bugs in the test) are collected in `errors` and re-raised on exit.
    `hang()` lasts until the server stops or the client disconnects. `reset()` right after a
    send may discard data the client has not read yet (the kernel drops it on RST): put a
    `wait(event)` or `sleep` before it when the client must see that data first.
    """

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self._ssl = ssl_context
        self._server: asyncio.Server | None = None
        self._routes: dict[tuple[str, str], _Route] = {}
        self._tasks: set[asyncio.Task[Any]] = set()  # connection handlers
        self._watchers: set[asyncio.Task[Any]] = set()  # per-response disconnect watchers
        self._writers: set[asyncio.StreamWriter] = set()
        self._stopping = asyncio.Event()
        self._url: str | None = None
        self.port = 0
        self.requests: list[RecordedRequest] = []
        self.sent: list[SentRecord] = []
        self.errors: list[BaseException] = []
        self.connections = 0  # TCP connections accepted so far

    # -- lifecycle ------------------------------------------------------------------------

    async def __aenter__(self) -> ScriptedServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
        if exc is None and self.errors:
            raise self.errors[0]

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", 0, ssl=self._ssl, limit=_MAX_HEAD
        )
        self.port = self._server.sockets[0].getsockname()[1]
        # The TLS cert is issued for "localhost" (trustme), so the URL must use that name;
        # the socket still listens on 127.0.0.1 only.
        self._url = (
            f"https://localhost:{self.port}" if self._ssl else f"http://127.0.0.1:{self.port}"
        )

    async def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            w.transport.abort()
        tasks = [t for t in self._tasks | self._watchers if not t.done()]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def wait_idle(self) -> None:
        """Wait until every accepted connection has been handled to its end (no polling)."""
        while pending := [t for t in self._tasks if not t.done()]:
            await asyncio.wait(pending)

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("ScriptedServer is not started")
        return self._url

    # -- routes ---------------------------------------------------------------------------

    def route(
        self,
        method: str,
        path: str,
        script: ScriptSource,
        *,
        headers: Mapping[str, str] | None = None,
        run_location: str | None = None,
        run_id: str | None = None,
    ) -> None:
        """Serve `script` for (method, path). `{name}` segments in `path` match any one segment
        (exact routes win). `headers` are extra defaults for this route's `status` head.
        `run_location` (e.g. "/runs") adds `location`/`content-location` for the run, whose id
        is `run_id`, else the script's `metadata` event's run_id, else a fresh uuid."""
        self._routes[(method.upper(), path)] = _Route(
            script=script,
            headers={k.lower(): v for k, v in (headers or {}).items()},
            run_location=run_location,
            run_id=run_id,
            pattern=_compile(path),
        )

    def route_stateless(self, script: ScriptSource, *, run_id: str | None = None) -> None:
        """`POST /runs/stream`, with stateless location headers (docs/WIRE.md §9)."""
        self.route("POST", "/runs/stream", script, run_location="/runs", run_id=run_id)

    def route_thread(
        self, thread_id: str, script: ScriptSource, *, run_id: str | None = None
    ) -> ThreadRoutes:
        """The thread flow: create, stream, cancel, run status, delete (docs/WIRE.md §8, §11).

        To end the stream when the probe cancels the run (the real server's silent end), pass a
        callable that refers to the returned routes:
        `tr = server.route_thread(tid, lambda req: [send(...), wait(tr.cancelled), end()])`.
        """
        tr = ThreadRoutes(thread_id)
        created = "2026-11-24T09:26:42.499804+00:00"
        self.route(
            "POST",
            "/threads",
            [
                body(
                    200,
                    {
                        "thread_id": thread_id,
                        "created_at": created,
                        "updated_at": created,
                        "state_updated_at": created,
                        "metadata": {},
                        "status": "idle",
                        "config": {},
                        "values": None,
                    },
                )
            ],
        )
        base = f"/threads/{thread_id}"
        self.route(
            "POST", f"{base}/runs/stream", script, run_location=f"{base}/runs", run_id=run_id
        )

        def on_cancel(req: RecordedRequest) -> Script:
            tr.cancelled.set()
            return [body(202, b"", content_type=None)]

        def on_delete(req: RecordedRequest) -> Script:
            tr.deleted.set()
            return [body(204, b"", content_type=None)]

        def on_get_run(req: RecordedRequest) -> Script:
            rid = req.params["rid"]
            return [body(200, {"run_id": rid, "thread_id": thread_id, "status": tr.run_status})]

        self.route("POST", f"{base}/runs/{{rid}}/cancel", on_cancel)
        self.route("GET", f"{base}/runs/{{rid}}", on_get_run)
        self.route("DELETE", base, on_delete)
        return tr

    def requests_to(self, method: str, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == method.upper() and r.path == path]

    def _match(self, method: str, path: str) -> tuple[_Route, dict[str, str]] | None:
        exact = self._routes.get((method, path))
        if exact is not None:
            return exact, {}
        for (m, _), route in self._routes.items():
            if m == method and route.pattern is not None:
                hit = route.pattern.match(path)
                if hit:
                    return route, hit.groupdict()
        return None

    # -- connection handling --------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            await self._serve(reader, writer)
        except asyncio.CancelledError:
            # NOTE: 3.11's start_server wrapper calls task.exception() on the finished handler,
            # which raises and logs for a cancelled task; so end normally when stop() cancels us.
            if not self._stopping.is_set():
                raise
        finally:
            self._writers.discard(writer)
            self._tasks.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        conn_no = self.connections
        _drain_to_kernel(writer.transport)
        req: RecordedRequest | None = None
        try:
            while True:
                req = await self._read_request(reader, writer, conn_no)
                if req is None:
                    break
                self.requests.append(req)
                if not await self._respond(req, reader, writer):
                    break
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            if req is not None:
                _mark_disconnected(req)
        except Exception as exc:  # a bug in a test's script: surface it on server exit
            self.errors.append(exc)
        finally:
            if not writer.transport.is_closing():
                writer.close()
                # The peer closes after a `connection: close` response; stop() aborts stragglers.
                with contextlib.suppress(ConnectionError, ssl.SSLError):
                    await writer.wait_closed()

    async def _read_request(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn_no: int
    ) -> RecordedRequest | None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None  # the client closed between requests
        lines = head[:-4].decode("latin-1").split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            key, value = name.strip().lower(), value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        if headers.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await writer.drain()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            data = await _read_chunked(reader)
        else:
            data = await reader.readexactly(int(headers.get("content-length", "0")))
        path, _, query = target.partition("?")
        return RecordedRequest(
            method=method.upper(),
            path=path,
            query=query,
            headers=headers,
            body=data,
            received_ns=time.monotonic_ns(),
            connection=conn_no,
        )

    async def _respond(
        self, req: RecordedRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Play the matching script; return True to keep the connection for another request."""
        matched = self._match(req.method, req.path)
        if matched is None:
            steps: Sequence[Step] = [body(404, {"detail": "Not Found"})]
            route_headers: dict[str, str] = {}
        else:
            route, req.params = matched
            steps = route.script(req) if callable(route.script) else route.script
            route_headers = dict(route.headers)
            if route.run_location is not None:
                rid = route.run_id or run_id_of(steps) or str(uuid.uuid4())
                route_headers.setdefault("location", f"{route.run_location}/{rid}/stream")
                route_headers.setdefault("content-location", f"{route.run_location}/{rid}")
        keep_alive = _keeps_alive(steps)
        resp = _Response(writer, self.sent, route_headers, keep_alive, req.connection)
        watcher: asyncio.Task[None] | None = None
        if not keep_alive:
            # Nothing more is read from a `connection: close` connection, so EOF on it means the
            # client went away: lets fault tests see that a cancelled probe really closed.
            watcher = asyncio.create_task(_watch_disconnect(reader, req))
            self._watchers.add(watcher)
            watcher.add_done_callback(self._watchers.discard)
        try:
            return await self._play(steps, resp, req, writer)
        finally:
            # Cancelled before our own close/abort is processed, so it never reports those.
            if watcher is not None:
                watcher.cancel()

    async def _play(
        self,
        steps: Sequence[Step],
        resp: _Response,
        req: RecordedRequest,
        writer: asyncio.StreamWriter,
    ) -> bool:
        for st in steps:
            match st:
                case Status():
                    await resp.start(st)
                case Send(data=data, tag=tag):
                    await resp.send(data, tag)
                case Sleep(s=s):
                    await asyncio.sleep(s)
                case Wait(event=event):
                    await event.wait()
                case End(keep_alive=keep_alive):
                    await resp.end()
                    return keep_alive and resp.keep_alive
                case Close():
                    writer.close()
                    return False
                case Reset():
                    _abort_with_rst(writer)
                    return False
                case Hang():
                    await _first_of(self._stopping, req.disconnected)
                    return False
                case Body():
                    await resp.body(st)
                    return st.keep_alive
                case Drip(data=data, every_s=every_s, tag=tag):
                    for i in range(len(data)):
                        if i:
                            await asyncio.sleep(every_s)
                        await resp.send(data[i : i + 1], tag)
        await resp.end()  # a script that just stops ends like end()
        return False


def _mark_disconnected(req: RecordedRequest) -> None:
    if req.disconnected_ns is None:
        req.disconnected_ns = time.monotonic_ns()
    req.disconnected.set()


async def _watch_disconnect(reader: asyncio.StreamReader, req: RecordedRequest) -> None:
    with contextlib.suppress(Exception):
        while await reader.read(65536):
            pass  # bytes after the request (pipelining) are ignored: we close anyway
    _mark_disconnected(req)


async def _first_of(*events: asyncio.Event) -> None:
    waiters = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


def _drain_to_kernel(transport: asyncio.WriteTransport) -> None:
    """Make `drain()` mean "handed to the kernel", so SentRecord stamps are honest.

    With the default low-water mark up to 16 KiB may still sit in asyncio's buffer after
    drain(). A plain transport pauses when its buffer is > high, so high=0 works. The TLS
    transport pauses at >= high (high=0 would pause forever), and only buffers what its inner
    TCP transport refuses; so it gets high=1 and the inner transport gets high=0.
    """
    inner = getattr(getattr(transport, "_ssl_protocol", None), "_transport", None)
    if inner is None:
        transport.set_write_buffer_limits(0)
        return
    inner.set_write_buffer_limits(0)  # private attribute: only reachable this way in 3.11
    transport.set_write_buffer_limits(high=1, low=0)


def _abort_with_rst(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        # Linger on with a zero timeout makes close() send RST instead of FIN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


# --------------------------------------------------------------------------------------------
# LangGraph wire builders (docs/WIRE.md §2–§7; key order copied from the captures)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunInfo:
    """Run-level identity repeated in every event's metadata (docs/WIRE.md §4)."""

    run_id: str = "01a20ce2-14df-727d-8bbe-8c9f1585c96f"
    thread_id: str = "01a20ce2-135d-726c-be13-ae10cbffa07b"
    graph_id: str = "agent"
    assistant_id: str = "fe096781-5601-53d2-b2f6-0d3403f7e9ca"
    api_url: str = "http://127.0.0.1:2124"
    #: request `metadata` keys, merged at the top level right after assistant_id (capture 13)
    extra_metadata: Mapping[str, Any] = field(default_factory=dict)
    tags: Sequence[str] | None = None  # run config tags, appended last (capture 13)

    def base_metadata(self) -> dict[str, Any]:
        """The server's run-level keys: the `tasks` start `metadata` and the head of each tuple."""
        md: dict[str, Any] = {
            "created_by": "system",
            "graph_id": self.graph_id,
            "assistant_id": self.assistant_id,
        }
        md.update(self.extra_metadata)
        md.update(
            {
                "run_attempt": 1,
                "langgraph_version": "1.2.22",
                "langgraph_api_version": "0.16.7",
                "langgraph_plan": "enterprise",
                "langgraph_host": "self-hosted",
                "langgraph_api_url": self.api_url,
                "run_id": self.run_id,
            }
        )
        return md


DEFAULT_RUN = RunInfo()

_HUMAN_INPUT: dict[str, Any] = {
    "messages": [
        {
            "content": "what's the weather in sf?",
            "additional_kwargs": {},
            "response_metadata": {},
            "type": "human",
            "name": None,
            "id": "833e5d22-e016-46f4-b994-0514e8525488",
        }
    ]
}


def sse(event: str, data: Any, *, id: str | None = None) -> bytes:
    """One SSE event framed like langgraph_api/sse.py: CRLF lines, one compact JSON data line."""
    out = b"event: " + event.encode() + b"\r\ndata: " + orjson.dumps(data) + b"\r\n"
    if id is not None:  # only on resumable runs (docs/WIRE.md §2)
        out += b"id: " + id.encode() + b"\r\n"
    return out + b"\r\n"


def heartbeat() -> bytes:
    return b": heartbeat\r\n\r\n"


def metadata_event(run_id: str = DEFAULT_RUN.run_id, attempt: int = 1) -> bytes:
    return sse("metadata", {"run_id": run_id, "attempt": attempt})


def run_id_of(script: Iterable[Step]) -> str | None:
    """The run_id announced by the script's `metadata` event, if any (for location headers)."""
    for st in script:
        if isinstance(st, Send) and st.data.startswith(b"event: metadata\r\ndata: "):
            line = st.data.split(b"\r\n", 2)[1]
            rid = orjson.loads(line[len(b"data: ") :]).get("run_id")
            return rid if isinstance(rid, str) else None
    return None


def _ns_parts(
    node: str, task_id: str, ns_path: Sequence[tuple[str, str]] | None
) -> tuple[str, str]:
    """(parent namespace, full langgraph_checkpoint_ns). `ns_path` lists the enclosing subgraph
    nodes, outermost first; a trailing (node, task_id) equal to this node is tolerated."""
    parents = list(ns_path or [])
    if parents and parents[-1] == (node, task_id):
        parents.pop()
    parent_ns = "|".join(f"{n}:{t}" for n, t in parents)
    full = f"{parent_ns}|{node}:{task_id}" if parent_ns else f"{node}:{task_id}"
    return parent_ns, full


def _event_name(base: str, parent_ns: str) -> str:
    # With stream_subgraphs the event name carries the parent namespace (docs/WIRE.md §7).
    return f"{base}|{parent_ns}" if parent_ns else base


def task_start(
    task_id: str,
    name: str,
    ns: str | None = None,
    *,
    input: Any = None,
    triggers: Sequence[str] | None = None,
    run: RunInfo = DEFAULT_RUN,
) -> bytes:
    """`tasks` start event (has `input`); `ns` = parent namespace for a subgraph task."""
    data = {
        "id": task_id,
        "name": name,
        "input": _HUMAN_INPUT if input is None else input,
        "triggers": list(triggers) if triggers is not None else [f"branch:to:{name}"],
        "metadata": run.base_metadata(),
    }
    return sse(_event_name("tasks", ns or ""), data)


def task_end(
    task_id: str,
    name: str,
    error: Mapping[str, Any] | str | None = None,
    ns: str | None = None,
    *,
    result: Any = None,
) -> bytes:
    """`tasks` result event. A str `error` is the exception type (message "simulated failure")."""
    err: Any = {"error": error, "message": "simulated failure"} if isinstance(error, str) else error
    data = {
        "id": task_id,
        "name": name,
        "error": dict(err) if err is not None else None,
        "result": {} if result is None else result,
        "interrupts": [],
    }
    return sse(_event_name("tasks", ns or ""), data)


def token(
    node: str,
    content: str | list[Any],
    *,
    msg_id: str,
    task_id: str,
    ns_path: Sequence[tuple[str, str]] | None = None,
    tool_call_chunk: Mapping[str, Any] | None = None,
    usage: Mapping[str, Any] | None = None,
    last: bool = False,
    model: str = "fake-model",
    provider: str = "fakeprovider",
    step: int = 1,
    finish_reason: str | None = None,
    run: RunInfo = DEFAULT_RUN,
) -> bytes:
    """A streamed `AIMessageChunk` messages tuple from an LLM call (docs/WIRE.md §3–§5)."""
    tool_calls: list[Any] = []
    invalid_tool_calls: list[Any] = []
    tool_call_chunks: list[Any] = []
    if tool_call_chunk is not None:
        tcc = {
            "name": tool_call_chunk.get("name"),
            "args": tool_call_chunk.get("args", ""),
            "id": tool_call_chunk.get("id"),
            "index": tool_call_chunk.get("index", 0),
            "type": "tool_call_chunk",
        }
        tool_call_chunks.append(tcc)
        # langchain-core parses the partial args: the first chunk (with a name) becomes a
        # tool_call, later fragments an invalid_tool_call (capture 06).
        if tcc["name"]:
            tool_calls.append(
                {"name": tcc["name"], "args": {}, "id": tcc["id"], "type": "tool_call"}
            )
        else:
            invalid_tool_calls.append(
                {
                    "name": None,
                    "args": tcc["args"],
                    "id": None,
                    "error": None,
                    "type": "invalid_tool_call",
                }
            )
    response_metadata: dict[str, Any] = {}
    if finish_reason is not None:
        response_metadata = {
            "finish_reason": finish_reason,
            "model_name": model,
            "model_provider": provider,
        }
    message = {
        "content": content,
        "additional_kwargs": {},
        "response_metadata": response_metadata,
        "type": "AIMessageChunk",
        "name": None,
        "id": msg_id,
        "tool_calls": tool_calls,
        "invalid_tool_calls": invalid_tool_calls,
        "usage_metadata": dict(usage) if usage is not None else None,
        "tool_call_chunks": tool_call_chunks,
        "chunk_position": "last" if last else None,
    }
    parent_ns, full_ns = _ns_parts(node, task_id, ns_path)
    md = run.base_metadata()
    md.update(
        {
            "thread_id": run.thread_id,
            "ls_integration": "langchain_chat_model",
            "langgraph_step": step,
            "langgraph_node": node,
            "langgraph_triggers": [f"branch:to:{node}"],
            "langgraph_path": ["__pregel_pull", node],
            "langgraph_checkpoint_ns": full_ns,
            # NOTE: inside a subgraph checkpoint_ns is the *parent* namespace (docs/WIRE.md §4).
            "checkpoint_ns": parent_ns or full_ns,
            "ls_provider": provider,
            "ls_model_name": model,
            "ls_model_type": "chat",
            "ls_temperature": 0.0,
            "lc_versions": {"langchain-core": "1.7.2"},
        }
    )
    if run.tags is not None:
        md["tags"] = list(run.tags)
    return sse(_event_name("messages", parent_ns), [message, md])


def usage_chunk(
    node: str,
    *,
    msg_id: str,
    task_id: str,
    usage: Mapping[str, Any] | None = None,
    finish_reason: str = "stop",
    **kw: Any,
) -> bytes:
    """The provider's final chunk: no content, `usage_metadata` and `finish_reason` (docs/WIRE.md §5)."""
    u = usage if usage is not None else {"input_tokens": 10, "output_tokens": 5, "total_tokens": 15}
    return token(
        node, "", msg_id=msg_id, task_id=task_id, usage=u, finish_reason=finish_reason, **kw
    )


def last_chunk(node: str, *, msg_id: str, task_id: str, **kw: Any) -> bytes:
    """The empty `chunk_position:"last"` chunk langchain-core appends to a successful call."""
    return token(node, "", msg_id=msg_id, task_id=task_id, last=True, **kw)


def node_output_message(
    node: str,
    content: str,
    type: str = "tool",
    *,
    msg_id: str,
    task_id: str,
    step: int = 2,
    ns_path: Sequence[tuple[str, str]] | None = None,
    tool_name: str = "get_weather",
    tool_call_id: str = "call_016f91163633",
    run: RunInfo = DEFAULT_RUN,
) -> bytes:
    """A whole message taken from a node's output, not streamed (`ls_integration: langgraph`)."""
    message: dict[str, Any]
    if type == "tool":
        message = {
            "content": content,
            "additional_kwargs": {},
            "response_metadata": {},
            "type": "tool",
            "name": tool_name,
            "id": msg_id,
            "tool_call_id": tool_call_id,
            "artifact": None,
            "status": "success",
        }
    else:
        message = {
            "content": content,
            "additional_kwargs": {},
            "response_metadata": {},
            "type": type,
            "name": None,
            "id": msg_id,
            "tool_calls": [],
            "invalid_tool_calls": [],
            "usage_metadata": None,
        }
    parent_ns, full_ns = _ns_parts(node, task_id, ns_path)
    md = run.base_metadata()
    md.update(
        {
            "thread_id": run.thread_id,
            "ls_integration": "langgraph",
            "langgraph_step": step,
            "langgraph_node": node,
            "langgraph_triggers": [f"branch:to:{node}"],
            "langgraph_path": ["__pregel_pull", node],
            "langgraph_checkpoint_ns": full_ns,  # no checkpoint_ns / ls_* on node output
        }
    )
    if run.tags is not None:
        md["tags"] = list(run.tags)
    return sse(_event_name("messages", parent_ns), [message, md])


def error_event(
    error: str = "RuntimeError", message: str = "simulated provider failure after 5 chunks"
) -> bytes:
    """`event: error` inside a 200 stream (docs/WIRE.md §8)."""
    return sse("error", {"error": error, "message": message})


# --------------------------------------------------------------------------------------------
# Whole runs
# --------------------------------------------------------------------------------------------

_WORDS = (
    "It's",
    " 60",
    " degrees",
    " and",
    " foggy",
    " in",
    " San",
    " Francisco,",
    " with",
    " a",
    " light",
    " breeze.",
)
_ID_NS = uuid.UUID("6f1d8c1e-3c1b-4b6e-9c56-2f0b6c1d0a77")


@dataclass(frozen=True)
class NodeSpec:
    """One node of `langgraph_stream`; None fields take the call's defaults."""

    name: str
    tokens: int | Sequence[str] | None = None
    first_token_s: float | None = None  # from the `tasks` start to the first token
    gap_s: float | None = None  # between consecutive tokens
    task_id: str | None = None
    msg_id: str | None = None
    model: str = "fake-model"
    provider: str = "fakeprovider"
    step: int | None = None  # default: position in the run, 1-based
    ns_path: Sequence[tuple[str, str]] | None = None  # enclosing subgraph nodes (docs/WIRE.md §7)
    streamed: bool = True  # False: one whole `tool` message (a ToolNode), no tokens
    error: str | None = None  # raise this exception type after the tokens (docs/WIRE.md §8, `boom`)


def _stable_uuid(*parts: object) -> str:
    return str(uuid.uuid5(_ID_NS, "/".join(map(str, parts))))


def langgraph_stream(
    nodes: Sequence[str | NodeSpec] = ("agent",),
    *,
    tokens: int | Sequence[str] = 5,
    first_token_s: float = 0.2,
    gap_s: float = 0.03,
    tasks: bool = True,
    usage: bool = True,
    pickup_s: float = 0.0,
    run: RunInfo = DEFAULT_RUN,
) -> Script:
    """A realistic `["messages-tuple","tasks"]` run, nodes one after another.

    metadata (after `pickup_s`, the dev server's queue delay, docs/WIRE.md §14), then per node: tasks
    start, `first_token_s`, the tokens `gap_s` apart, usage chunk, last chunk, tasks end. A node
    with `error` stops after its tokens with a failed tasks end and `event: error` (no last
    chunk). Ids are deterministic. Send tags: "metadata", "task_start:<node>", "token:<node>:<i>",
    "usage:<node>", "last:<node>", "output:<node>", "task_end:<node>", "error".
    No terminal step is appended: the script ends like `end()` unless the caller adds one.
    """
    script: Script = []
    if pickup_s:
        script.append(sleep(pickup_s))
    script.append(send(metadata_event(run.run_id), "metadata"))
    for index, spec in enumerate(nodes):
        n = spec if isinstance(spec, NodeSpec) else NodeSpec(spec)
        task_id = n.task_id or _stable_uuid(run.run_id, "task", index, n.name)
        msg_id = n.msg_id or "lc_run--" + _stable_uuid(run.run_id, "msg", index, n.name)
        step = n.step if n.step is not None else index + 1
        parent_ns, _ = _ns_parts(n.name, task_id, n.ns_path)
        ttft = n.first_token_s if n.first_token_s is not None else first_token_s
        gap = n.gap_s if n.gap_s is not None else gap_s
        toks = n.tokens if n.tokens is not None else tokens
        words = (
            list(itertools.islice(itertools.cycle(_WORDS), toks))
            if isinstance(toks, int)
            else list(toks)
        )
        kw: dict[str, Any] = {
            "msg_id": msg_id,
            "task_id": task_id,
            "ns_path": n.ns_path,
            "model": n.model,
            "provider": n.provider,
            "step": step,
            "run": run,
        }
        if tasks:
            script.append(
                send(
                    task_start(task_id, n.name, parent_ns or None, run=run), f"task_start:{n.name}"
                )
            )
        script.append(sleep(ttft))
        if not n.streamed:
            out = node_output_message(
                n.name,
                "It's 60 degrees and foggy.",
                msg_id=_stable_uuid(run.run_id, "out", index, n.name),
                task_id=task_id,
                step=step,
                ns_path=n.ns_path,
                run=run,
            )
            script.append(send(out, f"output:{n.name}"))
        else:
            for i, word in enumerate(words):
                if i:
                    script.append(sleep(gap))
                script.append(send(token(n.name, word, **kw), f"token:{n.name}:{i}"))
        if n.error is not None:
            err = {
                "error": n.error,
                "message": f"simulated provider failure after {len(words)} chunks",
            }
            if tasks:
                script.append(
                    send(task_end(task_id, n.name, err, parent_ns or None), f"task_end:{n.name}")
                )
            script.append(send(error_event(err["error"], err["message"]), "error"))
            return script
        if n.streamed:
            if usage:
                script.append(
                    send(
                        usage_chunk(
                            n.name,
                            usage={
                                "input_tokens": 10,
                                "output_tokens": len(words),
                                "total_tokens": 10 + len(words),
                            },
                            **kw,
                        ),
                        f"usage:{n.name}",
                    )
                )
            script.append(send(last_chunk(n.name, **kw), f"last:{n.name}"))
        if tasks:
            script.append(
                send(task_end(task_id, n.name, None, parent_ns or None), f"task_end:{n.name}")
            )
    return script
