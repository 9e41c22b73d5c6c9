"""The scale benchmark's LangGraph-wire server: the test suite's scripted server, in a process.

Every `POST .../runs/stream` gets `langgraph_stream` of NODES nodes of TOKENS tokens each, with
a fresh run id, so the send times of each response can be joined with the daemon's receive
times by run id. `GET /bench/stats` answers the number of runs served. On SIGTERM it writes
the send log (one JSON line per run: run_id, tags, sent_ns) to --send-log and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import uuid
from collections import defaultdict
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.scripted_server import (  # noqa: E402
    RecordedRequest,
    RunInfo,
    ScriptedServer,
    Step,
    body,
    langgraph_stream,
)


async def serve(args: argparse.Namespace) -> list[dict[str, object]]:
    runs: dict[int, str] = {}  # connection -> run id
    nodes = [f"node_{i}" for i in range(args.nodes)]

    def stream(req: RecordedRequest) -> list[Step]:
        run_id = str(uuid.uuid4())
        runs[req.connection] = run_id
        return langgraph_stream(
            nodes,
            tokens=args.tokens,
            first_token_s=args.ttft_s,
            gap_s=args.gap_s,
            run=RunInfo(run_id=run_id),
        )

    def stats(_req: RecordedRequest) -> list[Step]:
        return [body(200, {"runs": len(runs)})]

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    async with ScriptedServer() as server:
        server.route("POST", "/runs/stream", stream, run_location="/runs")
        server.route("GET", "/bench/stats", stats)
        print(server.url, flush=True)
        await stop.wait()
        by_conn: dict[int, list[tuple[str | None, int]]] = defaultdict(list)
        for rec in server.sent:
            by_conn[rec.connection].append((rec.tag, rec.sent_ns))
        lines = []
        for conn, run_id in runs.items():
            sent = by_conn.get(conn, [])
            tags = [t for t, _ in sent]
            lines.append({"run_id": run_id, "tags": tags, "sent_ns": [n for _, n in sent]})
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--send-log", required=True)
    p.add_argument("--nodes", type=int, default=5)
    p.add_argument("--tokens", type=int, default=20)
    p.add_argument("--ttft-s", type=float, default=0.1)
    p.add_argument("--gap-s", type=float, default=0.03)
    args = p.parse_args()
    lines = asyncio.run(serve(args))
    with open(args.send_log, "wb") as f:
        for line in lines:
            f.write(orjson.dumps(line) + b"\n")


if __name__ == "__main__":
    main()
