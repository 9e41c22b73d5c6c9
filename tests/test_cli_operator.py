"""The command line an operator types: durations with units, every phase timeout, the
`--assistant-id` alias, `probe --config FILE --target NAME`, missing secrets, several files in
`check-config`. Real subprocesses against the scripted server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from exporter.config import DURATION_EXAMPLES_INVALID, DURATION_EXAMPLES_VALID, parse_duration
from tests.support.cli import run_cli
from tests.support.scripted_server import ScriptedServer, langgraph_stream

ROOT = Path(__file__).parent.parent
GOOD = ROOT / "tests" / "data" / "config" / "good.yaml"


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-m", "exporter", *args], cwd=ROOT, capture_output=True, text=True,
        timeout=60, env={**os.environ, **(env or {})},
    )  # fmt: skip


acli = run_cli


# ---------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1m30s", 90.0), ("1d", 86400.0), ("1w", 604800.0), ("500ms", 0.5), ("30s", 30.0),
     ("1h30m", 5400.0), ("1.5s", 1.5), ("30", 30.0)],
)  # fmt: skip
def test_prometheus_durations_parse_to_seconds(text: str, seconds: float) -> None:
    """Prometheus duration syntax (compound units, d, w) is accepted, in seconds."""
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", DURATION_EXAMPLES_VALID)
def test_every_valid_example_parses(text: str) -> None:
    """The parser's valid examples (also run through the chart schema) parse to > 0 s."""
    assert parse_duration(text) > 0


@pytest.mark.parametrize("text", DURATION_EXAMPLES_INVALID)
def test_every_invalid_example_is_rejected(text: str) -> None:
    """The parser's invalid examples (also run through the chart schema) raise ValueError."""
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.anyio
async def test_probe_accepts_durations_and_every_phase_timeout_and_assistant_id() -> None:
    """`--timeout-total 30s`, each `--timeout-<phase>` and `--assistant-id` reach the probe:
    a 300ms first-token deadline fails a stream whose first token comes after 1 s."""
    async with ScriptedServer() as server:
        server.route_stateless(langgraph_stream(tokens=2, first_token_s=1.0, gap_s=0.01))
        code, out, err = await acli(
            "probe", "--json", "--url", server.url, "--assistant-id", "agent",
            "--timeout-total", "30s", "--timeout-connect", "2s", "--timeout-headers", "5s",
            "--timeout-first-event", "10s", "--timeout-first-token", "300ms",
            "--timeout-idle", "20s",
        )  # fmt: skip
    assert code == 1, err
    result = orjson.loads(out)
    assert result["assistant_id"] == "agent"
    assert result["failure"]["kind"] == "deadline"
    assert "first_token" in result["failure"]["message"] or "token" in result["failure"]["message"]


def test_load_accepts_a_duration_with_unit() -> None:
    """`load --duration 10s` parses (it used to be rejected as not a float): the run is then
    stopped by the secret check, proving the parser accepted the flag."""
    proc = cli("load", "--url", "http://127.0.0.1:9", "--assistant", "a", "--concurrency", "1",
               "--duration", "10s", "--api-key-env", "OPTEST_UNSET_KEY")  # fmt: skip
    assert "invalid" not in proc.stderr and "--duration" not in proc.stderr, proc.stderr
    assert "OPTEST_UNSET_KEY" in proc.stderr


def test_a_bad_duration_flag_is_a_usage_error_naming_the_flag() -> None:
    """`--timeout-total 30 seconds` exits 2 naming the flag."""
    proc = cli("probe", "--url", "http://127.0.0.1:9", "--assistant", "a",
               "--timeout-total", "30 seconds")  # fmt: skip
    assert proc.returncode == 2
    assert "--timeout-total" in proc.stderr and "invalid duration" in proc.stderr


# ------------------------------------------------------------------------ missing secrets


def test_probe_with_an_unset_api_key_env_exits_2_naming_it() -> None:
    """`--api-key-env NOPE` (unset): exit 2, the message names NOPE; nothing is sent."""
    proc = cli("probe", "--url", "http://127.0.0.1:9", "--assistant", "a",
               "--api-key-env", "OPTEST_NOPE")  # fmt: skip
    assert proc.returncode == 2
    assert "environment variable OPTEST_NOPE is not set" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_probe_with_a_missing_api_key_file_exits_2_naming_it(tmp_path: Path) -> None:
    """`--api-key-file /missing`: exit 2, the message names the file."""
    missing = tmp_path / "missing"
    proc = cli("probe", "--url", "http://127.0.0.1:9", "--assistant", "a",
               "--api-key-file", str(missing))  # fmt: skip
    assert proc.returncode == 2
    assert f"file {missing}: No such file or directory" in proc.stderr


def _file_with_unset_key(tmp_path: Path) -> Path:
    path = tmp_path / "targets.yaml"
    path.write_text(yaml.safe_dump({"targets": [
        {"name": "a", "url": "http://127.0.0.1:9", "assistant_id": "a",
         "api_key_env": "OPTEST_NOT_SET"}]}))  # fmt: skip
    return path


def test_check_config_warns_about_an_unset_api_key_env(tmp_path: Path) -> None:
    """`api_key_env: NOT_SET`: check-config passes with a warning line naming the variable."""
    path = _file_with_unset_key(tmp_path)
    proc = cli("check-config", str(path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.splitlines() == [
        f"{path}: warning: targets[0].api_key_env: environment variable OPTEST_NOT_SET is not set"
    ]


def test_check_config_strict_fails_on_an_unset_api_key_env(tmp_path: Path) -> None:
    """With `--strict` the same file fails (exit 1) with an error line."""
    path = _file_with_unset_key(tmp_path)
    proc = cli("check-config", "--strict", str(path))
    assert proc.returncode == 1
    assert f"{path}: error: targets[0].api_key_env" in proc.stderr


def test_check_config_strict_passes_when_the_secret_is_there(tmp_path: Path) -> None:
    """`--strict` with the variable set: exit 0 (CI that has the secrets)."""
    path = _file_with_unset_key(tmp_path)
    proc = cli("check-config", "--strict", str(path), env={"OPTEST_NOT_SET": "sk-1234"})
    assert proc.returncode == 0, proc.stderr


def test_check_config_counts_one_target_in_the_singular(tmp_path: Path) -> None:
    """A file with one target is `OK, 1 target: a` (a count agrees with its noun)."""
    path = _file_with_unset_key(tmp_path)
    proc = cli("check-config", str(path), env={"OPTEST_NOT_SET": "sk-1234"})
    assert proc.stdout == f"{path}: OK, 1 target: a\n", proc.stdout


# --------------------------------------------------------------- check-config, several files


def test_check_config_checks_several_files_and_fails_if_any_fails(tmp_path: Path) -> None:
    """Two files: the good one is OK on stdout, the bad one's problem on stderr, exit 1."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("targets: []\n")
    proc = cli("check-config", str(GOOD), str(bad), env={"LANGGRAPH_API_KEY": "sk-test"})
    assert proc.returncode == 1
    assert f"{GOOD}: OK, 2 targets" in proc.stdout
    assert f"{bad}: targets: no targets" in proc.stderr


# ------------------------------------------------------------ probe --config FILE --target


@pytest.mark.anyio
async def test_probe_config_target_probes_as_the_daemon_would(tmp_path: Path) -> None:
    """`probe --config FILE --target NAME` sends the file's headers and input, and applies its
    expectations (a content_regex that does not match fails the probe)."""
    async with ScriptedServer() as server:
        server.route_stateless(
            lambda req: langgraph_stream(tokens=3, first_token_s=0.01, gap_s=0.01)
        )
        config: dict[str, Any] = {"targets": [
            {"name": "other", "url": server.url, "assistant_id": "x"},
            {"name": "mine", "url": server.url, "assistant_id": "agent",
             "headers": {"x-team": "search"},
             "input": {"messages": [{"role": "human", "content": "from the file"}]},
             "expect": {"content_regex": "never-in-the-stream"}},
        ]}  # fmt: skip
        path = tmp_path / "targets.yaml"
        path.write_text(yaml.safe_dump(config))
        code, out, err = await acli("probe", "--json", "--config", str(path), "--target", "mine")
    assert code == 1, err
    result = orjson.loads(out)
    assert result["target"] == "mine"
    assert result["failure"]["kind"] == "expectation"
    (req,) = server.requests
    assert req.headers["x-team"] == "search"
    sent = orjson.loads(req.body)
    assert sent["assistant_id"] == "agent"
    assert sent["input"]["messages"][0]["content"] == "from the file"


def test_probe_config_with_an_unknown_target_names_the_choices() -> None:
    """`--target nope` exits 2 listing the file's targets."""
    proc = cli("probe", "--config", str(GOOD), "--target", "nope")
    assert proc.returncode == 2
    assert "no target named 'nope'" in proc.stderr and "agent, agent-thread" in proc.stderr
