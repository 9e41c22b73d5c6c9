"""A real HTTP forward proxy for tests: Debian's tinyproxy (installed by scripts/install-tools.sh).

Started in the foreground on 127.0.0.1 with a generated config, logging every connection it
relays at `Connect` level, so a test can see that a request really went through it (besides
the `Via` header tinyproxy adds to what it forwards).

Usage::

    with TinyProxy(tmp_path, basic_auth=("probe", "s3cret")) as proxy:
        ...  # proxy.url is http://127.0.0.1:PORT
        assert "CONNECT" in proxy.log_text()
"""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

__all__ = ["TinyProxy"]

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


class TinyProxy:
    """tinyproxy on 127.0.0.1:`port`; CONNECT allowed to any port (the test servers' ports)."""

    def __init__(self, workdir: Path, *, basic_auth: tuple[str, str] | None = None) -> None:
        self.binary = ROOT / ".tools" / "bin" / "tinyproxy"
        if not self.binary.exists():
            raise RuntimeError(
                f"{self.binary} missing: run `make tools` (scripts/install-tools.sh)"
            )
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "tinyproxy.log"
        self.config = workdir / "tinyproxy.conf"
        lines = [
            f"Port {self.port}",
            "Listen 127.0.0.1",
            "Timeout 30",
            f'LogFile "{self.log_path}"',
            # Connect: one line per relayed connection and request ("Established connection",
            # "Request (file descriptor N): CONNECT host:port HTTP/1.1", ...).
            "LogLevel Connect",
            f'PidFile "{workdir / "tinyproxy.pid"}"',
            "MaxClients 50",
            "Allow 127.0.0.1",
            # No ConnectPort line: CONNECT to every port (the loopback TLS server's is random).
        ]
        if basic_auth is not None:
            lines.append(f"BasicAuth {basic_auth[0]} {basic_auth[1]}")
        self.config.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 10.0) -> TinyProxy:
        self.proc = subprocess.Popen(
            [str(self.binary), "-d", "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"tinyproxy exited ({self.proc.returncode}): {err}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError as exc:
                if time.monotonic() > deadline:
                    self.stop()
                    msg = f"tinyproxy not listening on {self.port} in {timeout_s}s"
                    raise RuntimeError(msg) from exc
                time.sleep(0.05)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()

    def __enter__(self) -> TinyProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
