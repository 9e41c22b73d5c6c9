"""Start and stop the JS demo project (demo/js/) under the LangGraph.js dev server (stdlib only).

The same API as ``devserver.DevServer``, whose lifecycle this reuses (spawn in its own
process group, readiness on ``GET /ok``, SIGTERM then SIGKILL, temp project removed):

    with JsDevServer() as server:        # fresh temp copy of demo/js, free port
        httpx.post(server.url + "/runs/stream", ...)

    python demo/devserver_js.py [--port P] [--log PATH]   # foreground, Ctrl-C/SIGTERM stops it

The server is ``demo/js/node_modules/.bin/langgraphjs dev`` (``make demo-js``, or ``npm ci`` in
demo/js). What differs from the Python launcher:

* Clean state: the server persists to ``.langgraph_api/`` in its project folder, so every
  start copies ``langgraph.json``, ``package.json``, ``tsconfig.json`` and ``src/`` to a new
  temp dir, with a symlink to demo/js/node_modules.
* No outbound traffic: the CLI's analytics POST is off (``LANGGRAPH_CLI_NO_ANALYTICS=1``),
  every LangSmith/LangChain tracing switch is forced to false, keys are removed, no browser.
* A busy port makes the JS server log ``EADDRINUSE`` and hang (it neither exits nor moves):
  readiness waits for its own "Server running at" line on our port before trusting ``/ok``,
  and the ``EADDRINUSE`` line is reported as an error at once.
* node: ``demo/js/.node/bin`` goes first on PATH when it exists (the fallback node that the
  Makefile installs when the system node is older than 20.16).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

import devserver
from devserver import _QUIET_ENV, DevServer, DevServerError

JS_DIR = Path(__file__).resolve().parent / "js"
DEFAULT_LANGGRAPHJS_BIN = JS_DIR / "node_modules" / ".bin" / "langgraphjs"
LOCAL_NODE_BIN = JS_DIR / ".node" / "bin"

# Copied into each fresh project dir; node_modules is linked, not copied.
_PROJECT_FILES = ("langgraph.json", "package.json", "tsconfig.json")

_JS_QUIET_ENV = {
    **_QUIET_ENV,
    # Read by the API's entrypoint, first non-empty wins: all four must say false.
    "LANGSMITH_TRACING_V2": "false",
    "LANGCHAIN_TRACING": "false",
    "BROWSER": "none",
    "NO_COLOR": "1",
}
_RUNNING_RE = re.compile(r"Server running at (?:http://)?[\d.]+:(\d+)")
_ADDR_IN_USE = "EADDRINUSE"


class JsDevServer(DevServer):
    """One ``langgraphjs dev`` process serving a fresh copy of demo/js."""

    def __init__(
        self,
        *,
        port: int | None = None,
        env: dict[str, str] | None = None,
        langgraph_bin: str | None = None,
        startup_timeout_s: float = 60.0,
        log_path: str | None = None,
    ) -> None:
        super().__init__(
            port=port,
            env=env,
            langgraph_bin=langgraph_bin or str(DEFAULT_LANGGRAPHJS_BIN),
            startup_timeout_s=startup_timeout_s,
            log_path=log_path,
            # The JS project has no provider graphs: no scripted provider API to start.
            provider_api=False,
        )

    def start(self) -> JsDevServer:
        if not os.access(self.langgraph_bin, os.X_OK):
            raise DevServerError(
                f"{self.langgraph_bin} not found or not executable (run `make demo-js`)"
            )
        super().start()
        return self

    # `DevServer._spawn` runs the CLI; these are the parts that differ for the JS project.

    def _copy_project(self) -> Path:
        project = Path(tempfile.mkdtemp(prefix="lg-demo-js-"))
        for name in _PROJECT_FILES:
            shutil.copy2(JS_DIR / name, project / name)
        shutil.copytree(JS_DIR / "src", project / "src")
        (project / "node_modules").symlink_to(JS_DIR / "node_modules")
        return project

    def _quiet_env(self) -> dict[str, str]:
        return _JS_QUIET_ENV

    def _adjust_env(self, child_env: dict[str, str]) -> None:
        if LOCAL_NODE_BIN.is_dir():
            child_env["PATH"] = f"{LOCAL_NODE_BIN}{os.pathsep}{child_env.get('PATH', '')}"

    def _extra_args(self) -> list[str]:
        assert self.project_dir is not None
        return [*super()._extra_args(), "--config", str(self.project_dir / "langgraph.json")]

    def _ok(self) -> bool:
        # Called by DevServer's readiness loop after its own log checks. A busy port makes
        # the JS server hang with EADDRINUSE, and whatever holds the port may answer /ok, so
        # /ok only counts once the server has said it listens on our port.
        log = self.log_text()
        if _ADDR_IN_USE in log:
            raise DevServerError(
                f"port {self.port} is already in use (EADDRINUSE); pick another port\n"
                + self.log_tail()
            )
        running = _RUNNING_RE.search(log)
        if running is None:
            return False
        if int(running.group(1)) != self.port:
            raise DevServerError(
                f"langgraphjs dev runs on port {running.group(1)}, not {self.port}\n"
                + self.log_tail()
            )
        return super()._ok()

    def log_tail(self, lines: int = 30) -> str:
        tail = self.log_text().splitlines()[-lines:]
        return "--- langgraphjs dev log (tail) ---\n" + "\n".join(tail)

    def __enter__(self) -> JsDevServer:
        return self.start()


def main(argv: list[str] | None = None) -> int:
    return devserver.main(
        argv,
        server_class=JsDevServer,
        description="Run the JS demo LangGraph project on 127.0.0.1 until Ctrl-C/SIGTERM.",
    )


if __name__ == "__main__":
    sys.exit(main())
