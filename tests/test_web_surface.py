"""The daemon's own web surface, on the real daemon subprocess: lifecycle switch, bounded
on-demand probes, counters at zero, and the web-config file (TLS, basic auth)."""

from __future__ import annotations

import asyncio
import base64
import ssl
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import pytest
import trustme

from exporter.core.errors import ConfigError
from exporter.daemon.webconfig import BasicAuth, load_web_config
from tests.support.daemon import DaemonProcess, Prometheus, samples
from tests.support.scripted_server import ScriptedServer, langgraph_stream

pytestmark = pytest.mark.slow

USER, PASSWORD = "prometheus", "s3cret-scrape-password"


def one_target(url: str, name: str = "t") -> dict[str, Any]:
    return {
        "defaults": {"interval": "1h"},  # probes come from /probe only
        # legacy: the scripted servers speak the classic runs/stream wire only
        "targets": [{"name": name, "url": url, "assistant_id": "agent", "protocol": "legacy"}],
    }


# ------------------------------------------------------------------ lifecycle switch


def test_lifecycle_apis_are_403_by_default_and_say_how_to_enable(tmp_path: Path) -> None:
    """Without LGSE_WEB_ENABLE_LIFECYCLE, /probe and POST /-/reload answer 403 naming the
    switch, and the target gets no request; /metrics still answers."""

    async def scenario() -> tuple[httpx.Response, httpx.Response, int, str]:
        async with ScriptedServer() as server:
            server.route_stateless(langgraph_stream(tokens=2, first_token_s=0, gap_s=0))
            daemon = DaemonProcess(one_target(server.url), tmp_path)
            await asyncio.to_thread(daemon.start)
            try:
                probe = await asyncio.to_thread(daemon.get, "/probe", params={"target": "t"})
                reload = await asyncio.to_thread(daemon.post, "/-/reload")
                metrics = await asyncio.to_thread(daemon.get, "/metrics")
            finally:
                await asyncio.to_thread(daemon.stop)
            return probe, reload, len(server.requests), metrics.text

    probe, reload, requests, _ = asyncio.run(scenario())
    assert (probe.status_code, reload.status_code) == (403, 403)
    assert "LGSE_WEB_ENABLE_LIFECYCLE=true" in probe.text
    assert requests == 0


def test_index_page_without_lifecycle_offers_no_probe_and_says_none_failed(
    tmp_path: Path,
) -> None:
    """Lifecycle off, after a successful scheduled probe: `/` does not offer `/probe` (it
    answers 403) but says how to turn it on, and its empty failures section says no probe
    failed, not that none finished."""

    async def scenario() -> str:
        async with ScriptedServer() as server:
            server.route_stateless(langgraph_stream(tokens=2, first_token_s=0, gap_s=0))
            config = one_target(server.url)
            config["defaults"] = {"interval": "1s"}
            daemon = DaemonProcess(config, tmp_path)
            await asyncio.to_thread(daemon.start)
            try:
                deadline = asyncio.get_running_loop().time() + 15
                while not (await asyncio.to_thread(daemon.get, "/-/probes")).json()["recent"]:
                    assert asyncio.get_running_loop().time() < deadline, "no probe finished"
                    await asyncio.sleep(0.1)  # polling the schedule, not a race fix
                return (await asyncio.to_thread(daemon.get, "/")).text
            finally:
                await asyncio.to_thread(daemon.stop)

    page = asyncio.run(scenario())
    assert "/probe?target" not in page
    assert "--web.enable-lifecycle" in page
    assert "No probe has finished yet" not in page
    assert "No probe has failed since the exporter started." in page


def test_counters_exist_at_zero_on_a_fresh_exporter(tmp_path: Path) -> None:
    """Before any probe: probes_skipped_total for every reason and sink_errors_total for every
    configured sink are exposed at 0 (not missing)."""
    with DaemonProcess(one_target("http://127.0.0.1:9"), tmp_path) as daemon:
        text = daemon.get("/metrics").text
    skipped = {
        dict(k)["reason"]: v
        for k, v in samples(text, "langgraph_probe_probes_skipped_total").items()
    }
    assert skipped == {"overlap": 0.0, "concurrency": 0.0}
    errors = {
        dict(k)["sink"]: v for k, v in samples(text, "langgraph_probe_sink_errors_total").items()
    }
    assert errors == {"prometheus": 0.0, "log": 0.0, "history": 0.0, "events": 0.0}


# ------------------------------------------------------------------ bounded on-demand probes


def test_two_concurrent_probes_of_one_target_one_runs_the_other_gets_429(tmp_path: Path) -> None:
    """/probe twice at once for one target: the first runs (200), the second, sent while the
    first is streaming, gets 429 with Retry-After; the server saw one run. The result stays
    out of runs_total and is counted in on_demand_runs_total."""

    async def scenario() -> tuple[httpx.Response, httpx.Response, int, str]:
        async with ScriptedServer() as server:
            server.route_stateless(langgraph_stream(tokens=2, first_token_s=1.0, gap_s=0))
            daemon = DaemonProcess(one_target(server.url), tmp_path, lifecycle=True)
            await asyncio.to_thread(daemon.start)
            try:
                async with httpx.AsyncClient(base_url=daemon.url, timeout=30) as client:
                    first = asyncio.create_task(client.get("/probe", params={"target": "t"}))
                    deadline = asyncio.get_running_loop().time() + 10
                    while not server.requests_to("POST", "/runs/stream"):
                        assert asyncio.get_running_loop().time() < deadline, "no run arrived"
                        await asyncio.sleep(0.01)  # the first probe has reached the server
                    second = await client.get("/probe", params={"target": "t"})
                    metrics = (await client.get("/metrics")).text
                    runs = len(server.requests_to("POST", "/runs/stream"))
                    return await first, second, runs, metrics
            finally:
                await asyncio.to_thread(daemon.stop)

    first, second, requests, _ = asyncio.run(scenario())
    assert first.status_code == 200 and first.json()["outcome"] == "success"
    assert second.status_code == 429
    assert int(second.headers["retry-after"]) >= 1
    assert requests == 1


def test_on_demand_result_is_kept_out_of_runs_total(tmp_path: Path) -> None:
    """After a successful /probe: runs_total{target} is 0 everywhere, on_demand_runs_total
    {outcome="success"} is 1."""

    async def scenario() -> str:
        async with ScriptedServer() as server:
            server.route_stateless(langgraph_stream(tokens=2, first_token_s=0, gap_s=0))
            daemon = DaemonProcess(one_target(server.url), tmp_path, lifecycle=True)
            await asyncio.to_thread(daemon.start)
            try:
                r = await asyncio.to_thread(daemon.get, "/probe", params={"target": "t"})
                assert r.json()["outcome"] == "success", r.text
                return (await asyncio.to_thread(daemon.get, "/metrics")).text
            finally:
                await asyncio.to_thread(daemon.stop)

    text = asyncio.run(scenario())
    assert sum(samples(text, "langgraph_probe_runs_total").values()) == 0
    on_demand = {
        (dict(k)["outcome"], dict(k)["reason"]): v
        for k, v in samples(text, "langgraph_probe_on_demand_runs_total").items()
        if v
    }
    assert on_demand == {("success", ""): 1.0}


# ------------------------------------------------------------------ web-config: parsing


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "web-config.yml"
    path.write_text(text)
    return str(path)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A trustme CA, a server certificate for 127.0.0.1 and a client certificate, as files."""
    d = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("scraper@example.test")
    ca.cert_pem.write_to_path(str(d / "ca.crt"))
    server.cert_chain_pems[0].write_to_path(str(d / "server.crt"))
    server.private_key_pem.write_to_path(str(d / "server.key"))
    client.private_key_and_cert_chain_pem.write_to_path(str(d / "client.pem"))
    return {"dir": d, "ca": str(d / "ca.crt"), "crt": str(d / "server.crt"),
            "key": str(d / "server.key"), "client": str(d / "client.pem")}  # fmt: skip


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n  min_version: TLS13\n",
         "tls_server_config.min_version: not supported by langgraph-stream-exporter"),
        ("http_server_config:\n  http2: false\n", "http_server_config: not supported"),
        ("basic_auth_user:\n  a: b\n", "basic_auth_user: unknown key"),
        ("basic_auth_users:\n  prometheus: plain-password\n",
         "basic_auth_users.prometheus: not a bcrypt hash"),
        ("tls_server_config:\n  cert_file: missing.crt\n  key_file: server.key\n",
         "tls_server_config.cert_file:"),
        ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
         "  client_auth_type: RequestClientCert\n",
         "tls_server_config.client_auth_type: 'RequestClientCert' is not supported"),
        ("tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
         "  client_auth_type: RequireAndVerifyClientCert\n",
         "RequireAndVerifyClientCert needs client_ca_file"),
        ("tls_server_config:\n  cert_file: server.key\n  key_file: server.key\n",
         "cannot load the certificate or key"),
    ],
)  # fmt: skip
def test_bad_web_config_names_the_key(pki: dict[str, Any], text: str, problem: str) -> None:
    """Every unsupported or invalid key is an error naming the key path (and never echoes a
    value that could be a password)."""
    path = write(pki["dir"], text)
    with pytest.raises(ConfigError) as err:
        load_web_config(path)
    assert err.value.path == path
    assert any(problem in p for p in err.value.problems), err.value.problems
    assert "plain-password" not in str(err.value)


def test_daemon_refuses_to_start_with_an_unsupported_web_config_key(
    pki: dict[str, Any], tmp_path: Path
) -> None:
    """Exit 1, stderr naming the file and the key."""
    web = {"tls_server_config": {"cert_file": pki["crt"], "key_file": pki["key"],
                                 "cipher_suites": ["TLS_AES_128_GCM_SHA256"]}}  # fmt: skip
    daemon = DaemonProcess(one_target("http://127.0.0.1:9"), tmp_path, web_config=web)
    with pytest.raises(RuntimeError, match=r"web-config.yml: tls_server_config.cipher_suites"):
        daemon.start()
    assert daemon.proc is not None and daemon.proc.returncode == 1


def test_successful_basic_auth_check_is_cached_failures_are_not(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """bcrypt runs once for repeated good credentials, every time for a wrong password."""
    calls: list[bytes] = []
    real = bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        calls.append(password)
        return real(password, hashed)

    monkeypatch.setattr(bcrypt, "checkpw", counting)
    auth = BasicAuth({USER: bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4))})
    good = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    bad = "Basic " + base64.b64encode(f"{USER}:wrong".encode()).decode()

    async def checks() -> list[bool]:
        return [await auth.check(h) for h in (good, good, good, bad, bad)]

    assert asyncio.run(checks()) == [True, True, True, False, False]
    assert calls == [PASSWORD.encode(), b"wrong", b"wrong"]


# ------------------------------------------------------------------ web-config: TLS + basic auth


def tls_context(pki: dict[str, Any], *, client_cert: bool = False) -> ssl.SSLContext:
    """Trusts the test CA; presents the client certificate when asked."""
    ctx = ssl.create_default_context(cafile=pki["ca"])
    if client_cert:
        ctx.load_cert_chain(pki["client"])
    return ctx


def web_config(pki: dict[str, Any], **tls: str) -> dict[str, Any]:
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    return {
        "tls_server_config": {"cert_file": "server.crt", "key_file": "server.key", **tls},
        "basic_auth_users": {USER: hashed},
    }


def relative_web_config(pki: dict[str, Any], tmp_path: Path, **tls: str) -> dict[str, Any]:
    """Paths relative to the web-config file, as exporter-toolkit resolves them."""
    for name in ("server.crt", "server.key", "ca.crt"):
        (tmp_path / name).write_bytes((pki["dir"] / name).read_bytes())
    return web_config(pki, **tls)


def test_every_endpoint_but_health_needs_credentials_over_tls(
    pki: dict[str, Any], tmp_path: Path
) -> None:
    """Over TLS with basic_auth_users: no or wrong credentials get 401 with WWW-Authenticate on
    /metrics, /-/probes, /probe, / and unknown paths; the right ones get 200; /healthz and
    /readyz answer without credentials (for the kubelet); plain HTTP is refused."""
    web = relative_web_config(pki, tmp_path)
    daemon = DaemonProcess(one_target("http://127.0.0.1:9"), tmp_path, web_config=web,
                           client={"verify": tls_context(pki), "auth": (USER, PASSWORD)})  # fmt: skip
    with daemon:
        assert daemon.url.startswith("https://")
        for path in ("/metrics", "/-/probes", "/probe?target=t", "/", "/nope"):
            for auth in (None, (USER, "wrong"), ("someone", PASSWORD)):
                r = httpx.get(daemon.url + path, verify=tls_context(pki), auth=auth, timeout=10)
                assert r.status_code == 401, (path, auth, r.status_code)
                assert r.headers["www-authenticate"].startswith('Basic realm="'), path
        assert daemon.get("/metrics").status_code == 200
        assert daemon.get("/-/probes").status_code == 200
        for path in ("/healthz", "/readyz"):
            assert (
                httpx.get(daemon.url + path, verify=tls_context(pki), timeout=10).status_code == 200
            )
        with pytest.raises(httpx.TransportError):
            httpx.get(daemon.url.replace("https://", "http://") + "/healthz", timeout=5)


def test_client_certificate_required_when_configured(pki: dict[str, Any], tmp_path: Path) -> None:
    """client_auth_type RequireAndVerifyClientCert: a client without a certificate cannot
    connect; one with a certificate from client_ca_file can."""
    web = relative_web_config(
        pki, tmp_path, client_ca_file="ca.crt", client_auth_type="RequireAndVerifyClientCert"
    )
    client = {"verify": tls_context(pki, client_cert=True), "auth": (USER, PASSWORD)}
    with DaemonProcess(one_target("http://127.0.0.1:9"), tmp_path, web_config=web,
                       client=client) as daemon:  # fmt: skip
        assert daemon.get("/metrics").status_code == 200
        with pytest.raises((httpx.TransportError, ssl.SSLError)):
            r = httpx.get(daemon.url + "/healthz", verify=tls_context(pki), timeout=5)
            r.raise_for_status()


def test_real_prometheus_scrapes_over_tls_with_basic_auth(
    pki: dict[str, Any], tmp_path: Path
) -> None:
    """A real Prometheus scraping https://…/metrics with the CA and the credentials has the
    target up; a job without credentials has it down with a 401."""
    web = relative_web_config(pki, tmp_path)
    daemon = DaemonProcess(one_target("http://127.0.0.1:9"), tmp_path, web_config=web,
                           client={"verify": tls_context(pki), "auth": (USER, PASSWORD)})  # fmt: skip
    tls = {"tls_config": {"ca_file": pki["ca"]}}
    with daemon:
        prometheus = Prometheus(
            daemon.url,
            tmp_path,
            scrape_config={**tls, "basic_auth": {"username": USER, "password": PASSWORD}},
            extra_jobs=[{"job_name": "no-credentials", **tls}],
        ).start()
        try:
            by_job = prometheus.wait_for_scrapes()
            up = prometheus.wait_for('up{job="langgraph-stream-exporter"} == 1')
            series = prometheus.wait_for("langgraph_probe_config_last_reload_successful")
        finally:
            prometheus.stop()
    with_auth, without = by_job["langgraph-stream-exporter"], by_job["no-credentials"]
    assert with_auth["health"] == "up", with_auth
    assert with_auth["scrapeUrl"].startswith("https://")
    assert up and series
    assert without["health"] == "down", without
    assert "401" in without["lastError"], without["lastError"]


def test_accept_encoding_gzip_unless_refused() -> None:
    """`/metrics` compresses for gzip, x-gzip and `*`; `q=0` and other codings get plain text."""
    from exporter.daemon.web import accepts_gzip

    assert accepts_gzip("gzip") and accepts_gzip("br, gzip;q=0.5") and accepts_gzip("*")
    assert not accepts_gzip("") and not accepts_gzip("identity")
    assert not accepts_gzip("gzip;q=0") and not accepts_gzip("br, deflate")
