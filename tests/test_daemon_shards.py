"""Replicas that split one targets file (LGSE_SHARDS / LGSE_SHARD) and say where they probe
from (LGSE_LOCATION), and `/metrics` compressed for scrapers that accept gzip.

One scenario (about 10 s): three real daemons with the same config of 24 targets, each target
under its own path prefix of one scripted server, so the server counts the requests of every
target. A second one (about 6 s): two shards whose targets file grows from 4 to 16 targets,
reloaded by `POST /-/reload` and by SIGHUP, each probing its own scripted server.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from exporter.core.shard import shard_members, shard_of
from tests.support.daemon import DaemonProcess, samples
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


# ------------------------------------------------------------------ a reload, per shard

BEFORE = [f"svc-{i:02d}" for i in range(4)]
AFTER = BEFORE + [f"svc-{i:02d}" for i in range(4, 16)]  # the reload adds twelve targets
RELOAD_SHARDS = 2


@dataclass
class Reloaded:
    check_config: dict[int, list[str]]  # shard -> targets, from `check-config --shards 2`
    before: list[Counter[str]]  # per shard: requests per target up to the reload
    after: list[Counter[str]]  # per shard: requests per target after it
    runs: list[set[str]]  # per shard: targets with runs_total > 0 in /metrics at the end
    shard_targets: list[float]
    configured: list[float]
    reload_answer: str  # shard 0's `POST /-/reload` answer: "<status> <body>"
    config_path: Path  # shard 0's targets file


def _check_config_shards(path: Path) -> dict[int, list[str]]:
    """`check-config --shards 2 PATH`, parsed: `  shard K/N: COUNT: a, b, ...` lines."""
    proc = subprocess.run(
        [sys.executable, "-m", "exporter", "check-config", "--shards", str(RELOAD_SHARDS), path],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    shards = {}
    for m in re.finditer(r"^  shard (\d+)/\d+: \d+: ?(.*)$", proc.stdout, re.M):
        shards[int(m[1])] = [n for n in m[2].split(", ") if n]
    return shards


def _stream_counts(server: ScriptedServer, since: int = 0) -> Counter[str]:
    return Counter(
        r.path.split("/")[1] for r in server.requests[since:] if r.path.endswith("/runs/stream")
    )


async def _wait_until(check: Any, timeout_s: float, what: str) -> None:
    """Await `check()` true, polling the servers' request lists (they record, not notify)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.1)


async def _reload_scenario(workdir: Path) -> Reloaded:
    """One server per shard (its request log is what that shard probed), two daemons with
    LGSE_SHARDS=2 on the same file of 4 targets; the file grows to 16 and shard 0 reloads by
    `POST /-/reload`, shard 1 by SIGHUP."""
    async with ScriptedServer() as s0, ScriptedServer() as s1:
        servers = [s0, s1]
        stream = langgraph_stream(["agent"], tokens=2, first_token_s=0, gap_s=0.005)
        daemons = []
        for k, server in enumerate(servers):
            server.route("POST", "/{prefix}/runs/stream", stream, run_location="/runs")
            (workdir / str(k)).mkdir()
            cfg = _config(server.url) | {
                "targets": [{"name": n, "url": f"{server.url}/{n}"} for n in BEFORE]
            }
            env = {"LGSE_SHARDS": str(RELOAD_SHARDS), "LGSE_SHARD": str(k)}
            daemons.append(DaemonProcess(cfg, workdir / str(k), env=env, lifecycle=k == 0))
        try:
            await asyncio.gather(*(asyncio.to_thread(d.start) for d in daemons))
            mine_before = [shard_members(BEFORE, k, RELOAD_SHARDS) for k in range(RELOAD_SHARDS)]
            await _wait_until(
                lambda: all(
                    set(_stream_counts(s)) >= set(mine_before[k]) for k, s in enumerate(servers)
                ),
                20,
                "every shard to probe its share of the first file",
            )
            marks = [len(s.requests) for s in servers]
            before = [_stream_counts(s) for s in servers]
            for server, daemon in zip(servers, daemons, strict=True):
                daemon.write_config(
                    _config(server.url)
                    | {"targets": [{"name": n, "url": f"{server.url}/{n}"} for n in AFTER]}
                )
            check = _check_config_shards(daemons[0].config_path)
            answer = await asyncio.to_thread(daemons[0].post, "/-/reload")
            daemons[1].signal(signal.SIGHUP)
            mine_after = [shard_members(AFTER, k, RELOAD_SHARDS) for k in range(RELOAD_SHARDS)]
            # Twice each, so a target started late by the reload has its second run too.
            await _wait_until(
                lambda: all(
                    all(_stream_counts(s, marks[k])[n] >= 2 for n in mine_after[k])
                    for k, s in enumerate(servers)
                ),
                30,
                "every shard to probe each target of its new share twice",
            )
            after = [_stream_counts(s, m) for s, m in zip(servers, marks, strict=True)]
            texts = [
                (await asyncio.to_thread(d.get, "/metrics", headers={"Accept-Encoding": ""})).text
                for d in daemons
            ]
        finally:
            await asyncio.gather(*(asyncio.to_thread(d.stop) for d in daemons))
    out = Reloaded(
        check, before, after, [], [], [], f"{answer.status_code} {answer.text}",
        daemons[0].config_path,
    )  # fmt: skip
    for text in texts:
        runs = samples(text, "langgraph_probe_runs_total")
        out.runs.append({dict(k)["target"] for k, v in runs.items() if v > 0})
        out.shard_targets.append(
            next(iter(samples(text, "langgraph_probe_shard_targets").values()))
        )
        out.configured.append(
            next(iter(samples(text, "langgraph_probe_shard_configured_targets").values()))
        )
    return out


@pytest.fixture(scope="module")
def reloaded(tmp_path_factory: pytest.TempPathFactory) -> Reloaded:
    return asyncio.run(_reload_scenario(tmp_path_factory.mktemp("shard-reload")))


def test_reload_answer_names_the_share_of_the_shard(reloaded: Reloaded) -> None:
    """`POST /-/reload` on shard 0 answers with its share of the file, by count and by name,
    so an operator can compare it with `check-config --shards 2`."""
    share = reloaded.check_config[0]
    assert reloaded.reload_answer == (
        f"200 reloaded {reloaded.config_path}: {len(share)} of {len(AFTER)} targets,"
        f" shard 0/{RELOAD_SHARDS}: {', '.join(share)}\n"
    )


def test_after_a_reload_each_shard_probes_exactly_its_share(reloaded: Reloaded) -> None:
    """After the file grew from 4 to 16 targets and each replica reloaded (shard 0 by
    `POST /-/reload`, shard 1 by SIGHUP), each probed exactly the targets that
    `check-config --shards 2` (rendezvous hashing) gives its shard: every one of them, and not
    one of the other shard's, before or after the reload."""
    assert sorted(reloaded.check_config) == [0, 1]
    assert sorted(n for names in reloaded.check_config.values() for n in names) == AFTER
    for k in range(RELOAD_SHARDS):
        share = reloaded.check_config[k]
        assert share == shard_members(AFTER, k, RELOAD_SHARDS)
        assert set(share) - set(BEFORE), f"shard {k} gained no target: a weak test"
        assert set(reloaded.after[k]) == set(share), f"shard {k} after the reload"
        assert set(reloaded.before[k]) <= set(share) & set(BEFORE), f"shard {k} before"


def test_after_a_reload_each_shard_reports_its_share(reloaded: Reloaded) -> None:
    """/metrics of each replica after the reload: runs only for its share, its target count,
    and the file's 16 targets as the configured count."""
    for k in range(RELOAD_SHARDS):
        assert reloaded.runs[k] == set(reloaded.check_config[k]), f"shard {k}"
    assert reloaded.shard_targets == [len(reloaded.check_config[k]) for k in range(RELOAD_SHARDS)]
    assert reloaded.configured == [len(AFTER)] * RELOAD_SHARDS
