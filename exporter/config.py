"""Process settings (environment, `LGSE_*`) and the targets file (YAML, strict).

Settings never change on reload; the targets file is loaded again from scratch on every reload, and
a file that does not validate never replaces a good one (DESIGN §4). Secrets are never in the YAML:
a target names the environment variable or file that holds its API key, and the key is read when a
probe runs (so a rotated Secret is picked up without a reload).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
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

from exporter.core.errors import ConfigError

__all__ = [
    "Config",
    "Expect",
    "SecretMask",
    "SecretSource",
    "Settings",
    "Target",
    "Timeouts",
    "load_config",
    "parse_duration",
]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_TARGET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
#: Labels the exporter sets itself; a static label may not shadow them.
RESERVED_LABELS = frozenset({"target", "assistant", "node", "outcome", "reason", "sink", "le"})


def parse_duration(value: Any) -> float:
    """`500ms`, `30s`, `2m`, `1h` (or a bare number of seconds) -> seconds."""
    if isinstance(value, bool):
        raise ValueError(f"invalid duration {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        match = _DURATION.match(str(value))
        if match is None:
            raise ValueError(f"invalid duration {value!r} (use e.g. 500ms, 30s, 2m)")
        seconds = float(match.group(1)) * _UNIT_S[match.group(2)]
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"duration must be positive and finite, got {value!r}")
    return seconds


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
        15.0, description="longest gap between two reads; keep above the 5 s heartbeat (wire §2)"
    )
    total: Duration = Field(120.0, description="the whole run, cleanup excluded")

    @model_validator(mode="after")
    def _idle_above_heartbeat(self) -> Timeouts:
        if self.idle <= 5.0 and self.total > 5.0:
            # NOTE: the server sends a heartbeat every 5 s (wire §2); a shorter idle deadline
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
    stream_subgraphs: bool = Field(True, description="stream tokens of subgraphs (wire §7)")
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
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError(f"url must start with http:// or https://, got {value!r}")
        return value.rstrip("/")

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not _LABEL_NAME.match(key) or key.startswith("__"):
                raise ValueError(f"invalid label name {key!r}")
            if key in RESERVED_LABELS:
                raise ValueError(f"label {key!r} is set by the exporter")
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


def _problems(exc: ValidationError) -> list[str]:
    problems = []
    for err in exc.errors():
        loc = _loc(tuple(p for p in err["loc"] if not str(p).startswith("function-")))
        if err["type"] == "extra_forbidden":
            problems.append(f"{loc}: unknown key")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{loc}: {msg}")
    return problems


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
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(path, _problems(exc)) from exc


def otlp_configured() -> bool:
    """True when the standard OTel variables name an OTLP endpoint (the SDK reads them itself)."""
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


class Settings(BaseSettings):
    """Process settings from the environment (`LGSE_*`); they never change on reload."""

    model_config = SettingsConfigDict(env_prefix="LGSE_", extra="ignore", frozen=True)

    config: str = Field("/etc/langgraph-stream-exporter/config.yaml", description="targets file")
    listen: str = Field("0.0.0.0:9465", description="HOST:PORT of the HTTP server")
    log_format: Literal["console", "json"] = "console"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    max_concurrency: int = Field(16, ge=1, description="probes running at once, all targets")
    grace_period_s: float = Field(10.0, ge=0, description="SIGTERM: time for running probes")
    max_nodes_per_target: int = Field(50, ge=1, description="distinct `node` label values")
    history_size: int = Field(100, ge=1, description="recent results kept for /-/probes")
    transport: Literal["stamping", "aiohttp", "httpcore"] = Field(
        "stamping", description="HTTP transport under httpx (docs/PERFORMANCE.md)"
    )
    otlp: Literal["auto", "on", "off"] = Field(
        "auto", description="auto: on when OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT is set"
    )
    # `GET /-/events` (exporter/daemon/events.py)
    events_max_subscribers: int = Field(16, ge=1, description="open /-/events streams at most")
    events_buffer_size: int = Field(256, ge=1, description="events kept for Last-Event-ID")
    events_queue_size: int = Field(64, ge=1, description="events queued per slow subscriber")
    events_heartbeat_s: float = Field(15.0, gt=0, description="comment line on an idle stream")
    # OTLP metrics and span details (exporter/sinks/otlp_metrics.py, otlp.py)
    otlp_metrics: bool = Field(False, description="export metrics over OTLP (OTEL_* endpoint)")
    semconv: Literal["v1.41", "latest"] = Field(
        "v1.41", description="GenAI metric names: v1.41.0, or the newer gen_ai.client.inference.*"
    )
    span_token_events: bool = Field(False, description="one span event per token arrival")
