"""`load` never floods a target that only fails: it stops when none of the first streams
succeeded, backs off after a run of failures, shows the server's own error text and exits 1.
The JSON summary and trace lines carry what CI gates on (latencies, failures by kind)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from exporter.config import Target
from exporter.load import BACKOFF_FIRST_S, LoadOptions, drive, summary
from tests.support.cli import run_cli
from tests.support.daemon import free_port
from tests.support.scripted_server import ScriptedServer, body, langgraph_stream

UNPROCESSABLE = {"detail": "Assistant 'nope' not found: check assistant_id (scripted 422)"}


def target(url: str, assistant: str = "agent") -> Target:
    return Target.model_validate({"name": "load", "url": url, "assistant_id": assistant})


async def load_cli(*args: str) -> tuple[int, bytes, bytes]:
    return await run_cli("load", "--no-progress", "--json-summary", *args, timeout_s=120)


@pytest.mark.anyio
async def test_all_422_stops_after_the_first_streams_and_keeps_the_message() -> None:
    """Every request answered 422: at most give_up_after + concurrency streams in a 30 s run,
    the run says it gave up and keeps the server's text."""
    options = LoadOptions(concurrency=2, duration_s=30, progress=False)
    async with ScriptedServer() as server:
        server.route_stateless([body(422, UNPROCESSABLE)])
        run = await drive(target(server.url, "nope"), options)
    assert run.gave_up
    assert len(run.records) <= options.give_up_after + options.concurrency
    assert run.wall_s < 10, f"gave up after {run.wall_s:.1f} s"
    (kind, message), *_ = run.errors
    assert kind == "http_status" and "check assistant_id (scripted 422)" in message


@pytest.mark.anyio
async def test_failures_after_successes_back_off_exponentially() -> None:
    """Two successes, then only 500s for 3 s at concurrency 1: the starts back off (0.1, 0.2,
    0.4 … s) so only a handful of failing streams run, not hundreds."""
    calls = 0

    def script(_req: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls <= 2:
            return langgraph_stream(tokens=2, first_token_s=0.01, gap_s=0.01)
        return [body(500, {"detail": "down"})]

    async with ScriptedServer() as server:
        server.route_stateless(script)
        run = await drive(target(server.url), LoadOptions(concurrency=1, duration_s=3))
    failed = sum(1 for r in run.records if not r.success)
    assert not run.gave_up  # something succeeded: back off, do not stop
    # Sum of the waits 0.1 * (1 + 2 + 4 + 8 + 16) > 3 s: at most ~6 failures fit.
    assert BACKOFF_FIRST_S * (2**5 - 1) > 3
    assert 1 <= failed <= 8, f"{failed} failing streams in 3 s"


@pytest.mark.anyio
async def test_unreachable_port_exits_1_bounded_with_the_message() -> None:
    """`load` on a port nothing listens on, 30 s at concurrency 2: exit 1 within seconds, a
    bounded number of streams, and the connect error on stderr."""
    code, out, err = await load_cli(
        "--url", f"http://127.0.0.1:{free_port()}", "--assistant", "agent",
        "--concurrency", "2", "--duration", "30s",
    )  # fmt: skip
    assert code == 1
    result = orjson.loads(out.splitlines()[-1])
    assert result["gave_up"] is True and result["ok"] == 0
    assert result["streams"] <= 7
    assert result["failures_by_kind"] == {"connect": result["streams"]}
    text = err.decode()
    assert "stopped: none of the first 5 streams succeeded" in text
    assert "connect to 127.0.0.1" in text  # the transport's own message, not a bare kind


@pytest.mark.anyio
async def test_an_error_line_names_its_kind_once() -> None:
    """A message that already starts with its kind is not prefixed with it again."""
    _code, _out, err = await load_cli(
        "--url", f"http://127.0.0.1:{free_port()}", "--assistant", "agent",
        "--concurrency", "1", "--duration", "5s",
    )  # fmt: skip
    (line,) = [x for x in err.decode().splitlines() if "connect to 127.0.0.1" in x]
    assert line.startswith("load: connect: connect to ") and line.count("connect:") == 1, line


@pytest.mark.anyio
async def test_a_piped_report_is_not_squeezed_into_80_columns() -> None:
    """Piped (no terminal), the report table is laid out 120 wide, as `probe`'s is: no value
    is wrapped onto a line of its own."""
    async with ScriptedServer() as server:
        server.route_stateless(langgraph_stream(["agent"], tokens=3, first_token_s=0.01))
        code, out, _err = await load_cli(
            "--url", server.url, "--assistant", "agent", "--concurrency", "1",
            "--max-streams", "2", "--duration", "5s",
        )  # fmt: skip
    assert code == 0
    table = out.decode().splitlines()[:-1]  # the last line is the JSON summary
    assert max(len(line) for line in table) > 80, "the table was laid out 80 wide"
    assert not [line for line in table if line.strip() in ("ms", "s")], "\n".join(table)


@pytest.mark.anyio
async def test_summary_and_trace_lines_carry_latencies_and_outcomes(tmp_path: Path) -> None:
    """`--json-summary`: run TTFT, first event and per-node TTFT/ITL percentiles, failures by
    kind, aggregate throughput; `--trace-out`: outcome and failure kind per stream."""
    trace = tmp_path / "trace.jsonl"
    async with ScriptedServer() as server:
        server.route_stateless(
            lambda req: langgraph_stream(["agent"], tokens=4, first_token_s=0.05, gap_s=0.02)
        )
        code, out, err = await load_cli(
            "--url", server.url, "--assistant", "agent", "--concurrency", "2",
            "--duration", "10s", "--max-streams", "4", "--trace-out", str(trace),
        )  # fmt: skip
    assert code == 0, err
    s = orjson.loads(out.splitlines()[-1])
    assert s["streams"] == s["ok"] == 4 and s["failures_by_kind"] == {}
    assert s["run_ttft_s"]["p50"] >= 0.05
    assert s["first_event_s"]["p50"] is not None
    agent = s["nodes"]["agent"]
    assert agent["ttft_s"]["p99"] >= 0.05 and agent["itl_s"]["p50"] >= 0.015
    assert agent["decode_rate_tok_s_per_stream"] > 0 and s["throughput_tok_s"] > 0
    lines = [orjson.loads(line) for line in trace.read_bytes().splitlines()]
    assert [(x["outcome"], x["failure_kind"]) for x in lines] == [("success", None)] * 4
    assert "decode tok/s/stream" in out.decode()


@pytest.mark.anyio
async def test_trace_lines_of_failed_streams_name_the_kind(tmp_path: Path) -> None:
    """A failing stream's trace line says `failure` and its kind."""
    trace = tmp_path / "trace.jsonl"
    async with ScriptedServer() as server:
        server.route_stateless([body(422, UNPROCESSABLE)])
        await drive(
            target(server.url),
            LoadOptions(concurrency=1, duration_s=10, max_streams=2, trace_out=str(trace)),
        )
    lines = [orjson.loads(line) for line in trace.read_bytes().splitlines()]
    assert [(x["outcome"], x["failure_kind"]) for x in lines] == [("failure", "http_status")] * 2
    assert "scripted 422" in lines[0]["failure_message"]


def test_summary_of_an_empty_run_has_no_percentiles() -> None:
    """No stream at all: percentiles are null, not an exception."""
    from exporter.load import Aggregate, LoadRun

    run = LoadRun([], Aggregate(), 0, 0, 0.0, 0.0, 0.0)
    s = summary(run, LoadOptions(concurrency=1, duration_s=1))
    assert s["run_ttft_s"] == {"p50": None, "p90": None, "p99": None}


@pytest.mark.integration
def test_wrong_assistant_on_langgraph_dev_stops_and_shows_the_server_text(
    langgraph_server: str,
) -> None:
    """A real `langgraph dev` and an assistant id it does not have: exit 1, a bounded number
    of streams, and the server's own error text on stderr."""
    proc = subprocess.run(
        [sys.executable, "-m", "exporter", "load", "--url", langgraph_server,
         "--assistant-id", "no-such-assistant", "--concurrency", "2", "--duration", "30s",
         "--no-progress", "--json-summary"],
        capture_output=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 1
    result = orjson.loads(proc.stdout.splitlines()[-1])
    assert result["gave_up"] is True and result["streams"] <= 7
    err = proc.stderr.decode()
    assert "load: http_status: HTTP " in err, err
    assert "no-such-assistant" in err or "not found" in err.lower(), err
