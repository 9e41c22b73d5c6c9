"""The `probe` command end to end against the scripted server: auth from a file, non-SSE bodies;
and against a closed port: what did not happen is not printed as if it had."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.support.cli import run_cli
from tests.support.daemon import free_port
from tests.support.scripted_server import ScriptedServer, body, langgraph_stream

pytestmark = pytest.mark.anyio


async def cli_json(*args: str) -> tuple[int, dict[str, Any]]:
    code, out, err = await run_cli("probe", "--json", "--protocol", "legacy", *args)
    lines = out.splitlines()
    assert len(lines) == 1, out + err
    return code, orjson.loads(lines[0])


async def cli_text(*args: str) -> tuple[int, str]:
    """`probe` without `--json`: exit status and what it printed (stdout, not a terminal)."""
    code, out, err = await run_cli("probe", "--protocol", "legacy", *args)
    return code, (out + err).decode()


def closed_url() -> str:
    return f"http://127.0.0.1:{free_port()}"  # bound, then closed: nothing listens


async def test_api_key_file_is_sent_as_x_api_key(tmp_path: Path) -> None:
    """`--api-key-file` reads the key (stripped) and sends it as `x-api-key`."""
    key = tmp_path / "key"
    key.write_text("sk-from-file-0001\n")
    async with ScriptedServer() as server:
        server.route_stateless(langgraph_stream(tokens=2, first_token_s=0.01, gap_s=0.01))
        code, result = await cli_json("--url", server.url, "--assistant", "a",
                                      "--api-key-file", str(key))  # fmt: skip
    assert code == 0, result["failure"]
    (req,) = server.requests
    assert req.headers["x-api-key"] == "sk-from-file-0001"


async def test_non_sse_200_is_not_sse_and_exit_1() -> None:
    """A 200 JSON body where an event stream was expected: `not_sse`, exit 1."""
    async with ScriptedServer() as server:
        server.route_stateless([body(200, {"detail": "this is not a stream"})])
        code, result = await cli_json("--url", server.url, "--assistant", "a")
    assert code == 1
    assert result["failure"]["kind"] == "not_sse"
    assert "application/json" in result["failure"]["message"]


async def test_connect_failure_json_has_no_phase_that_did_not_happen() -> None:
    """Connection refused: `phases_s` has no `request_write` (no request was written) and
    every phase it has is null or a real duration, never 0."""
    code, result = await cli_json("--url", closed_url(), "--assistant", "a")
    assert code == 1 and result["failure"]["kind"] == "connect"
    phases = result["phases_s"]
    assert "request_write" not in phases, phases
    assert all(v is None or v > 0 for v in phases.values()), phases


async def test_connect_failure_report_prints_no_phase_that_did_not_happen() -> None:
    """Connection refused: the text report prints no `request_write 0.0 ms`."""
    code, out = await cli_text("--url", closed_url(), "--assistant", "a")
    assert code == 1 and "failure: connect" in out, out
    assert "request_write" not in out, out


async def test_connect_failure_report_says_no_node_ran_instead_of_an_empty_table() -> None:
    """Connection refused: one line says no node ran; no table of headers without rows."""
    code, out = await cli_text("--url", closed_url(), "--assistant", "a")
    assert code == 1
    assert "no node ran" in out, out
    assert "ITL p50" not in out, out


async def waterfalls_of_a_refused_connection(tmp_path: Path) -> tuple[str, str]:
    """(`probe --waterfall` output, the `--svg` document) of a probe of a closed port."""
    svg = tmp_path / "w.svg"
    code, out = await cli_text("--url", closed_url(), "--assistant", "a", "--waterfall",
                               "--svg", str(svg))  # fmt: skip
    assert code == 1
    return out, svg.read_text()


async def test_connect_failure_waterfall_marks_no_request_written(tmp_path: Path) -> None:
    """Connection refused: neither the terminal waterfall nor the SVG marks a request written."""
    for text in await waterfalls_of_a_refused_connection(tmp_path):
        assert "request written" not in text, text


async def test_connect_failure_waterfall_judges_no_buffering(tmp_path: Path) -> None:
    """Connection refused: no token arrived, so neither waterfall calls the stream "not
    buffered: tokens arrived spread out"; both say no token arrived."""
    for text in await waterfalls_of_a_refused_connection(tmp_path):
        assert "spread out" not in text and "no token arrived" in text, text
