"""The targets file: a good one loads with defaults merged; each bad one fails with a golden message.

Golden error strings in the style of blackbox_exporter's `TestLoadBadConfigs`: one bad file per
mistake under tests/data/config/, and the exact problems `ConfigError` reports for it, each
naming the key path. `check-config` is run as a real subprocess on the same files.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from exporter.config import Target, load_config
from exporter.core.errors import ConfigError

DATA = Path(__file__).parent / "data" / "config"
ROOT = Path(__file__).parent.parent

BAD_CONFIGS: dict[str, list[str]] = {
    "invalid-unknown-top-key.yaml": ["target: unknown key (did you mean 'targets'?)"],
    "invalid-unknown-target-key.yaml": [
        "targets[0].intervall: unknown key (did you mean 'interval'?)"
    ],
    "invalid-unknown-timeout-key.yaml": [
        "targets[0].timeout.idel: unknown key (did you mean 'idle'?)"
    ],
    "invalid-defaults-key.yaml": [
        "defaults.name: each target names itself; name cannot be a default",
        "defaults.intervall: unknown key (did you mean 'interval'?)",
    ],
    "invalid-bad-duration.yaml": [
        "targets[0].interval: invalid duration '30 seconds' (use e.g. 500ms, 30s, 1m30s, 2h, 1d:"
        " positive)"
    ],
    "invalid-defaults-bad-duration.yaml": [
        "defaults.interval: invalid duration '1 minute' (use e.g. 500ms, 30s, 1m30s, 2h, 1d:"
        " positive)",
        "defaults.timeout.total: invalid duration '0s' (use e.g. 500ms, 30s, 1m30s, 2h, 1d:"
        " positive)",
    ],
    "invalid-empty.yaml": ["targets: no targets (the file must list at least one)"],
    "invalid-no-targets.yaml": ["targets: no targets (the file must list at least one)"],
    "invalid-url-runs-stream.yaml": [
        "targets[0].url: url must be the server's base URL (the probe adds /runs/stream itself):"
        " got 'http://127.0.0.1:2024/runs/stream', use 'http://127.0.0.1:2024'"
    ],
    "invalid-label-instance.yaml": [
        "targets[0].labels: label 'instance' is set by Prometheus on every scrape (yours would be"
        " renamed exported_instance): choose another name",
        "targets[1].labels: label 'job' is set by Prometheus on every scrape (yours would be"
        " renamed exported_job): choose another name",
    ],
    "invalid-duplicate-names.yaml": ["targets: duplicate target name 'a'"],
    "invalid-url-scheme.yaml": [
        "targets[0].url: url must start with http:// or https://, got 'ftp://127.0.0.1:2024'"
    ],
    "invalid-reserved-label.yaml": ["targets[0].labels: label 'node' is set by the exporter"],
    "invalid-api-key-in-headers.yaml": [
        "targets[0].headers.X-Api-Key: x-api-key is a secret: use api_key_env or api_key_file"
    ],
    # What config lets onto the wire (docs/RELIABILITY.md): no header injection, no credential
    # in plain `headers:`, a CA bundle that exists.
    "invalid-crlf-in-header-value.yaml": [
        "targets[0].headers.x-tenant: header value contains CR, LF or NUL (it would inject headers)"
    ],
    "invalid-nul-in-header-value.yaml": [
        "targets[0].headers.x-tenant: header value contains CR, LF or NUL (it would inject headers)"
    ],
    "invalid-crlf-in-header-name.yaml": [
        "targets[0].headers.'x-tenant\\r\\nX-Injected': invalid header name (letters, digits and"
        " !#$%&'*+-.^_`|~ only; no CR, LF, NUL, ':' or whitespace)"
    ],
    "invalid-authorization-in-headers.yaml": [
        "targets[0].headers.Authorization: authorization is a secret:"
        " put it under secret_headers (env or file)"
    ],
    "invalid-cookie-in-headers.yaml": [
        "targets[0].headers.cookie: cookie is a secret: put it under secret_headers (env or file)"
    ],
    "invalid-proxy-authorization-in-headers.yaml": [
        "targets[0].headers.Proxy-Authorization: proxy-authorization is a secret:"
        " use proxy_auth (password from env or file)"
    ],
    "invalid-proxy-authorization-secret-header.yaml": [
        "targets[0].secret_headers: proxy-authorization cannot be a secret header:"
        " use proxy_auth (password from env or file)"
    ],
    "invalid-missing-ca-file.yaml": [
        "targets[0].ca_file: cannot read CA file '/nonexistent/ca.pem': No such file or directory"
    ],
    "invalid-ca-file-not-pem.yaml": [
        "targets[0].ca_file: no PEM certificate in CA file '/etc/passwd'"
        " (NO_CERTIFICATE_OR_CRL_FOUND)"
    ],
    "invalid-proxy-url-credentials.yaml": [
        "targets[0].proxy_url: proxy_url must not hold credentials:"
        " use proxy_auth (password from env or file)"
    ],
    "invalid-proxy-url-scheme.yaml": [
        "targets[0].proxy_url: proxy_url must be http://host:port (TLS to the proxy is not"
        " supported), got 'https://proxy.internal:3128'"
    ],
    "invalid-proxy-two-sources.yaml": [
        "targets[0]: give proxy_url or proxy_from_environment, not both"
    ],
    "invalid-proxy-auth-without-proxy.yaml": [
        "targets[0]: proxy_auth without proxy_url or proxy_from_environment"
    ],
    "invalid-two-key-sources.yaml": ["targets[0]: give api_key_env or api_key_file, not both"],
    "invalid-idle-below-heartbeat.yaml": [
        "targets[0].timeout: idle must exceed the 5 s heartbeat interval"
    ],
    "invalid-regex.yaml": [
        "targets[0].expect.content_regex: invalid regex '(foggy': "
        "missing ), unterminated subpattern at position 0"
    ],
    "invalid-not-a-mapping.yaml": ["(top level): expected a mapping with `targets:`"],
    "invalid-yaml.yaml": ["line 5: invalid YAML: expected ',' or ']', but got '<stream end>'"],
    "missing.yaml": ["cannot read: No such file or directory"],
}


def test_every_invalid_file_has_a_golden_entry() -> None:
    """The table and the data directory list the same bad files (none silently untested)."""
    on_disk = {p.name for p in DATA.glob("invalid-*.yaml")}
    assert on_disk == {name for name in BAD_CONFIGS if name.startswith("invalid-")}
    assert not (DATA / "missing.yaml").exists()


@pytest.mark.parametrize(("name", "problems"), sorted(BAD_CONFIGS.items()))
def test_bad_config_reports_golden_problems(name: str, problems: list[str]) -> None:
    """Each bad file raises ConfigError naming the file and, per problem, the key path."""
    path = DATA / name
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.path == str(path)
    assert info.value.problems == problems


@pytest.mark.parametrize("name", sorted(BAD_CONFIGS))
def test_check_config_fails_with_path_and_key_path_on_stderr(name: str) -> None:
    """`check-config BAD` exits 1 and prints `FILE: key.path: problem` lines on stderr."""
    path = DATA / name
    proc = subprocess.run(
        [sys.executable, "-m", "exporter", "check-config", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines() == [f"{path}: {p}" for p in BAD_CONFIGS[name]]
    assert proc.stdout == ""


def test_check_config_passes_the_good_file() -> None:
    """`check-config good.yaml` exits 0 and names the targets it found."""
    proc = subprocess.run(
        [sys.executable, "-m", "exporter", "check-config", str(DATA / "good.yaml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "2 targets: agent, agent-thread" in proc.stdout


def good_targets() -> dict[str, Target]:
    return {t.name: t for t in load_config(DATA / "good.yaml").targets}


def test_good_config_loads_both_targets_with_parsed_durations() -> None:
    """good.yaml loads; durations become seconds and the URL loses its trailing slash."""
    targets = good_targets()
    assert set(targets) == {"agent", "agent-thread"}
    assert targets["agent"].url == "http://127.0.0.1:2024"
    assert targets["agent"].interval == 30.0
    assert targets["agent-thread"].interval == 120.0
    assert targets["agent-thread"].mode == "thread"


def test_defaults_timeout_merges_key_by_key_with_a_targets_timeout() -> None:
    """A target's `timeout.total` overrides the default's; the default's `idle` is kept."""
    agent = good_targets()["agent"]
    assert agent.timeout.total == 60.0  # the target's own
    assert agent.timeout.idle == 20.0  # from defaults.timeout
    assert agent.timeout.headers == 10.0  # the built-in default


def test_defaults_apply_to_a_target_without_the_block() -> None:
    """A target with no `timeout` of its own takes the whole defaults.timeout."""
    thread = good_targets()["agent-thread"]
    assert (thread.timeout.idle, thread.timeout.total) == (20.0, 90.0)


def test_defaults_labels_and_expect_merge_with_the_targets() -> None:
    """Labels and expectations merge key by key too (env from defaults, team from the target)."""
    agent = good_targets()["agent"]
    assert agent.labels == {"env": "test", "team": "search"}
    assert agent.expect.min_tokens == 2 and agent.expect.nodes == ("agent", "action")


def test_api_key_is_read_from_its_env_var_when_used_not_at_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The file names the variable; its value is read at probe time (a rotated key is seen)."""
    monkeypatch.delenv("LANGGRAPH_API_KEY", raising=False)
    agent = good_targets()["agent"]
    assert agent.api_key() is None
    monkeypatch.setenv("LANGGRAPH_API_KEY", "lsv2_rotated")
    key = agent.api_key()
    assert key is not None and key.get_secret_value() == "lsv2_rotated"
    assert "lsv2_rotated" not in repr(key)


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"targets: [\xff\xfe]\n", id="not-utf8"),
        pytest.param(b"[" * 5000 + b"]" * 5000, id="deep-nesting"),
    ],
)
def test_unreadable_content_is_a_config_error(tmp_path: Path, content: bytes) -> None:
    """A file that is not UTF-8 or nests too deeply is a ConfigError, not a traceback."""
    path = tmp_path / "config.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError):
        load_config(path)


@pytest.mark.parametrize("value", [".nan", ".inf"])
def test_non_finite_durations_are_rejected(tmp_path: Path, value: str) -> None:
    """A NaN or infinite duration is a ConfigError naming the key."""
    path = tmp_path / "config.yaml"
    path.write_text(
        "targets:\n  - name: a\n    url: http://127.0.0.1:2024\n    assistant_id: agent\n"
        f"    timeout:\n      idle: {value}\n"
    )
    with pytest.raises(ConfigError, match=r"targets\[0\]\.timeout\.idle"):
        load_config(path)


def test_a_near_miss_key_gets_a_hint_and_a_far_one_none(tmp_path: Path) -> None:
    """`assistant:` for `assistant_id` is answered with the key meant; a key like nothing the
    file may hold gets no guess."""
    path = tmp_path / "t.yaml"
    path.write_text(
        "targets:\n  - {name: a, url: 'http://127.0.0.1:1', assistant: agent, colour: red}\n"
    )
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert "targets[0].assistant: unknown key (did you mean 'assistant_id'?)" in text
    assert "targets[0].colour: unknown key\n" in text + "\n" and "colour: unknown key (" not in text
