"""A TCP relay on 127.0.0.1 that adds a fixed one-way delay to every byte, in both directions:
the distance between a far probing location and the server, for tests.

Each chunk read from one side is written to the other `delay_s` after it was read, in order,
without merging or splitting chunks: a link with latency and ample bandwidth, like `tc netem
delay` (which needs CAP_NET_ADMIN, not available to tests; toxiproxy is not packaged for the
registries this project installs from, so this is our own).

    async with LatencyRelay(server.port, delay_s=0.1) as relay:
        ...  # http://127.0.0.1:{relay.port} reaches the server 0.1 s away each way
"""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Any

__all__ = ["LatencyRelay"]

_EOF = b""


class LatencyRelay:
    """Accepts on 127.0.0.1:`port` (ephemeral) and relays each connection to
    127.0.0.1:`upstream_port` with `delay_s` added each way; `connections` counts accepts."""

    def __init__(self, upstream_port: int, *, delay_s: float) -> None:
        self.upstream_port = upstream_port
        self.delay_s = delay_s
        self.port = 0
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()

    async def __aenter__(self) -> LatencyRelay:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        except OSError:
            pass  # one side reset: close both, as a network path would
        finally:
            for w in (writer, up_writer):
                w.close()
            self._tasks.discard(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Read chunks as they come; a second task writes each one `delay_s` after its read,
        so a slow write never delays the next read's stamp."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def deliver() -> None:
            while True:
                due, data = await queue.get()
                await asyncio.sleep(max(0.0, due - loop.time()))
                if data == _EOF:
                    with contextlib.suppress(OSError):
                        if writer.can_write_eof():
                            writer.write_eof()
                    return
                writer.write(data)
                await writer.drain()

        sender = asyncio.create_task(deliver())
        try:
            while True:
                try:
                    data = await reader.read(65536)
                except OSError:
                    data = _EOF
                queue.put_nowait((loop.time() + self.delay_s, data))
                if data == _EOF:
                    break
            await sender
        finally:
            sender.cancel()
