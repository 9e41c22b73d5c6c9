"""The dashboard with exporters in several locations (LGSE_LOCATION), against a real Prometheus.

One scenario (about 15 s): one scripted LangGraph server and three real daemons probing the
same target name every second, all scraped by one real Prometheus:

- `sidecar`: LGSE_LOCATION=sidecar, straight to the server;
- `ingress`: LGSE_LOCATION=ingress, through a real forward proxy (tinyproxy) and a relay that
  adds DELAY_S each way (tests/support/latency_relay.py): a far location behind a proxy;
- one daemon without LGSE_LOCATION, whose series have no `location` label at all.

The dashboard's expressions run as Grafana would send them (dashboards/queries.py renders the
variables); a multi-value selection is rendered as Grafana's Prometheus data source does,
`(a|b)`.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.daemon import DaemonProcess, Prometheus
from tests.support.forward_proxy import TinyProxy
from tests.support.latency_relay import LatencyRelay
from tests.support.scripted_server import ScriptedServer, langgraph_stream

from . import paths

queries = paths.load_dashboard_queries()

pytestmark = pytest.mark.slow

DASHBOARD: dict[str, Any] = queries.load(paths.DASHBOARD)
ALL_QUERIES = list(queries.iter_queries(DASHBOARD))
COST_PANEL = "Network and proxy cost per node, by location"
MUST_HAVE_DATA = ["Probe success", "Run time to first token", "Inter-token latency by node"]
DELAY_S = 0.1  # one way, added by the relay in front of the server for `ingress`
NODES = ("agent", "writer")
PROBES = 6  # scheduled probes per daemon before the queries run


@dataclass
class Observed:
    location_values: list[dict[str, str]]  # the location variable's query result (labels)
    cost: dict[str, list[dict[str, Any]]]  # refId -> result of the cost panel's queries
    plain_all: dict[str, list[list[dict[str, Any]]]]  # panel -> results, plain daemon, All
    plain_sidecar: dict[str, list[list[dict[str, Any]]]]  # the same with location=sidecar


def _config(url: str, **extra: Any) -> dict[str, Any]:
    target = {"name": "agent", "url": url, "assistant_id": "agent", **extra}
    return {"defaults": {"interval": "1s"}, "targets": [target]}


def _query(prometheus: Prometheus, expr: str, **variables: str) -> list[dict[str, Any]]:
    values = {**queries.default_variables(DASHBOARD), **variables}
    return prometheus.query(queries.render(expr, values))


def _panel_results(
    prometheus: Prometheus, title: str, **variables: str
) -> list[list[dict[str, Any]]]:
    return [_query(prometheus, q.expr, **variables) for q in ALL_QUERIES if q.panel == title]


def _observe(prometheus: Prometheus, plain_instance: str) -> Observed:
    (variable,) = [q for q in ALL_QUERIES if q.panel == "variable location"]
    cost = {
        q.ref_id: _query(prometheus, q.expr, location="(sidecar|ingress)")
        for q in ALL_QUERIES
        if q.panel == COST_PANEL
    }
    return Observed(
        [s["metric"] for s in _query(prometheus, variable.expr)],
        cost,
        {t: _panel_results(prometheus, t, instance=plain_instance) for t in MUST_HAVE_DATA},
        {
            t: _panel_results(prometheus, t, instance=plain_instance, location="sidecar")
            for t in MUST_HAVE_DATA
        },
    )


async def _scenario(workdir: Path) -> Observed:
    script = langgraph_stream(list(NODES), tokens=3, first_token_s=0.1, gap_s=0.01)
    async with ScriptedServer() as server, LatencyRelay(server.port, delay_s=DELAY_S) as relay:
        server.route_stateless(script)
        with TinyProxy(workdir) as proxy:
            setups = {
                "sidecar": (_config(server.url), {"LGSE_LOCATION": "sidecar"}),
                "ingress": (_config(relay.url, proxy_url=proxy.url), {"LGSE_LOCATION": "ingress"}),
                "plain": (_config(server.url), {}),
            }
            daemons = {}
            for name, (config, env) in setups.items():
                (workdir / name).mkdir()
                daemons[name] = DaemonProcess(config, workdir / name, env=env)
            prometheus = Prometheus(
                daemons["sidecar"].url,
                workdir,
                scrape_config={
                    "static_configs": [
                        {"targets": [f"127.0.0.1:{d.port}" for d in daemons.values()]}
                    ]
                },
            )
            try:
                # Prometheus first, so it sees every probe (rate() counts from its first scrape).
                await asyncio.to_thread(prometheus.start)
                await asyncio.gather(*(asyncio.to_thread(d.start) for d in daemons.values()))
                ready = (
                    "count(increase(langgraph_probe_node_time_to_first_token_seconds_count[1h])"
                    f" >= {PROBES}) >= {len(daemons) * len(NODES)}"
                )
                if not await asyncio.to_thread(prometheus.wait_for, ready, 60):
                    logs = "\n".join(f"--- {n}\n{d.log()[-2000:]}" for n, d in daemons.items())
                    pytest.fail(f"not every daemon probed {PROBES} times in 60 s:\n{logs}")
                plain = f"127.0.0.1:{daemons['plain'].port}"
                observed = await asyncio.to_thread(_observe, prometheus, plain)
                assert relay.connections >= PROBES, "the ingress daemon bypassed the relay"
                assert "Established connection" in proxy.log_text(), "tinyproxy relayed nothing"
            finally:
                await asyncio.to_thread(prometheus.stop)
                await asyncio.gather(*(asyncio.to_thread(d.stop) for d in daemons.values()))
    return observed


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Observed:
    return asyncio.run(_scenario(tmp_path_factory.mktemp("locations")))


def _by(results: list[dict[str, Any]], *labels: str) -> dict[tuple[str, ...], float]:
    return {
        tuple(r["metric"].get(label, "") for label in labels): float(r["value"][1]) for r in results
    }


def test_location_variable_lists_every_location(observed: Observed) -> None:
    """The location variable's query finds the two locations (an exporter without
    LGSE_LOCATION adds no value of its own)."""
    values = {m["location"] for m in observed.location_values if m.get("location")}
    assert values == {"sidecar", "ingress"}


@pytest.mark.timing
def test_cost_panel_shows_the_round_trip_of_the_far_location(observed: Observed) -> None:
    """Run line: ingress, DELAY_S away each way behind a proxy, costs at least the relay's round
    trip (2 x DELAY_S) more than sidecar, which is the lowest location and so exactly 0.
    Node lines: the path's constant delay reaches a node's tasks start and its first token
    alike and cancels out, so no location shows more than a few ms per node."""
    run = _by(observed.cost["B"], "location", "target")
    assert run.keys() == {("sidecar", "agent"), ("ingress", "agent")}
    assert run[("sidecar", "agent")] == 0.0
    extra_s = run[("ingress", "agent")]
    assert 2 * DELAY_S <= extra_s < 2 * DELAY_S + 0.15, f"ingress run TTFT cost {extra_s:.4f} s"
    node = _by(observed.cost["A"], "location", "target", "node")
    assert node.keys() == {(loc, "agent", n) for loc in ("sidecar", "ingress") for n in NODES}
    for key, value_s in node.items():
        assert 0.0 <= value_s < 0.03, f"{key}: node TTFT cost {value_s:.4f} s"
    for n in NODES:  # per node, the lowest location is the reference
        assert min(node[(loc, "agent", n)] for loc in ("sidecar", "ingress")) == 0.0, n
    samples = _by(observed.cost["N"], "location", "target")
    assert all(n >= PROBES - 1 for n in samples.values()), samples


def test_all_locations_match_exporters_without_a_location(observed: Observed) -> None:
    """With location All (.*), the panels show the exporter that has no `location` label (a
    missing label matches .*); choosing a location leaves it out."""
    for title, results in observed.plain_all.items():
        for result in results:
            values = [float(s["value"][1]) for s in result]
            assert [v for v in values if math.isfinite(v)], f"{title}: no data with All"
    for title, results in observed.plain_sidecar.items():
        assert all(result == [] for result in results), f"{title}: location=sidecar matched"
