"""Process settings (environment, `LGSE_*`) and the targets file (YAML, strict).

Settings never change on reload; the targets file is loaded again from scratch on every reload, and
a file that does not validate never replaces a good one. Secrets are never in the YAML:
a target names the environment variable or file that holds its API key, and the key is read when a
probe runs (so a rotated Secret is picked up without a reload).
"""

from __future__ import annotations

import difflib
import importlib.util
import math
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from exporter.core.errors import ConfigError, ExporterError

__all__ = [
    "Config",
    "Expect",
    "SecretMask",
    "SecretSource",
    "Settings",
    "SettingsError",
    "Target",
    "Timeouts",
    "load_config",
    "load_settings",
    "parse_duration",
    "unknown_settings",
]

#: The one duration syntax of the exporter, for config, CLI, `LGSE_*` and the chart's schema
#: (which carries this very pattern plus a nonzero digit, see `DURATION_NONZERO`): a number of
#: seconds (`30`, `2.5`), Prometheus' duration syntax (`1w2d`, `1m30s`, `500ms`: integer
#: components, units in descending order, each once), or one decimal with a unit (`1.5s`).
#: RE2- and ECMA-262-compatible (no look-around): Helm validates values with Go's regexp.
DURATION_PATTERN = (
    r"^([0-9]+(\.[0-9]+)?"
    r"|[0-9]+\.[0-9]+(ms|s|m|h|d|w|y)"
    r"|([0-9]+y)?([0-9]+w)?([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?([0-9]+ms)?)$"
)
#: A duration must be positive: at least one nonzero digit (rules out `0`, `0s`, `0.0ms`).
DURATION_NONZERO = r"[1-9]"
_DURATION = re.compile(DURATION_PATTERN)
_COMPONENT = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|y|w|d|h|m|s)?")
_UNIT_S = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 7 * 86400.0,
    "y": 365 * 86400.0,  # Prometheus: a year is always 365 days
}
#: Examples of the syntax, run through the parser and the chart's schema by the tests.
DURATION_EXAMPLES_VALID = (
    "30", "2.5", "500ms", "30s", "1m", "1m30s", "2h", "1d", "1w", "1y", "1h30m", "1d12h",
    "1w2d3h4m5s6ms", "1.5s", "0.5m", "90s", "0.1",
)  # fmt: skip
DURATION_EXAMPLES_INVALID = (
    "", "0", "0s", "0ms", "0.0s", "30 s", " 30s", "30s ", "30 seconds", "1.5m30s", "30s1m",
    "1s1s", "-5s", "s", "ms", "1.s", ".5s", "1e3", "30S", "1M", "inf", "nan", "1h 30m",
    "30s\n",
)  # fmt: skip


def parse_duration(value: Any) -> float:
    """A duration (see `DURATION_PATTERN`: `30`, `500ms`, `1m30s`, `1d`, `1w`) -> seconds.

    Numbers (not bools) are seconds. Raises `ValueError` for anything else, or for a duration
    that is not positive and finite.
    """
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value)
        # NOTE: fullmatch, not match: Python's `$` also matches before a final newline.
        if _DURATION.fullmatch(text) is None or not re.search(DURATION_NONZERO, text):
            raise ValueError(
                f"invalid duration {value!r} (use e.g. 500ms, 30s, 1m30s, 2h, 1d: positive)"
            )
        seconds = sum(float(num) * _UNIT_S[unit or "s"] for num, unit in _COMPONENT.findall(text))
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"duration must be positive and finite, got {value!r}")
    return seconds


_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_TARGET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
#: Labels the exporter sets itself; a static label may not shadow them.
RESERVED_LABELS = frozenset({"target", "assistant", "node", "outcome", "reason", "sink", "le"})
#: Labels Prometheus attaches to every scraped series; a static label of that name is renamed
#: `exported_<name>` at scrape time (honor_labels: false), so it is rejected.
PROMETHEUS_TARGET_LABELS = frozenset({"instance", "job"})
#: Paths of the LangGraph API a `url` must not contain: it is the server's base URL.
_API_PATH = re.compile(r"/(runs|threads|assistants)(/|$)")


Duration = Annotated[float, BeforeValidator(parse_duration)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Timeouts(_Strict):
    """Per-phase deadlines. All but `idle` count from the moment the run request is sent."""

    connect: Duration = Field(5.0, description="TCP (and TLS) connect")
    headers: Duration = Field(10.0, description="response headers")
    first_event: Duration = Field(30.0, description="the `metadata` event (run picked up)")
    first_token: Duration = Field(60.0, description="the first token of the run")
    idle: Duration = Field(
        15.0, description="longest gap between two reads; keep above the 5 s heartbeat"
    )
    total: Duration = Field(120.0, description="the whole run, cleanup excluded")

    @model_validator(mode="after")
    def _idle_above_heartbeat(self) -> Timeouts:
        if self.idle <= 5.0 and self.total > 5.0:
            # NOTE: servers send a heartbeat every 5 s (docs/WIRE.md §2); a shorter idle deadline
            # stalls on every silent phase. Allowed only for runs that end within 5 s.
            raise ValueError("idle must exceed the 5 s heartbeat interval")
        return self


class Expect(_Strict):
    """What a successful run must show besides a clean end and one token."""

    min_tokens: int = Field(1, ge=0, description="at least this many tokens in the run")
    nodes: tuple[str, ...] = Field((), description="nodes that must have run (`parent/child`)")
    content_regex: str | None = Field(None, description="regex the streamed text must match")

    @field_validator("content_regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"invalid regex {value!r}: {exc}") from exc
        return value


class SecretSource(_Strict):
    """Where a secret value lives: an environment variable or a file (never the YAML itself)."""

    env: str | None = None
    file: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretSource:
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of env or file")
        return self

    def read(self) -> SecretStr | None:
        return _read_secret(self.env, self.file)

    def problem(self) -> str | None:
        """Why no value can be read from this source now, or None when one can."""
        return _secret_problem(self.env, self.file)


#: Shorter values are not masked: replacing "a" everywhere would garble every message.
MIN_MASKED_CHARS = 4


class SecretMask:
    """Replaces known secret values with `***`, longest first (a key may contain another)."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        kept = {v for v in values if len(v) >= MIN_MASKED_CHARS}
        self._secrets = tuple(sorted(kept, key=len, reverse=True))

    def text(self, value: str) -> str:
        for secret in self._secrets:
            value = value.replace(secret, "***")
        return value

    def bytes(self, value: bytes) -> bytes:
        for secret in self._secrets:
            value = value.replace(secret.encode(), b"***")
        return value


def _secret_problem(env: str | None, file: str | None) -> str | None:
    """Names the source and why it yields no value: unset, empty or unreadable."""
    if env is not None:
        value = os.environ.get(env)
        if value is None:
            return f"environment variable {env} is not set"
        if not value.strip().strip("'\""):
            return f"environment variable {env} is empty"
        return None
    if file is not None:
        try:
            text = Path(file).read_text()
        except OSError as exc:
            return f"file {file}: {exc.strerror or exc}"
        if not text.strip():
            return f"file {file} is empty"
    return None


def _read_secret(env: str | None, file: str | None) -> SecretStr | None:
    if env is not None:
        value = os.environ.get(env)
        return SecretStr(value.strip().strip("'\"")) if value else None
    if file is not None:
        try:
            return SecretStr(Path(file).read_text().strip())
        except OSError:
            return None
    return None


_DEFAULT_INPUT: dict[str, Any] = {"messages": [{"role": "human", "content": "hello"}]}


class Target(_Strict):
    """One LangGraph deployment and assistant to probe."""

    name: str = Field(description="unique; the `target` label")
    url: str = Field(description="base URL of the LangGraph API server")
    assistant_id: str = Field(description="assistant id or graph id")
    mode: Literal["stateless", "thread"] = Field(
        "stateless", description="stateless POST /runs/stream, or a thread created and deleted"
    )
    input: dict[str, Any] = Field(default_factory=lambda: dict(_DEFAULT_INPUT))
    config: dict[str, Any] | None = Field(None, description="run `config` (e.g. configurable)")
    context: dict[str, Any] | None = Field(None, description="run `context`")
    interval: Duration = Field(30.0, description="time between probes of this target")
    timeout: Timeouts = Field(default_factory=Timeouts)
    labels: dict[str, str] = Field(default_factory=dict, description="static labels")
    api_key_env: str | None = Field(None, description="env var holding the x-api-key")
    api_key_file: str | None = Field(None, description="file holding the x-api-key")
    headers: dict[str, str] = Field(default_factory=dict, description="extra request headers")
    secret_headers: dict[str, SecretSource] = Field(
        default_factory=dict, description="headers whose values come from env or a file"
    )
    stream_subgraphs: bool = Field(True, description="stream tokens of subgraphs (docs/WIRE.md §7)")
    expect: Expect = Field(default_factory=Expect)
    ca_file: str | None = Field(None, description="CA bundle to trust for https")
    insecure_skip_verify: bool = Field(False, description="do not verify the TLS certificate")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _TARGET_NAME.match(value):
            raise ValueError(f"invalid target name {value!r} (letters, digits, _ . -)")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        match = re.match(r"^https?://[^/\s]+", value)
        if not match:
            raise ValueError(f"url must start with http:// or https://, got {value!r}")
        path = value[match.end() :].split("?")[0]
        api = _API_PATH.search(path)
        if api is not None:
            base = value[: match.end()] + path[: api.start()]
            raise ValueError(
                f"url must be the server's base URL (the probe adds /runs/stream itself): "
                f"got {value!r}, use {base!r}"
            )
        return value.rstrip("/")

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not _LABEL_NAME.match(key) or key.startswith("__"):
                raise ValueError(f"invalid label name {key!r}")
            if key in RESERVED_LABELS:
                raise ValueError(f"label {key!r} is set by the exporter")
            if key in PROMETHEUS_TARGET_LABELS:
                raise ValueError(
                    f"label {key!r} is set by Prometheus on every scrape (yours would be"
                    f" renamed exported_{key}): choose another name"
                )
        return value

    @field_validator("headers")
    @classmethod
    def _no_key_in_headers(cls, value: dict[str, str]) -> dict[str, str]:
        if any(h.lower() == "x-api-key" for h in value):
            raise ValueError("x-api-key is a secret: use api_key_env or api_key_file")
        return value

    @model_validator(mode="after")
    def _one_key_source(self) -> Target:
        if self.api_key_env is not None and self.api_key_file is not None:
            raise ValueError("give api_key_env or api_key_file, not both")
        return self

    def api_key(self) -> SecretStr | None:
        return _read_secret(self.api_key_env, self.api_key_file)

    def missing_secrets(self) -> list[str]:
        """One line per configured secret source that yields no value now, naming the source
        (`api_key_env: environment variable NOPE is not set`); empty when all can be read.

        A probe with a missing secret is not sent: it would only earn an anonymous 401.
        """
        problems = []
        key = _secret_problem(self.api_key_env, self.api_key_file)
        if key is not None:
            field = "api_key_env" if self.api_key_env is not None else "api_key_file"
            problems.append(f"{field}: {key}")
        for name, source in self.secret_headers.items():
            problem = source.problem()
            if problem is not None:
                problems.append(f"secret_headers.{name}: {problem}")
        return problems

    def secret_values(self) -> list[str]:
        """Every secret this target sends, for masking in any output."""
        values = [s.read() for s in self.secret_headers.values()]
        values.append(self.api_key())
        return [v.get_secret_value() for v in values if v is not None and v.get_secret_value()]

    def secret_files(self) -> list[str]:
        files = [s.file for s in self.secret_headers.values() if s.file]
        if self.api_key_file:
            files.append(self.api_key_file)
        return files


class Config(_Strict):
    """The targets file."""

    defaults: dict[str, Any] = Field(default_factory=dict)
    targets: tuple[Target, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _apply_defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        defaults = data.get("defaults") or {}
        targets = data.get("targets")
        if not isinstance(defaults, dict) or not isinstance(targets, list):
            return data
        merged = []
        for target in targets:
            if isinstance(target, dict):
                item = {**defaults, **target}
                for key in ("timeout", "labels", "headers", "expect"):
                    if isinstance(defaults.get(key), dict) and isinstance(target.get(key), dict):
                        item[key] = {**defaults[key], **target[key]}
                merged.append(item)
            else:
                merged.append(target)
        return {**data, "targets": merged}

    @field_validator("defaults")
    @classmethod
    def _defaults_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        allowed = set(Target.model_fields) - {"name"}
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise ValueError(f"unknown key(s) {unknown}")
        return value

    @field_validator("targets")
    @classmethod
    def _unique(cls, value: tuple[Target, ...]) -> tuple[Target, ...]:
        seen: set[str] = set()
        for target in value:
            if target.name in seen:
                raise ValueError(f"duplicate target name {target.name!r}")
            seen.add(target.name)
        return value

    def target(self, name: str) -> Target | None:
        for target in self.targets:
            if target.name == name:
                return target
        return None


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


def _problems(exc: ValidationError, prefix: tuple[int | str, ...] = ()) -> list[str]:
    problems = []
    for err in exc.errors():
        loc = _loc(prefix + tuple(p for p in err["loc"] if not str(p).startswith("function-")))
        if err["type"] == "extra_forbidden":
            problems.append(f"{loc}: unknown key")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{loc}: {msg}")
    return problems


def _check_defaults(defaults: dict[str, Any]) -> tuple[list[str], set[str]]:
    """Validate `defaults:` on its own, so that a mistake there is reported once, at the path
    the user wrote (`defaults.interval`), rather than once per target it was merged into.
    Returns the problems and the keys to leave out of the merge."""
    problems: list[str] = []
    bad: set[str] = set()
    if "name" in defaults:
        problems.append("defaults.name: each target names itself; name cannot be a default")
        bad.add("name")
    # Placeholders for the required fields a defaults block usually leaves to each target.
    probe = {"url": "http://defaults.invalid", "assistant_id": "defaults", **defaults}
    probe["name"] = "defaults"
    try:
        Target.model_validate(probe)
    except ValidationError as exc:
        for err in exc.errors():
            loc = err["loc"]
            if loc and loc[0] in defaults:
                bad.add(str(loc[0]))
            else:  # a rule across fields (e.g. two key sources): leave the whole block out
                bad.update(defaults)
        problems += _problems(exc, ("defaults",))
    return problems, bad


def load_config(path: str | Path) -> Config:
    """Read and validate a targets file; raises `ConfigError` naming the file and key paths."""
    path = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(path, [f"cannot read: {exc.strerror or exc}"]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(path, [f"not UTF-8 text (byte {exc.start})"]) from exc
    try:
        data = yaml.safe_load(text)
    except RecursionError as exc:
        raise ConfigError(path, ["(top level): nested too deeply"]) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(path, [f"{where}invalid YAML: {problem}"]) from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(path, ["(top level): expected a mapping with `targets:`"])
    problems: list[str] = []
    defaults = data.get("defaults")
    if isinstance(defaults, dict):
        problems, bad = _check_defaults(defaults)
        if bad:
            data = {**data, "defaults": {k: v for k, v in defaults.items() if k not in bad}}
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(path, problems + _problems(exc)) from exc
    if problems:
        raise ConfigError(path, problems)
    if not config.targets:
        raise ConfigError(path, ["targets: no targets (the file must list at least one)"])
    return config


def otlp_configured() -> bool:
    """True when the standard OTel variables name an OTLP endpoint (the SDK reads them itself)."""
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


SETTINGS_PREFIX = "LGSE_"


class Settings(BaseSettings):
    """Process settings from the environment (`LGSE_*`); they never change on reload.

    Build them with `load_settings()`, which names the variable in every error. docs/SETTINGS.md
    is generated from this model (`make settings-doc`).
    """

    model_config = SettingsConfigDict(env_prefix=SETTINGS_PREFIX, extra="ignore", frozen=True)

    config: str = Field("/etc/langgraph-stream-exporter/config.yaml", description="targets file")
    listen: str = Field("0.0.0.0:9465", description="HOST:PORT of the HTTP server")
    log_format: Literal["console", "json"] = Field(
        "console", description="log lines as human-readable text or one JSON object each"
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="lowest level logged"
    )
    max_concurrency: int = Field(16, ge=1, description="probes running at once, all targets")
    grace_period_s: Duration = Field(
        10.0,
        description="SIGTERM: time running probes get to finish (a duration: 10, 30s, 1m);"
        " keep it below the pod's terminationGracePeriodSeconds",
    )
    max_nodes_per_target: int = Field(50, ge=1, description="distinct `node` label values")
    history_size: int = Field(100, ge=1, description="recent results kept for /-/probes")
    transport: Literal["stamping", "aiohttp", "httpcore"] = Field(
        "stamping", description="HTTP transport under httpx (docs/PERFORMANCE.md)"
    )
    otlp: Literal["auto", "on", "off"] = Field(
        "auto", description="auto: on when OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT is set"
    )
    orphan_sweep: bool = Field(
        True,
        description="delete probe threads a killed exporter left behind (metadata"
        " `probe: langgraph-stream-exporter`), at start and every orphan_sweep_interval",
    )
    orphan_sweep_interval: Duration = Field(
        900.0, description="time between two sweeps of orphaned probe threads"
    )
    orphan_thread_age: Duration = Field(
        3600.0,
        description="a probe thread older than this is orphaned (keep it above every"
        " target's total timeout)",
    )

    @field_validator("transport")
    @classmethod
    def _transport_installed(cls, v: str) -> str:
        # The aiohttp transport is an optional extra: say so at start, not at the first probe.
        if v == "aiohttp" and importlib.util.find_spec("httpx_aiohttp") is None:
            raise ValueError(
                "LGSE_TRANSPORT=aiohttp needs the optional extra: "
                "pip install 'langgraph-stream-exporter[compare]'"
            )
        return v


class SettingsError(ExporterError):
    """`LGSE_*` variables that do not validate; `problems` has one line per variable."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


def setting_variable(field: str) -> str:
    """The environment variable of a settings field (`log_level` -> `LGSE_LOG_LEVEL`)."""
    return SETTINGS_PREFIX + field.upper()


def load_settings() -> Settings:
    """`Settings()` from the environment; raises `SettingsError` naming each bad variable."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else ""
            name = setting_variable(field) if field else SETTINGS_PREFIX + "*"
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{name}={err.get('input')!r}: {msg}")
        raise SettingsError(problems) from exc


def unknown_settings(environ: Mapping[str, str] | None = None) -> list[str]:
    """A warning line per `LGSE_*` variable that is not a setting, with a did-you-mean."""
    environ = os.environ if environ is None else environ
    known = [setting_variable(f) for f in Settings.model_fields]
    out = []
    for name in sorted(environ):
        if not name.upper().startswith(SETTINGS_PREFIX) or name.upper() in known:
            continue
        close = difflib.get_close_matches(name.upper(), known, n=1, cutoff=0.6)
        hint = f" (did you mean {close[0]}?)" if close else ""
        out.append(f"{name} is not a setting and is ignored{hint}")
    return out
