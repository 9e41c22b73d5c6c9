"""Process settings (environment, `LGSE_*`) and the targets file (YAML, strict).

Settings never change on reload; the targets file is loaded again from scratch on every reload, and
a file that does not validate never replaces a good one. Secrets are never in the YAML:
a target names the environment variable or file that holds its API key, and the key is read when a
probe runs (so a rotated Secret is picked up without a reload).
"""

from __future__ import annotations

import base64
import difflib
import functools
import importlib.util
import json
import math
import os
import re
import ssl
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
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

from exporter.core.errors import ConfigError, ExporterError

__all__ = [
    "SECRET_HEADERS",
    "Config",
    "Expect",
    "ProxyAuth",
    "ProxyChoice",
    "SecretMask",
    "SecretSource",
    "Settings",
    "SettingsError",
    "Target",
    "Timeouts",
    "check_header_name",
    "check_header_value",
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
#: The per-run config key that switches a run to v2 envelopes (docs/V2.md §5).
V2_RUN_MARKER = "__event_streaming_v2"


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
RESERVED_LABELS = frozenset(
    {"target", "assistant", "node", "outcome", "reason", "sink", "le", "protocol", "location"}
)
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
    interrupt: bool = Field(
        False, description="the run is expected to stop at an interrupt: success, `interrupted`"
    )

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
    # NOTE: legacy by default: v2 names no node at the root of a graph (root calls report as
    # `__root__`, docs/V2.md), so switching a target silently would move its node series.
    protocol: Literal["legacy", "v2", "auto"] = Field(
        "legacy",
        description="legacy POST /runs/stream (default), v2 event streaming (docs/V2.md), or"
        " auto: v2 where the server offers it, asked once per target URL",
    )
    interrupt_before: tuple[str, ...] = Field(
        (), description="nodes to interrupt before (legacy protocol only; docs/V2.md)"
    )
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

    @model_validator(mode="after")
    def _protocol_fits_the_request(self) -> Target:
        configurable = (self.config or {}).get("configurable")
        marked = isinstance(configurable, dict) and bool(configurable.get(V2_RUN_MARKER))
        if marked and self.protocol == "legacy":
            # NOTE: the marker makes the legacy endpoint answer in v2 envelopes, which the
            # legacy decoder cannot read (docs/V2.md §5).
            raise ValueError(
                f"config.configurable.{V2_RUN_MARKER} asks for v2 event streaming on the legacy"
                " protocol: use `protocol: v2` (or `auto`) and drop the marker"
            )
        if self.interrupt_before and self.protocol == "v2":
            raise ValueError("interrupt_before is not sent by protocol v2: use `protocol: legacy`")
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


@functools.cache
def _known_keys() -> tuple[str, ...]:
    """Every key a targets file may hold, at any level."""
    models: tuple[type[BaseModel], ...] = (
        Config,
        Target,
        Timeouts,
        Expect,
        SecretSource,
        ProxyAuth,
    )
    return tuple(sorted({name for m in models for name in m.model_fields} | {"defaults"}))


def _did_you_mean(key: int | str) -> str:
    """` (did you mean 'assistant_id'?)` for a near miss of a known key, else ''."""
    close = difflib.get_close_matches(str(key), _known_keys(), n=1, cutoff=0.75)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _problems(exc: ValidationError, prefix: tuple[int | str, ...] = ()) -> list[str]:
    problems = []
    for err in exc.errors():
        loc = _loc(prefix + tuple(p for p in err["loc"] if not str(p).startswith("function-")))
        if err["type"] == "extra_forbidden":
            problems.append(f"{loc}: unknown key{_did_you_mean(err['loc'][-1])}")
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
    web_enable_lifecycle: bool = Field(
        False, description="serve /probe and POST /-/reload (else 403), like --web.enable-lifecycle"
    )
    web_config_file: str | None = Field(
        None, description="exporter-toolkit web-config YAML: TLS, basic auth (docs/RELIABILITY.md)"
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

    shards: int = Field(
        1, ge=1, description="replicas that split the targets between them (docs/SCALING.md)"
    )
    shard: str = Field(
        "0",
        pattern=r"^(auto|[0-9]+)$",
        description="this replica's shard, 0-based and below LGSE_SHARDS; `auto` takes the"
        " trailing ordinal of the hostname (a StatefulSet pod `name-2` is shard 2)",
    )
    location: str = Field(
        "",
        pattern=r"^[A-Za-z0-9_.:-]{0,63}$",
        description="where this replica probes from (e.g. eu-west, sidecar): a `location`"
        " label on every series, and `langgraph.probe.location` on every span and in the OTLP"
        " resource (docs/SCALING.md); empty adds neither",
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
