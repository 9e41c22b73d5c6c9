"""The soak's LangGraph-wire server: one loopback process serving every soak target's streams.

It reuses the test suite's `ScriptedServer` (tests/support/scripted_server.py), whose streams copy
what `langgraph dev` sends byte for byte (CRLF framing, `metadata` first, `tasks` start/end,
AIMessageChunk tokens with their metadata, usage and `chunk_position: "last"` chunks, no `end`
event). Each target gets its own path prefix, and the prefix names its behaviour:

| prefix | answers |
| --- | --- |
| `/ok-NN` | a stateless run: one node, 20 tokens 30 ms apart after 200 ms (about 0.8 s) |
| `/thread-NN` | the same run in thread mode: create thread, stream, delete thread |
| `/boom-NN` | 5 tokens, then a failed `tasks` end and `event: error` (run_error) |
| `/http500-NN` | HTTP 500 with a JSON `detail` (http_status) |
| `/stall-NN` | headers, one `metadata` event, then silence until the client hangs up (stalled) |

`GET /-/stats` returns the requests received per target and clears the server's own records,
so a long soak does not grow this process. It runs in its own process so that its CPU and memory
are not the daemon's, listens on 127.0.0.1 only, and exits by itself after `--max-seconds`.

Usage: `python soak/server.py [--max-seconds S]`; the first stdout line is `{"port": N, "pid": P}`.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import signal
import sys
import uuid
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root

from tests.support.scripted_server import (
    NodeSpec,
    RecordedRequest,
    RunInfo,
    Script,
    ScriptedServer,
    body,
    hang,
    langgraph_stream,
    metadata_event,
    send,
    status,
)

TOKENS = 20
FIRST_TOKEN_S = 0.2
GAP_S = 0.03


def run_script(kind: str) -> Script:
    run = RunInfo(run_id=str(uuid.uuid4()))
    if kind == "boom":
        return langgraph_stream(
            [NodeSpec("agent", tokens=5, error="RuntimeError")], first_token_s=0.1, run=run
        )
    if kind == "http500":
        return [body(500, {"detail": "simulated upstream failure"})]
    if kind == "stall":
        return [status(), send(metadata_event(run.run_id), "metadata"), hang()]
    return langgraph_stream(
        ["agent"], tokens=TOKENS, first_token_s=FIRST_TOKEN_S, gap_s=GAP_S, run=run
    )


class SoakServer:
    def __init__(self) -> None:
        self.server = ScriptedServer()
        self.counts: collections.Counter[str] = collections.Counter()

    def _stream(self, req: RecordedRequest) -> Script:
        target = req.params["t"]
        self.counts[target] += 1
        return run_script(target.partition("-")[0])

    def _create_thread(self, req: RecordedRequest) -> Script:
        return [body(200, {"thread_id": str(uuid.uuid4()), "metadata": {}, "status": "idle"})]

    def _stats(self, req: RecordedRequest) -> Script:
        # Drop what ScriptedServer records for tests; in-flight connections keep their own refs.
        self.server.requests.clear()
        self.server.sent.clear()
        stats = {"requests": dict(self.counts), "connections": self.server.connections}
        return [body(200, stats)]

    async def start(self) -> int:
        s = self.server
        await s.start()
        s.route("POST", "/{t}/runs/stream", self._stream, run_location="/runs")
        s.route("POST", "/{t}/threads", self._create_thread)
        s.route("POST", "/{t}/threads/{tid}/runs/stream", self._stream, run_location="/runs")
        s.route("POST", "/{t}/threads/{tid}/runs/{rid}/cancel", [body(202, b"", None)])
        s.route("DELETE", "/{t}/threads/{tid}", [body(204, b"", None)])
        s.route("GET", "/-/stats", self._stats)
        return s.port


async def main(max_seconds: float) -> None:
    soak = SoakServer()
    port = await soak.start()
    sys.stdout.write(orjson.dumps({"port": port, "pid": os.getpid()}).decode() + "\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # Bounded: stops by itself even if the runner that started it is gone.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), max_seconds)
    await soak.server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-seconds", type=float, default=3600.0)
    asyncio.run(main(parser.parse_args().max_seconds))
