"""Replicas that split one targets file (LGSE_SHARDS / LGSE_SHARD) and say where they probe
from (LGSE_LOCATION), and `/metrics` compressed for scrapers that accept gzip.

One scenario (about 10 s): three real daemons with the same config of 24 targets, each target
under its own path prefix of one scripted server, so the server counts the requests of every
target.
"""

from __future__ import annotations

import asyncio
import re
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from exporter.core.shard import shard_of
from tests.support.daemon import DaemonProcess
from tests.support.scripted_server import ScriptedServer, langgraph_stream

pytestmark = pytest.mark.slow

TARGETS = [f"agent-{i:02d}" for i in range(24)]
SHARDS = 3


@dataclass
class Observed:
    requests: Counter[str]
    runs: list[dict[str, float]]  # per daemon: target -> runs_total (all outcomes)
    shard_info: list[dict[str, str]]
    shard_targets: list[float]
    configured: list[float]
    locations: list[set[str]]
    gzip_response: httpx.Response
    gzip_body: bytes  # as sent, not decoded
    plain_response: httpx.Response


def _config(url: str) -> dict[str, Any]:
    return {
        "defaults": {"interval": "1s", "assistant_id": "agent"},
        "targets": [{"name": name, "url": f"{url}/{name}"} for name in TARGETS],
    }


async def _scenario(workdir: Path) -> Observed:
    async with ScriptedServer() as server:
        stream = langgraph_stream(["agent"], tokens=3, first_token_s=0, gap_s=0.005)
        server.route("POST", "/{prefix}/runs/stream", stream, run_location="/runs")
        daemons = []
        for k in range(SHARDS):
            (workdir / str(k)).mkdir()
            env = {"LGSE_SHARDS": str(SHARDS), "LGSE_SHARD": str(k), "LGSE_LOCATION": f"loc-{k}"}
            daemons.append(DaemonProcess(_config(server.url), workdir / str(k), env=env))
        try:
            await asyncio.gather(*(asyncio.to_thread(d.start) for d in daemons))
            await asyncio.sleep(3.5)  # every target probed at least twice (1 s interval)
            texts = []
            async with httpx.AsyncClient(timeout=30) as client:
                for d in daemons:
                    r = await client.get(
                        d.url + "/metrics",
                        headers={"Accept": "application/openmetrics-text", "Accept-Encoding": ""},
                    )
                    texts.append(r.text)
                async with client.stream(
                    "GET", daemons[0].url + "/metrics", headers={"Accept-Encoding": "gzip"}
                ) as gzip_response:
                    gzip_body = b"".join([chunk async for chunk in gzip_response.aiter_raw()])
                plain_response = await client.get(
                    daemons[0].url + "/metrics", headers={"Accept-Encoding": "gzip;q=0"}
                )
        finally:
            await asyncio.gather(*(asyncio.to_thread(d.stop) for d in daemons))
        requests = Counter(
            r.path.split("/")[1] for r in server.requests if r.path.endswith("/runs/stream")
        )
    obs = Observed(requests, [], [], [], [], [], gzip_response, gzip_body, plain_response)
    for text in texts:
        runs: Counter[str] = Counter()
        locations: set[str] = set()
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                if "location" in s.labels:
                    locations.add(s.labels["location"])
                if s.name == "langgraph_probe_runs_total":
                    runs[s.labels["target"]] += s.value
                elif s.name == "langgraph_probe_shard_info":
                    obs.shard_info.append(s.labels)
                elif s.name == "langgraph_probe_shard_targets":
                    obs.shard_targets.append(s.value)
                elif s.name == "langgraph_probe_shard_configured_targets":
                    obs.configured.append(s.value)
        obs.runs.append({t: n for t, n in runs.items() if n > 0})
        obs.locations.append(locations)
    return obs


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Observed:
    return asyncio.run(_scenario(tmp_path_factory.mktemp("shards")))


def test_every_target_is_probed_by_exactly_one_replica(observed: Observed) -> None:
    """The server saw requests for every target; each target's runs come from one replica
    only, the one rendezvous hashing picks, and that replica's runs match the server's count
    (give or take a probe in flight when the metrics were read)."""
    assert set(observed.requests) == set(TARGETS), "targets never probed by any replica"
    for target in TARGETS:
        owners = [k for k, runs in enumerate(observed.runs) if target in runs]
        assert owners == [shard_of(target, SHARDS)], f"{target} probed by replicas {owners}"
        counted = observed.runs[owners[0]][target]
        assert counted <= observed.requests[target] <= counted + 2, target


def test_each_replica_reports_its_shard_and_target_counts(observed: Observed) -> None:
    assert observed.shard_info == [
        {"location": f"loc-{k}", "shard": str(k), "shards": str(SHARDS)} for k in range(SHARDS)
    ]
    assert sum(observed.shard_targets) == len(TARGETS)
    assert observed.configured == [len(TARGETS)] * SHARDS


def test_location_label_names_the_replica(observed: Observed) -> None:
    assert observed.locations == [{f"loc-{k}"} for k in range(SHARDS)]


def test_metrics_are_gzipped_when_the_scraper_accepts_it(observed: Observed) -> None:
    """`Accept-Encoding: gzip` gets a gzip body (one member) of the text exposition; q=0 not."""
    r = observed.gzip_response
    assert r.headers["content-encoding"] == "gzip"
    assert r.headers["vary"] == "accept-encoding"
    # One member holding everything (clients such as httpx read only the first one); zlib
    # checks the trailer's crc32 and length.
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    text = d.decompress(observed.gzip_body).decode()
    assert d.eof and d.unused_data == b""
    assert len(observed.gzip_body) * 5 < len(text)
    assert re.search(r"^langgraph_probe_runs_total\{", text, re.M)
    assert "content-encoding" not in observed.plain_response.headers
    assert re.search(r"^langgraph_probe_runs_total\{", observed.plain_response.text, re.M)
