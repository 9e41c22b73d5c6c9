"""The daemon's web-config file: TLS and basic auth for every endpoint, in the format of the
Prometheus exporter-toolkit (`--web.config.file`), so an operator reuses the file written for
node_exporter. docs/RELIABILITY.md "Locking down the web surface" lists what is supported.

    tls_server_config:
      cert_file: server.crt            # relative paths are relative to this file's directory
      key_file: server.key
      client_ca_file: ca.crt           # optional: verify client certificates
      client_auth_type: RequireAndVerifyClientCert
    basic_auth_users:
      prometheus: $2b$12$...           # bcrypt hash (`htpasswd -nBC 12 prometheus`)

Any other key is an error naming the key and the file (a key we silently ignored could be the one
the operator relies on, e.g. `min_version`). TLS is uvicorn's (Python's `ssl`); password checks are
`bcrypt`'s. Nothing here implements crypto.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import hashlib
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bcrypt
import yaml

from exporter.core.errors import ConfigError

__all__ = ["CLIENT_AUTH_TYPES", "SUPPORTED_KEYS", "BasicAuth", "WebConfig", "load_web_config"]

#: exporter-toolkit's `client_auth_type` values we can honour with Python's `ssl`. Its
#: `RequestClientCert` and `RequireAnyClientCert` accept unverified certificates, which `ssl`
#: cannot do; they are refused rather than silently made stricter or weaker.
CLIENT_AUTH_TYPES: Mapping[str, ssl.VerifyMode] = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
SUPPORTED_KEYS: Mapping[str, tuple[str, ...]] = {
    "tls_server_config": ("cert_file", "key_file", "client_ca_file", "client_auth_type"),
    "basic_auth_users": (),  # user name -> bcrypt hash
}
#: Keys exporter-toolkit knows that this exporter does not implement (a clearer message).
_TOOLKIT_KEYS: Mapping[str, tuple[str, ...]] = {
    "tls_server_config": (
        "cert", "key", "client_ca", "min_version", "max_version", "cipher_suites",
        "curve_preferences", "prefer_server_cipher_suites", "client_allowed_sans",
    ),
    "http_server_config": ("http2", "headers"),
}  # fmt: skip
_BCRYPT = re.compile(r"^\$2[abxy]?\$\d\d\$[./A-Za-z0-9]{53}$")
_CACHE_SIZE = 256


@dataclass(frozen=True)
class WebConfig:
    """A validated web-config file. Paths are absolute; `users` maps a name to its bcrypt hash."""

    path: str
    cert_file: str | None = None
    key_file: str | None = None
    client_ca_file: str | None = None
    client_auth: ssl.VerifyMode = ssl.CERT_NONE
    users: Mapping[str, bytes] = field(default_factory=dict)

    @property
    def tls(self) -> bool:
        return self.cert_file is not None

    def uvicorn_ssl(self) -> dict[str, Any]:
        """Keyword arguments for `uvicorn.Config` (empty without TLS)."""
        if not self.tls:
            return {}
        return {
            "ssl_certfile": self.cert_file,
            "ssl_keyfile": self.key_file,
            "ssl_ca_certs": self.client_ca_file,
            "ssl_cert_reqs": int(self.client_auth),
        }


def _unsupported(section: str, key: str) -> str:
    where = f"{section}.{key}" if section else key
    if key in _TOOLKIT_KEYS.get(section, ()) or (not section and key in _TOOLKIT_KEYS):
        supported = ", ".join(
            f"{s}.{k}" if k else s for s, ks in SUPPORTED_KEYS.items() for k in (ks or ("",))
        )
        return f"{where}: not supported by langgraph-stream-exporter (supported: {supported})"
    return f"{where}: unknown key"


def load_web_config(path: str) -> WebConfig:
    """Read and check a web-config file, including that its certificate and key load.

    Raises `ConfigError(path, problems)`, one problem per line, each naming the key path.
    """
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ConfigError(path, [f"cannot read: {exc.strerror or exc}"]) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(path, [f"invalid YAML: {exc}"]) from exc
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(path, ["the file must be a mapping"])
    base = Path(path).resolve().parent
    problems: list[str] = []
    for key in raw:
        if key not in SUPPORTED_KEYS:
            problems.append(_unsupported("", str(key)))

    def file_key(section: dict[str, Any], key: str) -> str | None:
        value = section.get(key)
        if value in (None, ""):
            return None
        if not isinstance(value, str):
            problems.append(f"tls_server_config.{key}: must be a file path")
            return None
        resolved = (base / value).resolve()
        if not resolved.is_file():
            problems.append(f"tls_server_config.{key}: {resolved}: no such file")
        return str(resolved)

    cert = key = ca = None
    client_auth = ssl.CERT_NONE
    tls = raw.get("tls_server_config")
    if tls is not None:
        if not isinstance(tls, dict):
            problems.append("tls_server_config: must be a mapping")
        else:
            for k in tls:
                if k not in SUPPORTED_KEYS["tls_server_config"]:
                    problems.append(_unsupported("tls_server_config", str(k)))
            cert, key, ca = (file_key(tls, k) for k in ("cert_file", "key_file", "client_ca_file"))
            if cert is None or key is None:
                problems.append("tls_server_config: needs both cert_file and key_file")
            auth_type = tls.get("client_auth_type") or (
                "RequireAndVerifyClientCert" if ca else "NoClientCert"
            )  # exporter-toolkit's default
            if auth_type not in CLIENT_AUTH_TYPES:
                problems.append(
                    f"tls_server_config.client_auth_type: {auth_type!r} is not supported "
                    f"(one of: {', '.join(CLIENT_AUTH_TYPES)})"
                )
            else:
                client_auth = CLIENT_AUTH_TYPES[auth_type]
                if client_auth != ssl.CERT_NONE and ca is None:
                    problems.append(
                        f"tls_server_config.client_auth_type: {auth_type} needs client_ca_file"
                    )
    users: dict[str, bytes] = {}
    given = raw.get("basic_auth_users")
    if given is not None:
        if not isinstance(given, dict):
            problems.append("basic_auth_users: must map user names to bcrypt hashes")
        else:
            for user, hashed in given.items():
                if not isinstance(hashed, str) or not _BCRYPT.match(hashed):
                    # Never echo the value: it may be a plain password pasted by mistake.
                    problems.append(f"basic_auth_users.{user}: not a bcrypt hash ($2b$...)")
                else:
                    users[str(user)] = hashed.encode()
    if not problems and cert is not None and key is not None:
        try:  # the same load uvicorn does, so a bad pair is this error, not a traceback
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            ctx.load_cert_chain(cert, key)
            if ca is not None:
                ctx.load_verify_locations(ca)
        except (ssl.SSLError, OSError) as exc:
            problems.append(f"tls_server_config: cannot load the certificate or key: {exc}")
    if problems:
        raise ConfigError(path, problems)
    return WebConfig(path, cert, key, ca, client_auth, users)


class BasicAuth:
    """Checks `Authorization: Basic` credentials against bcrypt hashes.

    bcrypt is slow on purpose (tens to hundreds of ms), so a check runs in a thread, never on
    the event loop that stamps token arrivals, and a successful check is cached, keyed by a
    SHA-256 of user, password and hash (exporter-toolkit does the same): a scrape every 15 s does
    not pay bcrypt each time, and the cache never holds a password. Failures are not cached.
    """

    def __init__(self, users: Mapping[str, bytes]) -> None:
        self._users = dict(users)
        self._ok: dict[bytes, None] = {}  # insertion-ordered: the oldest entry goes first

    def _key(self, user: str, password: bytes, hashed: bytes) -> bytes:
        h = hashlib.sha256()
        for part in (user.encode(), password, hashed):
            h.update(len(part).to_bytes(4, "big") + part)
        return h.digest()

    async def check(self, authorization: str | None) -> bool:
        """True if the header holds a configured user and the right password."""
        if not authorization:
            return False
        scheme, _, encoded = authorization.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        user_b, sep, password = decoded.partition(b":")
        if not sep:
            return False
        user = user_b.decode("utf-8", "replace")
        hashed = self._users.get(user)
        if hashed is not None and self._key(user, password, hashed) in self._ok:
            return True
        # An unknown user is checked against a real hash too: it costs the same bcrypt time,
        # so response times do not tell which user names exist.
        ok = await asyncio.to_thread(_checkpw, password, hashed)
        if ok and hashed is not None:
            if len(self._ok) >= _CACHE_SIZE:
                del self._ok[next(iter(self._ok))]
            self._ok[self._key(user, password, hashed)] = None
            return True
        return False


@functools.cache
def _dummy_hash() -> bytes:
    return bcrypt.hashpw(b"unknown user", bcrypt.gensalt(10))


def _checkpw(password: bytes, hashed: bytes | None) -> bool:
    """bcrypt's check, in a worker thread (bcrypt releases the GIL while it hashes)."""
    if hashed is None:
        bcrypt.checkpw(password, _dummy_hash())
        return False
    try:
        return bcrypt.checkpw(password, hashed)
    except ValueError:  # the dummy hash, or a hash bcrypt cannot parse
        return False
