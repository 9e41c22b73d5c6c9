"""Start and stop the demo project under ``langgraph dev`` on 127.0.0.1 (stdlib only).

Tests and the Makefile run this with the main venv's python, which does not have
LangGraph installed: the server itself runs from ``demo/.venv``.

    with DevServer() as server:          # fresh temp copy of the project, free port
        httpx.post(server.url + "/runs/stream", ...)

    python demo/devserver.py [--port P] [--log PATH]   # foreground, Ctrl-C/SIGTERM stops it

What it guarantees (docs/WIRE.md §14):

* Clean state: the in-memory server persists threads to ``.langgraph_api/*.pckl`` in
  its project folder, so every start copies ``langgraph.json`` and ``*.py`` to a new
  temp dir (removed again by ``stop()``).
* No outbound traffic: CLI analytics, the PyPI version check and LangSmith tracing are
  switched off, and LangSmith/LangChain keys are removed from the child's environment.
* The port asked for is the port served: ``langgraph dev`` silently moves to a random
  port when its port is busy; that is detected from its log and reported as an error.
* The provider graphs (``provider_graphs.py``) have their provider: unless ``env`` already
  sets ``DEMO_PROVIDER_URL`` (or ``provider_api=False``), the scripted provider API
  (``provider_api.py``) is started first as a child process on its own free loopback port,
  with this server's ``env`` (so ``PROVIDER_API_*`` knobs reach it), and its URL is passed to
  ``langgraph dev`` as ``DEMO_PROVIDER_URL`` (also ``server.provider_url``). It stops with
  the server.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import IO

from provider_api import ProviderAPIProcess

DEMO_DIR = Path(__file__).resolve().parent
DEFAULT_LANGGRAPH_BIN = DEMO_DIR / ".venv" / "bin" / "langgraph"

# Forced on (after the caller's env): each stops a non-loopback request (docs/WIRE.md §14).
_QUIET_ENV = {
    "LANGGRAPH_CLI_NO_ANALYTICS": "1",
    "LANGGRAPH_NO_VERSION_CHECK": "true",
    "LANGSMITH_TRACING": "false",
    "LANGCHAIN_TRACING_V2": "false",
    # Unbuffered, so the log tail in an error is current.
    "PYTHONUNBUFFERED": "1",
}
# A key (or licence key) turns on tracing uploads and the LangSmith metadata beacon.
_DROPPED_ENV = (
    "LANGSMITH_API_KEY",
    "LANGCHAIN_API_KEY",
    "LANGSMITH_LICENSE_KEY",
    "LANGGRAPH_CLOUD_LICENSE_KEY",
    # The provider graphs use dummy keys against the local provider API; a real key stays out.
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
)
_LOOPBACK = "127.0.0.1,localhost"
_MOVED_RE = re.compile(r"Port (\d+) is already in use, using port (\d+) instead")
_API_URL_RE = re.compile(r"API: http://[\d.]+:(\d+)")
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")
_STOP_GRACE_S = 10.0


class DevServerError(RuntimeError):
    """The dev server did not start, or did not start where it was asked to."""


def free_port() -> int:
    """Return a loopback port that was free a moment ago (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class DevServer:
    """One ``langgraph dev`` process serving a fresh copy of the demo project."""

    def __init__(
        self,
        *,
        port: int | None = None,
        env: dict[str, str] | None = None,
        langgraph_bin: str | None = None,
        startup_timeout_s: float = 60.0,
        log_path: str | None = None,
        provider_api: bool = True,
    ) -> None:
        self.port = port if port is not None else free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(env or {})
        self.langgraph_bin = langgraph_bin or str(DEFAULT_LANGGRAPH_BIN)
        self.startup_timeout_s = startup_timeout_s
        self.log_path = log_path
        self.project_dir: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_s: float | None = None  # spawn -> GET /ok == 200
        self._log_file: IO[bytes] | None = None
        self._log: Path | None = None
        self.provider_api = provider_api
        self.provider: ProviderAPIProcess | None = None
        self.provider_url: str | None = self.env.get("DEMO_PROVIDER_URL")

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> DevServer:
        """Spawn the server; return once ``GET /ok`` answers 200 on our port."""
        if self.process is not None:
            raise DevServerError("DevServer already started")
        if not os.access(self.langgraph_bin, os.X_OK):
            raise DevServerError(
                f"{self.langgraph_bin} not found or not executable (run `make demo-venv`)"
            )
        try:
            self._start_provider()
            t0 = self._spawn()
            self._wait_ready(t0)
        except BaseException:
            self.stop()  # also removes the temp project dir
            raise
        self.startup_s = time.monotonic() - t0
        return self

    def _start_provider(self) -> None:
        """Start the scripted provider API unless a URL was given or it is switched off."""
        if not self.provider_api or self.env.get("DEMO_PROVIDER_URL"):
            return
        self.provider = ProviderAPIProcess(env=self.env).start()
        self.provider_url = self.provider.url

    def _spawn(self) -> float:
        """Copy the project to a fresh temp dir and start the CLI; return the spawn time."""
        self.project_dir = self._copy_project()
        self._log = Path(self.log_path) if self.log_path else self.project_dir / "server.log"
        self._log_file = self._log.open("wb")
        child_env = {**os.environ, **self.env, **self._quiet_env()}
        for key in _DROPPED_ENV:
            child_env.pop(key, None)
        self._adjust_env(child_env)
        cmd = [
            self.langgraph_bin,
            "dev",
            "--no-browser",
            "--no-reload",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            *self._extra_args(),
        ]
        t0 = time.monotonic()
        self.process = subprocess.Popen(
            cmd,
            cwd=self.project_dir,
            env=child_env,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            # Own process group, so stop() reaches any child the CLI forks.
            start_new_session=True,
        )
        atexit.register(self.stop)
        return t0

    # The parts of `_spawn` a server of another kind (devserver_js.JsDevServer) replaces.

    def _copy_project(self) -> Path:
        """A fresh temp copy of the project: the in-memory server persists state beside it."""
        project = Path(tempfile.mkdtemp(prefix="lg-demo-"))
        for src in [DEMO_DIR / "langgraph.json", *sorted(DEMO_DIR.glob("*.py"))]:
            if src.name != Path(__file__).name:
                shutil.copy2(src, project / src.name)
        return project

    def _quiet_env(self) -> dict[str, str]:
        return _QUIET_ENV

    def _adjust_env(self, child_env: dict[str, str]) -> None:
        if self.provider_url:
            child_env["DEMO_PROVIDER_URL"] = self.provider_url
        # The provider SDKs honour proxy variables: loopback must never go through a proxy.
        for key in ("NO_PROXY", "no_proxy"):
            child_env[key] = ",".join(filter(None, [child_env.get(key), _LOOPBACK]))

    def _extra_args(self) -> list[str]:
        # The CLI's real default is 1 job (docs/WIRE.md §14): runs would queue behind each other.
        return ["--n-jobs-per-worker", "10"]

    def _wait_ready(self, t0: float) -> None:
        assert self.process is not None
        deadline = t0 + self.startup_timeout_s
        while True:
            code = self.process.poll()
            if code is not None:
                raise DevServerError(
                    f"langgraph dev exited with code {code} before answering /ok\n{self.log_tail()}"
                )
            # Checked before /ok: a busy port may be held by something that answers /ok too.
            log = self.log_text()
            moved = _MOVED_RE.search(log)
            if moved:
                raise DevServerError(
                    f"port {self.port} is already in use: langgraph dev moved to port "
                    f"{moved.group(2)} instead of failing; pick another port\n{self.log_tail()}"
                )
            announced = _API_URL_RE.search(log)
            if announced and int(announced.group(1)) != self.port:
                raise DevServerError(
                    f"langgraph dev announced port {announced.group(1)}, not {self.port}\n"
                    + self.log_tail()
                )
            if self._ok():
                return
            if time.monotonic() > deadline:
                raise DevServerError(
                    f"langgraph dev did not answer GET {self.url}/ok within "
                    f"{self.startup_timeout_s:g} s (process alive; busy port or slow start?)\n"
                    + self.log_tail()
                )
            time.sleep(0.05)

    def _ok(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/ok", timeout=1.0) as resp:
                return bool(resp.status == 200)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> None:
        """Terminate the process group, wait, kill after 10 s; remove the temp project."""
        atexit.unregister(self.stop)
        proc, self.process = self.process, None
        if proc is not None:
            self._signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                self._signal_group(proc.pid, signal.SIGKILL)
                proc.wait()
            # The CLI may leave helpers (e.g. multiprocessing's resource tracker) in its group.
            self._signal_group(proc.pid, signal.SIGKILL)
            _wait_group_gone(proc.pid, timeout_s=_STOP_GRACE_S)
        provider, self.provider = self.provider, None
        if provider is not None:
            provider.stop()
            self.provider_url = self.env.get("DEMO_PROVIDER_URL")
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self.project_dir is not None:
            shutil.rmtree(self.project_dir, ignore_errors=True)
            self.project_dir = None

    @staticmethod
    def _signal_group(pgid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)

    # ------------------------------------------------------------------ helpers
    @property
    def log_file(self) -> Path | None:
        """Where the server's output goes (None before start)."""
        return self._log

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def log_text(self) -> str:
        """The server's output so far, without colour codes.

        '' once stopped, unless ``log_path`` was given (the temp project dir is gone).
        """
        if self._log is None or not self._log.exists():
            return ""
        return _ANSI_RE.sub("", self._log.read_text(errors="replace"))

    def log_tail(self, lines: int = 30) -> str:
        tail = self.log_text().splitlines()[-lines:]
        return "--- langgraph dev log (tail) ---\n" + "\n".join(tail)

    def __enter__(self) -> DevServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _group_alive(pgid: int) -> bool:
    """Whether a process of group `pgid` is still running (zombies do not count: killed
    grandchildren are reparented and may wait for a reaper that never comes in a container)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # gone meanwhile
        state, _ppid, pgrp = text[text.rindex(")") + 2 :].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            return True
    return False


def _wait_group_gone(pgid: int, timeout_s: float) -> None:
    """Return once SIGKILL has taken every process of the group (it is not instantaneous)."""
    deadline = time.monotonic() + timeout_s
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.02)


def main(
    argv: list[str] | None = None,
    *,
    server_class: type[DevServer] = DevServer,
    description: str = "Run the demo LangGraph project on 127.0.0.1 until Ctrl-C/SIGTERM.",
) -> int:
    """Foreground mode: start ``server_class``, print its URL, stop on Ctrl-C/SIGTERM."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, default=None, help="port (default: a free one)")
    parser.add_argument(
        "--log", default=None, help="server log file (default: inside the temp project dir)"
    )
    parser.add_argument("--startup-timeout", type=float, default=60.0, metavar="S")
    args = parser.parse_args(argv)

    stopping = False

    def _on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    server = server_class(port=args.port, startup_timeout_s=args.startup_timeout, log_path=args.log)
    try:
        server.start()
    except DevServerError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    try:
        print(server.url, flush=True)
        print(
            f"ready in {server.startup_s:.2f} s; log: {server.log_file}; "
            f"provider API: {server.provider_url}; Ctrl-C stops",
            file=sys.stderr,
            flush=True,
        )
        while not stopping:
            if server.process is None or server.process.poll() is not None:
                print(f"error: langgraph dev exited\n{server.log_tail()}", file=sys.stderr)
                return 1
            time.sleep(0.2)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
