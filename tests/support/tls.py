"""A private CA (trustme) and a TLS server context for `localhost` signed by it."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import trustme


def localhost_tls(directory: Path, **cert: Any) -> tuple[ssl.SSLContext, str]:
    """(server context for `localhost`, path of the CA bundle to trust, written in `directory`).

    `cert` goes to `trustme.CA.issue_cert` (e.g. `not_after=`).
    """
    ca = trustme.CA()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", **cert).configure_cert(ctx)
    path = directory / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return ctx, str(path)
