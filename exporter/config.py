"""Process settings (environment, `LGSE_*`) and the targets file (YAML, strict).

Settings never change on reload; the targets file is loaded again from scratch on every reload, and
a file that does not validate never replaces a good one. Secrets are never in the YAML:
a target names the environment variable or file that holds its API key, and the key is read when a
probe runs (so a rotated Secret is picked up without a reload).
"""

from __future__ import annotations

import base64
import importlib.util
import json
import math
import os
import re
import ssl
import urllib.parse
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
import yaml
from pydantic import (
    AfterValidator,
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
    "SECRET_HEADERS",
    "Config",
    "Expect",
    "ProxyAuth",
    "ProxyChoice",
    "SecretMask",
    "SecretSource",
    "Settings",
    "Target",
    "Timeouts",
    "check_header_name",
    "check_header_value",
    "load_config",
    "parse_duration",
]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)\s*$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_TARGET_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
#: Labels the exporter sets itself; a static label may not shadow them.
RESERVED_LABELS = frozenset({"target", "assistant", "node", "outcome", "reason", "sink", "le"})
#: What an HTTP header name may be made of (the standard's `token` characters: no CR, LF,
#: NUL, ':' or space).
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
#: A CR or LF in a value would end the header line and start another one (header injection).
_FORBIDDEN_IN_VALUE = re.compile(r"[\r\n\x00]")
#: Headers that carry credentials: never from the YAML itself, never unmasked.
SECRET_HEADERS: dict[str, str] = {
    "x-api-key": "use api_key_env or api_key_file",
    "authorization": "put it under secret_headers (env or file)",
    "cookie": "put it under secret_headers (env or file)",
    "proxy-authorization": "use proxy_auth (password from env or file)",
}


def check_header_name(name: str) -> str:
    """A header name as it may go on the wire; raises `ValueError` naming what is wrong."""
    if not _HEADER_NAME.match(name):
        raise ValueError(
            "invalid header name (letters, digits and !#$%&'*+-.^_`|~ only;"
            " no CR, LF, NUL, ':' or whitespace)"
        )
    return name


def check_header_value(value: str) -> str:
    """A header value as it may go on the wire: no CR, LF or NUL (the value is not echoed)."""
    if _FORBIDDEN_IN_VALUE.search(value):
        raise ValueError("header value contains CR, LF or NUL (it would inject headers)")
    return value


def _plain_header_name(name: str) -> str:
    check_header_name(name)
    hint = SECRET_HEADERS.get(name.lower())
    if hint is not None:
        raise ValueError(f"{name.lower()} is a secret: {hint}")
    return name


HeaderName = Annotated[str, AfterValidator(check_header_name)]
PlainHeaderName = Annotated[str, AfterValidator(_plain_header_name)]
HeaderValue = Annotated[str, AfterValidator(check_header_value)]


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


#: Shorter values are not masked: replacing "a" everywhere would garble every message.
MIN_MASKED_CHARS = 4


def _secret_forms(secret: str) -> set[str]:
    """Every form a secret can take in output: raw, JSON-escaped (a server echoing the request
    body or a JSON log line: compact and ASCII-only escapes), URL-encoded (a query string)."""
    forms = {secret}
    forms.add(orjson.dumps(secret).decode()[1:-1])  # UTF-8 kept; quote, backslash, controls escaped
    forms.add(json.dumps(secret)[1:-1])  # the same, non-ASCII as u-escapes too (Python's default)
    forms.add(urllib.parse.quote(secret, safe=""))
    forms.add(urllib.parse.quote(secret))
    forms.add(urllib.parse.quote_plus(secret))
    return forms


class SecretMask:
    """Replaces known secret values with `***`, longest first (a key may contain another).

    Each secret is also masked JSON-escaped and URL-encoded (`_secret_forms`).
    """

    def __init__(self, values: Iterable[str] = ()) -> None:
        kept = {f for v in values if len(v) >= MIN_MASKED_CHARS for f in _secret_forms(v)}
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
        # NOTE: quotes are kept: they may be part of a valid key; only the newline or spaces a
        # shell or a Secret manifest adds around a value are dropped.
        return SecretStr(value.strip()) if value and value.strip() else None
    if file is not None:
        try:
            return SecretStr(Path(file).read_text().strip())
        except OSError:
            return None
    return None


class ProxyAuth(_Strict):
    """Basic credentials for a forward proxy; the password from env or a file, like API keys."""

    username: str = Field(min_length=1, description="user name (not secret; shown in errors)")
    password: SecretSource = Field(description="where the password lives: {env: …} or {file: …}")

    @field_validator("username")
    @classmethod
    def _username(cls, value: str) -> str:
        if ":" in value or _FORBIDDEN_IN_VALUE.search(value):
            raise ValueError("username must not contain ':', CR, LF or NUL")
        return value


@dataclass(frozen=True, slots=True)
class ProxyChoice:
    """Where one probe's connection goes first, and with which credentials (never log these)."""

    host: str
    port: int
    username: str | None = None
    password: str | None = None

    def authorization(self) -> str | None:
        """The `Proxy-Authorization` value (the Basic scheme), or None without credentials."""
        if self.username is None:
            return None
        token = f"{self.username}:{self.password or ''}".encode()
        return "Basic " + base64.b64encode(token).decode()

    def secret_values(self) -> list[str]:
        """The password and the header value that carries it, for masking."""
        values = [self.password] if self.password else []
        auth = self.authorization()
        if auth is not None:
            values += [auth, auth.removeprefix("Basic ")]
        return values


def _without_userinfo(url: str) -> str:
    """`url` with any `user:password@` removed (for error messages)."""
    parts = urllib.parse.urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


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
    headers: dict[PlainHeaderName, HeaderValue] = Field(
        default_factory=dict, description="extra request headers (no credentials: see below)"
    )
    secret_headers: dict[HeaderName, SecretSource] = Field(
        default_factory=dict, description="headers whose values come from env or a file"
    )
    stream_subgraphs: bool = Field(True, description="stream tokens of subgraphs (docs/WIRE.md §7)")
    expect: Expect = Field(default_factory=Expect)
    ca_file: str | None = Field(None, description="CA bundle to trust for https")
    insecure_skip_verify: bool = Field(False, description="do not verify the TLS certificate")
    proxy_url: str | None = Field(None, description="http:// forward proxy (CONNECT for https)")
    proxy_from_environment: bool = Field(
        False, description="use HTTPS_PROXY / HTTP_PROXY / ALL_PROXY, honouring NO_PROXY"
    )
    proxy_auth: ProxyAuth | None = Field(None, description="Basic credentials for the proxy")

    @field_validator("ca_file")
    @classmethod
    def _ca_file(cls, value: str | None) -> str | None:
        if value is not None:
            # Loaded once here so that a missing or broken bundle is a load error naming the
            # key, not a failure of every probe; a bundle that disappears later fails the
            # probe as `tls` (exporter/http/client.py).
            try:
                ssl.create_default_context(cafile=value)
            except ssl.SSLError as exc:  # an OSError too: first
                raise ValueError(
                    f"no PEM certificate in CA file {value!r} ({exc.reason or exc})"
                ) from exc
            except OSError as exc:
                raise ValueError(f"cannot read CA file {value!r}: {exc.strerror or exc}") from exc
        return value

    @field_validator("proxy_url")
    @classmethod
    def _proxy_url(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urllib.parse.urlsplit(value)
            if parts.scheme != "http" or not parts.hostname:
                raise ValueError(
                    f"proxy_url must be http://host:port (TLS to the proxy is not supported),"
                    f" got {_without_userinfo(value)!r}"
                )
            if parts.username is not None or parts.password is not None:
                raise ValueError(
                    "proxy_url must not hold credentials: use proxy_auth (password from env or"
                    " file)"
                )
            if parts.path not in ("", "/") or parts.query or parts.fragment:
                raise ValueError(f"proxy_url must be http://host:port, got {value!r}")
            try:
                parts.port  # noqa: B018 - raises ValueError for a port out of range
            except ValueError as exc:
                raise ValueError(f"invalid proxy_url port: {value!r}") from exc
        return value

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

    @field_validator("secret_headers")
    @classmethod
    def _no_proxy_auth_to_the_origin(
        cls, value: dict[str, SecretSource]
    ) -> dict[str, SecretSource]:
        for name in value:
            if name.lower() in ("proxy-authorization", "x-api-key"):
                hint = SECRET_HEADERS[name.lower()]
                raise ValueError(f"{name.lower()} cannot be a secret header: {hint}")
        return value

    @model_validator(mode="after")
    def _one_key_source(self) -> Target:
        if self.api_key_env is not None and self.api_key_file is not None:
            raise ValueError("give api_key_env or api_key_file, not both")
        if self.proxy_url is not None and self.proxy_from_environment:
            raise ValueError("give proxy_url or proxy_from_environment, not both")
        if self.proxy_auth is not None and not (self.proxy_url or self.proxy_from_environment):
            raise ValueError("proxy_auth without proxy_url or proxy_from_environment")
        return self

    def proxy(self) -> ProxyChoice | None:
        """The proxy this target's requests go through now, credentials read now; None: direct.

        `proxy_from_environment` reads the standard variables through urllib (`HTTPS_PROXY`
        for https targets, `HTTP_PROXY` for http ones, `ALL_PROXY` for both, `NO_PROXY`
        host suffixes and `*` to bypass). Credentials in such a URL are used unless
        `proxy_auth` is given. Raises `ValueError` for an environment proxy that is not
        http:// (the message never shows credentials).
        """
        scheme = urllib.parse.urlsplit(self.url).scheme
        username = password = None
        if self.proxy_url is not None:
            url = self.proxy_url
            origin = "proxy_url"
        elif self.proxy_from_environment:
            proxies = urllib.request.getproxies_environment()
            env_url = proxies.get(scheme) or proxies.get("all")
            host = urllib.parse.urlsplit(self.url).hostname or ""
            if not env_url or urllib.request.proxy_bypass(host):  # NO_PROXY (on Linux)
                return None
            url = env_url if "://" in env_url else "http://" + env_url
            origin = f"{scheme.upper()}_PROXY"
            parts = urllib.parse.urlsplit(url)
            if parts.username is not None:
                username = urllib.parse.unquote(parts.username)
                password = urllib.parse.unquote(parts.password or "")
        else:
            return None
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(
                f"{origin}: only http:// proxies are supported, got {_without_userinfo(url)!r}"
            )
        if self.proxy_auth is not None:
            username = self.proxy_auth.username
            secret = self.proxy_auth.password.read()
            password = secret.get_secret_value() if secret is not None else None
            if password is None:
                raise ValueError("proxy_auth.password: the secret source is empty or unreadable")
        return ProxyChoice(parts.hostname, parts.port or 80, username, password)

    def api_key(self) -> SecretStr | None:
        return _read_secret(self.api_key_env, self.api_key_file)

    def secret_values(self) -> list[str]:
        """Every secret this target sends, for masking in any output."""
        values = [s.read() for s in self.secret_headers.values()]
        values.append(self.api_key())
        out = [v.get_secret_value() for v in values if v is not None and v.get_secret_value()]
        try:
            proxy = self.proxy()
        except ValueError:
            proxy = None
        if proxy is not None:
            out.extend(proxy.secret_values())
        return out

    def secret_files(self) -> list[str]:
        files = [s.file for s in self.secret_headers.values() if s.file]
        if self.api_key_file:
            files.append(self.api_key_file)
        if self.proxy_auth is not None and self.proxy_auth.password.file:
            files.append(self.proxy_auth.password.file)
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
        if part == "[key]":
            continue  # pydantic's marker for "the key itself" of a dict entry
        if isinstance(part, str) and not part.isprintable():
            part = repr(part)  # a header name holding CR/LF must not break the message line
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
    web_enable_lifecycle: bool = Field(
        False, description="serve /probe and POST /-/reload (else 403), like --web.enable-lifecycle"
    )
    web_config_file: str | None = Field(
        None, description="exporter-toolkit web-config YAML: TLS, basic auth (docs/RELIABILITY.md)"
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
