"""Probing through a real HTTP forward proxy (tinyproxy, from scripts/install-tools.sh).

http targets go as absolute-form requests to the proxy (which adds its `Via` header to what it
forwards); https targets go through a `CONNECT` tunnel to a loopback TLS server whose
certificate comes from a test CA (trustme), so the proxy sees only the tunnel. Each test checks
that the request really went through the proxy: its log, or the `Via` header it adds.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import pytest

from exporter.config import Target
from exporter.core.errors import FailureKind
from exporter.http.client import Transport, client_for
from exporter.http.transport import ArrivalStream
from exporter.probe import probe
from tests.support.forward_proxy import TinyProxy
from tests.support.scripted_server import ScriptedServer, langgraph_stream
from tests.support.tls import localhost_tls

pytestmark = pytest.mark.anyio

FAST = {"connect": 3, "headers": 3, "first_event": 3.5, "first_token": 3.8, "idle": 3, "total": 4}
TRANSPORTS: list[Transport] = list(get_args(Transport))
USER, PASSWORD = "probe", "pr0xy-s3cret-pw"


#: The daemon runs on uvloop (exporter/runtime.py), tests default to asyncio: the http cases
#: run on both. NOTE: not the https ones: the scripted TLS server, serving from the same uvloop
#: loop, stalls after the response head (a client on uvloop against it from another loop reads
#: the whole stream), so those run on asyncio only.
BOTH_LOOPS = pytest.mark.parametrize(
    "anyio_backend", ["asyncio", ("asyncio", {"use_uvloop": True})], ids=["asyncio", "uvloop"]
)


@pytest.fixture(scope="module")
def proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TinyProxy]:
    with TinyProxy(tmp_path_factory.mktemp("proxy")) as p:
        yield p


@pytest.fixture(scope="module")
def auth_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TinyProxy]:
    with TinyProxy(tmp_path_factory.mktemp("auth-proxy"), basic_auth=(USER, PASSWORD)) as p:
        yield p


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> tuple[ssl.SSLContext, str]:
    return localhost_tls(tmp_path_factory.mktemp("tls"))


def make_target(url: str, **fields: Any) -> Target:
    return Target.model_validate(
        {"name": "proxied", "url": url, "assistant_id": "agent", "timeout": FAST, **fields}
    )


def stream() -> Any:
    return langgraph_stream(["agent"], tokens=3, first_token_s=0, gap_s=0.005)


def phases(arrival: ArrivalStream) -> dict[str, int | None]:
    names = ("dns_start_ns", "dns_done_ns", "connect_done_ns", "proxy_connect_done_ns",
             "tls_done_ns", "request_written_ns", "headers_ns")  # fmt: skip
    return {n: getattr(arrival, n) for n in names}


@BOTH_LOOPS
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_http_target_goes_through_the_proxy(proxy: TinyProxy, transport: Transport) -> None:
    """An http target with `proxy_url`: the request reaches the server via tinyproxy."""
    async with ScriptedServer() as server:
        server.route_stateless(stream())
        result = await probe(make_target(server.url, proxy_url=proxy.url), transport=transport)
    assert result.failure is None, result.failure
    assert result.tokens == 3
    assert "tinyproxy" in server.requests[0].headers.get("via", "")
    assert f"POST {server.url}/runs/stream" in proxy.log_text()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_https_target_goes_through_a_connect_tunnel(
    proxy: TinyProxy, tls: tuple[ssl.SSLContext, str], transport: Transport
) -> None:
    """An https target with `proxy_url`: CONNECT, then TLS with the origin inside the tunnel
    (the proxy cannot add `Via`: it sees only ciphertext)."""
    ctx, ca_file = tls
    async with ScriptedServer(ssl_context=ctx) as server:
        server.route_stateless(stream())
        t = make_target(server.url, proxy_url=proxy.url, ca_file=ca_file)
        result = await probe(t, transport=transport)
    assert result.failure is None, result.failure
    assert result.tokens == 3
    assert f"CONNECT localhost:{server.port} " in proxy.log_text()
    assert "via" not in server.requests[0].headers


@BOTH_LOOPS
async def test_http_phases_through_the_proxy(proxy: TinyProxy) -> None:
    """http via a proxy: DNS and connect are the proxy's, no tunnel and no TLS stamp."""
    async with ScriptedServer() as server:
        server.route_stateless(stream())
        async with client_for(make_target(server.url, proxy_url=proxy.url)) as client:
            request = client.build_request("POST", server.url + "/runs/stream", content=b"{}")
            response = await client.send(request, stream=True)
            await response.aclose()
    arrival = response.extensions["arrival"]
    assert "tinyproxy" in response.headers.get("via", "")
    got = phases(arrival)
    assert got["proxy_connect_done_ns"] is None and got["tls_done_ns"] is None
    stamps = [v for v in got.values() if v is not None]
    assert len(stamps) == 5 and stamps == sorted(stamps), f"out of order: {got}"


async def test_https_phases_through_the_proxy(
    proxy: TinyProxy, tls: tuple[ssl.SSLContext, str]
) -> None:
    """https via CONNECT: DNS, TCP to the proxy, tunnel open, TLS with the origin, request
    written, headers: every stamp set, in that order on the clock."""
    ctx, ca_file = tls
    async with ScriptedServer(ssl_context=ctx) as server:
        server.route_stateless(stream())
        t = make_target(server.url, proxy_url=proxy.url, ca_file=ca_file)
        async with client_for(t) as client:
            request = client.build_request("POST", server.url + "/runs/stream", content=b"{}")
            response = await client.send(request, stream=True)
            await response.aclose()
    got = phases(response.extensions["arrival"])
    stamps = list(got.values())
    assert all(isinstance(v, int) and v > 0 for v in stamps), got
    assert stamps == sorted(stamps), f"phase stamps out of order: {got}"


async def test_untrusted_origin_through_the_tunnel_is_tls(
    proxy: TinyProxy, tls: tuple[ssl.SSLContext, str]
) -> None:
    """The origin's certificate is still verified inside the tunnel: without the CA, `tls`."""
    ctx, _ = tls
    async with ScriptedServer(ssl_context=ctx) as server:
        server.route_stateless(stream())
        result = await probe(make_target(server.url, proxy_url=proxy.url))
    assert result.failure is not None
    assert (result.failure.kind, result.failure.phase) == (FailureKind.TLS, "connect")


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_proxy_credentials_from_a_secret_file(
    auth_proxy: TinyProxy, tls: tuple[ssl.SSLContext, str], tmp_path: Path, scheme: str
) -> None:
    """`proxy_auth` with the password in a file: the proxy lets the probe through."""
    ctx, ca_file = tls
    secret = tmp_path / "proxy-password"
    secret.write_text(PASSWORD + "\n")
    auth = {"username": USER, "password": {"file": str(secret)}}
    extra = {"ca_file": ca_file} if scheme == "https" else {}
    async with ScriptedServer(ssl_context=ctx if scheme == "https" else None) as server:
        server.route_stateless(stream())
        t = make_target(server.url, proxy_url=auth_proxy.url, proxy_auth=auth, **extra)
        result = await probe(t)
    assert result.failure is None, result.failure
    # The credentials are for the proxy: the origin never sees them.
    assert "proxy-authorization" not in server.requests[0].headers


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_wrong_proxy_credentials_fail_without_showing_them(
    auth_proxy: TinyProxy,
    tls: tuple[ssl.SSLContext, str],
    monkeypatch: pytest.MonkeyPatch,
    scheme: str,
) -> None:
    """A refused password: https is a `connect` failure naming the proxy's answer, http gets
    that answer as its status; the password appears nowhere in the result. (tinyproxy 1.11
    answers a bad BasicAuth with 401, not the 407 of RFC 9110.)"""
    ctx, ca_file = tls
    monkeypatch.setenv("PROXY_PASSWORD", "wrong-" + PASSWORD)
    auth = {"username": USER, "password": {"env": "PROXY_PASSWORD"}}
    extra = {"ca_file": ca_file} if scheme == "https" else {}
    async with ScriptedServer(ssl_context=ctx if scheme == "https" else None) as server:
        server.route_stateless(stream())
        t = make_target(server.url, proxy_url=auth_proxy.url, proxy_auth=auth, **extra)
        result = await probe(t)
    assert result.failure is not None
    if scheme == "https":
        assert (result.failure.kind, result.failure.phase) == (FailureKind.CONNECT, "connect")
        assert "proxy refused CONNECT" in result.failure.message
        assert "401 Unauthorized" in result.failure.message
    else:
        assert result.http_status == 401
    assert server.requests == []
    text = str(result.to_dict())
    assert PASSWORD not in text


@BOTH_LOOPS
async def test_proxy_from_environment_and_no_proxy(
    proxy: TinyProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`proxy_from_environment`: HTTP_PROXY is used; a NO_PROXY match goes direct."""
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    async with ScriptedServer() as server:
        server.route_stateless(stream())
        t = make_target(server.url, proxy_from_environment=True)
        via_proxy = await probe(t)
        monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
        direct = await probe(t)
    assert via_proxy.failure is None and direct.failure is None
    assert "tinyproxy" in server.requests[0].headers.get("via", "")
    assert "via" not in server.requests[1].headers


async def test_proxy_environment_is_ignored_unless_asked(
    proxy: TinyProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Off by default: HTTP_PROXY in the environment does not route a target through it."""
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    async with ScriptedServer() as server:
        server.route_stateless(stream())
        result = await probe(make_target(server.url))
    assert result.failure is None
    assert "via" not in server.requests[0].headers


@BOTH_LOOPS
async def test_credentials_in_the_proxy_environment_are_used_and_masked(
    auth_proxy: TinyProxy, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`HTTP_PROXY=http://user:pass@host:port` authenticates; the password is a secret."""
    host = auth_proxy.url.removeprefix("http://")
    monkeypatch.setenv("HTTP_PROXY", f"http://{USER}:{PASSWORD}@{host}")
    async with ScriptedServer() as server:
        server.route_stateless(stream())
        t = make_target(server.url, proxy_from_environment=True)
        result = await probe(t)
    assert result.failure is None, result.failure
    assert PASSWORD in t.secret_values()


@BOTH_LOOPS
async def test_proxy_not_listening_is_connect_naming_the_proxy() -> None:
    """A proxy that refuses connections: `connect` failure whose message names the proxy."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = await probe(make_target("http://127.0.0.1:9/", proxy_url=f"http://127.0.0.1:{port}"))
    assert result.failure is not None
    assert (result.failure.kind, result.failure.phase) == (FailureKind.CONNECT, "connect")
    assert f"proxy 127.0.0.1:{port}" in result.failure.message
