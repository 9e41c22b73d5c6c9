"""What config lets onto the wire (docs/RELIABILITY.md): secrets read as they are, masked in
every form they take in output, `probe --header` checked like the file, and a CA bundle that
vanishes after loading failing the probe as `tls`."""

from __future__ import annotations

import json
import os
import urllib.parse
from pathlib import Path

import pytest

from exporter.cli import main
from exporter.config import SecretMask, SecretSource, Target
from exporter.core.errors import FailureKind
from exporter.probe import probe
from tests.support.scripted_server import ScriptedServer, langgraph_stream
from tests.support.tls import localhost_tls

SECRET = 'sk-"quoted\\key"-ünï'


@pytest.mark.parametrize("value", ["'abc-123'", '"abc-123"', "abc'", '"tok"en"'])
def test_quotes_in_an_environment_secret_are_kept(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """A key whose value starts or ends with a quote is sent exactly as the variable holds it."""
    monkeypatch.setenv("LGSE_TEST_KEY", value)
    source = SecretSource(env="LGSE_TEST_KEY")
    secret = source.read()
    assert secret is not None and secret.get_secret_value() == value


def test_surrounding_newline_of_an_environment_secret_is_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Only the whitespace a shell or manifest adds around a value goes."""
    monkeypatch.setenv("LGSE_TEST_KEY", "abc-123\n")
    secret = SecretSource(env="LGSE_TEST_KEY").read()
    assert secret is not None and secret.get_secret_value() == "abc-123"


@pytest.mark.parametrize(
    "form",
    [
        pytest.param(SECRET, id="raw"),
        pytest.param(json.dumps(SECRET, ensure_ascii=False)[1:-1], id="json-escaped"),
        pytest.param(json.dumps(SECRET)[1:-1], id="json-ascii-escaped"),
        pytest.param(urllib.parse.quote(SECRET, safe=""), id="url-encoded"),
        pytest.param(urllib.parse.quote_plus(SECRET), id="form-encoded"),
    ],
)
def test_mask_catches_every_form_of_a_secret(form: str) -> None:
    """A server echoing the key inside JSON or a URL is masked too, in text and in bytes."""
    mask = SecretMask([SECRET])
    text = f'{{"detail": "invalid key {form}"}}'
    assert form not in mask.text(text) and "***" in mask.text(text)
    assert form.encode() not in mask.bytes(text.encode())


def _target(url: str, **fields: object) -> Target:
    return Target.model_validate({"name": "t", "url": url, "assistant_id": "agent", **fields})


@pytest.mark.anyio
async def test_ca_file_deleted_after_loading_fails_the_probe_as_tls(tmp_path: Path) -> None:
    """The bundle existed when the config loaded and is gone now: `tls`, not `internal`."""
    server_ctx, ca_path = localhost_tls(tmp_path)
    async with ScriptedServer(ssl_context=server_ctx) as server:
        server.route_stateless(langgraph_stream(["agent"], tokens=1, first_token_s=0, gap_s=0))
        target = _target(server.url, ca_file=str(ca_path))
        first = await probe(target)
        os.remove(ca_path)
        second = await probe(target)
    assert first.failure is None, first.failure
    assert second.failure is not None
    assert (second.failure.kind, second.failure.phase) == (FailureKind.TLS, "connect")
    assert str(ca_path) in second.failure.message


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("x-tenant: abc\r\nX-Injected: 1", "header value contains CR, LF or NUL"),
        ("x-tenant: abc\nX-Injected: 1", "header value contains CR, LF or NUL"),
        ("x-tenant: abc\x00", "header value contains CR, LF or NUL"),
        ("x ten ant: abc", "invalid header name"),
        ("Authorization: Bearer sk-cli-secret", "authorization is a secret"),
        ("Cookie: session=sk-cli-secret", "cookie is a secret"),
    ],
)
def test_probe_header_refuses_what_the_config_refuses(
    capsys: pytest.CaptureFixture[str], header: str, expected: str
) -> None:
    """`probe --header` is a usage error (exit 2) for injection and for credentials, and the
    value is not echoed."""
    with pytest.raises(SystemExit) as info:
        main(["probe", "--url", "http://127.0.0.1:1", "--assistant", "a", "--header", header])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert expected in err
    assert "X-Injected: 1" not in err and "sk-cli-secret" not in err
