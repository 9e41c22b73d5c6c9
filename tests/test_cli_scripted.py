"""The `probe` command end to end against the scripted server: auth from a file, non-SSE bodies."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.support.scripted_server import ScriptedServer, body, langgraph_stream

pytestmark = pytest.mark.anyio


async def cli_json(*args: str) -> tuple[int, dict[str, Any]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "exporter", "probe", "--json", "--protocol", "legacy", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    lines = out.splitlines()
    assert len(lines) == 1, out + err
    assert proc.returncode is not None
    return proc.returncode, orjson.loads(lines[0])


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
