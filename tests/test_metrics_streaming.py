"""`/metrics` is served on the event loop piece by piece, the loop running between two pieces
(docs/PERFORMANCE.md "Daemon scale"): a scrape never holds the loop that stamps reads."""

from __future__ import annotations

import asyncio
import itertools
import zlib
from typing import Any

import pytest

from exporter.daemon.web import Handlers, make_app
from exporter.sinks.prometheus import SLICE_PARTS
from tests.test_sinks import result, sink_with

pytestmark = pytest.mark.anyio


async def _unused(*_: Any) -> Any:
    raise AssertionError("not called by a scrape")


async def test_the_loop_runs_between_every_two_pieces_of_a_scrape() -> None:
    names = [f"t{i:03d}" for i in range(2 * SLICE_PARTS)]
    sink = sink_with(*names)
    for name in names:
        sink.record(result(name, nodes=("agent", "tools")))
    handlers = Handlers(
        registry=sink.registry, ready=lambda: True, reload=_unused, run_probe=_unused,
        probes=dict, target_names=list, mask=lambda b: b, exposition=sink.exposition_chunks,
    )  # fmt: skip
    app = make_app(handlers)
    scope = {"type": "http", "method": "GET", "path": "/metrics", "query_string": b"",
             "headers": [(b"accept", b"application/openmetrics-text"),
                         (b"accept-encoding", b"gzip")]}  # fmt: skip
    iterations = 0
    seen_at: list[int] = []  # loop iterations counted when each body piece was sent
    body = bytearray()

    async def count_iterations() -> None:
        nonlocal iterations
        while True:  # cancelled once the scrape is sent
            iterations += 1
            await asyncio.sleep(0)

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body" and message.get("body"):
            seen_at.append(iterations)
            body.extend(message["body"])

    counter = asyncio.create_task(count_iterations())
    try:
        await app(scope, _unused, send)
    finally:
        counter.cancel()
    assert len(seen_at) > 2 * len(names) * 2 // SLICE_PARTS, f"only {len(seen_at)} pieces"
    stalls = [i for i, (a, b) in enumerate(itertools.pairwise(seen_at)) if b == a]
    assert not stalls, f"the loop did not run between pieces {stalls[:5]} of {len(seen_at)}"
    assert b"langgraph_probe" in zlib.decompress(bytes(body), 16 + zlib.MAX_WBITS)
