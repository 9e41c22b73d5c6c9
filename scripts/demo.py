"""`make demo`: a real `langgraph dev` and the real LangGraph.js dev server with the demo graphs,
the exporter probing all of them, and a live per-node view in the terminal, until Ctrl-C (or
DEMO_DURATION seconds).

No API key and no network: the demo graphs use a fake streaming model (demo/, demo/js/), and the
provider graphs the real langchain-openai / langchain-anthropic integrations against a local
scripted provider API (demo/provider_api.py). `DEMO_SERVERS=python` leaves the JS server out.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "demo"))

import yaml  # noqa: E402
from devserver import DevServer  # noqa: E402  (demo/ is not a package)
from devserver_js import JsDevServer  # noqa: E402

from exporter.watch import watch  # noqa: E402


def port_or_free(preferred: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
        except OSError:
            s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def demo_config(url: str, js_url: str | None = None) -> dict[str, object]:
    weather = {"messages": [{"role": "human", "content": "what's the weather in sf?"}]}
    py = {"server": "python"}
    targets: list[dict[str, object]] = [
        {"name": "agent", "url": url, "assistant_id": "agent", "labels": py,
         "expect": {"content_regex": "foggy"}},
        {"name": "agent-thread", "url": url, "assistant_id": "agent", "mode": "thread",
         "labels": py},
        {"name": "parallel", "url": url, "assistant_id": "parallel", "labels": py},
        {"name": "nested", "url": url, "assistant_id": "nested", "labels": py},
        {"name": "boom", "url": url, "assistant_id": "boom", "interval": "10s", "labels": py},
        {"name": "slow", "url": url, "assistant_id": "slow", "interval": "20s", "labels": py},
        # Real provider integrations: reasoning first, then the answer (answer TTFT differs).
        {"name": "anthropic-thinking", "url": url, "assistant_id": "anthropic_thinking",
         "interval": "10s", "labels": py},
        {"name": "openai-responses", "url": url, "assistant_id": "openai_responses",
         "interval": "10s", "labels": py},
    ]  # fmt: skip
    if js_url is not None:
        js = {"server": "js"}
        targets += [
            {"name": "js-agent", "url": js_url, "assistant_id": "agent", "labels": js},
            {"name": "js-parallel", "url": js_url, "assistant_id": "parallel", "labels": js},
            {"name": "js-nested", "url": js_url, "assistant_id": "nested", "labels": js},
        ]  # fmt: skip
    return {
        "defaults": {"interval": "5s", "input": weather, "labels": {"env": "demo"}},
        "targets": targets,
    }


def _exit_cleanly(signum: int, _frame: object) -> None:
    # A closed terminal (SIGHUP) or `kill` (SIGTERM) must still stop the exporter and the
    # LangGraph server: SystemExit runs the `finally` and `with` blocks below.
    raise SystemExit(128 + signum)


def main() -> int:
    for sig in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, _exit_cleanly)
    duration = float(os.environ["DEMO_DURATION"]) if os.environ.get("DEMO_DURATION") else None
    work = Path(tempfile.mkdtemp(prefix="lgse-demo-"))
    with_js = os.environ.get("DEMO_SERVERS", "python,js") != "python"
    what = "langgraph dev and the LangGraph.js dev server" if with_js else "langgraph dev"
    print(f"starting {what} with the demo graphs (demo/, demo/js/) …", flush=True)
    with contextlib.ExitStack() as servers:
        server = servers.enter_context(DevServer(log_path=str(work / "langgraph.log")))
        js_server = None
        if with_js:
            js_server = servers.enter_context(JsDevServer(log_path=str(work / "langgraphjs.log")))
        js_url = js_server.url if js_server is not None else None
        config = work / "config.yaml"
        config.write_text(yaml.safe_dump(demo_config(server.url, js_url), sort_keys=False))
        port = port_or_free(9465)
        exporter_url = f"http://127.0.0.1:{port}"
        log = (work / "exporter.log").open("wb")
        daemon = subprocess.Popen(
            [sys.executable, "-m", "exporter", "run", "--config", str(config),
             "--listen", f"127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT,
            # The demo prints a `/probe` command to try: lifecycle APIs are on for it.
            env={**os.environ, "LGSE_WEB_ENABLE_LIFECYCLE": "true"},
        )  # fmt: skip
        log.close()
        try:
            for _ in range(200):
                try:
                    with urllib.request.urlopen(exporter_url + "/readyz", timeout=1):
                        break
                except OSError:
                    if daemon.poll() is not None:
                        print((work / "exporter.log").read_text(), file=sys.stderr)
                        return 1
                    time.sleep(0.05)
            print(
                f"""
  LangGraph dev server  {server.url}   (graphs: agent parallel nested boom slow,
                        anthropic_thinking openai_responses …)
  LangGraph.js server   {js_url or "(off: DEMO_SERVERS=python)"}   (agent parallel nested …)
  exporter /metrics     {exporter_url}/metrics
  recent probes (JSON)  {exporter_url}/-/probes
  probe one now         curl '{exporter_url}/probe?target=agent&debug=true'
  targets file          {config}
  logs                  {work}/exporter.log  {work}/langgraph*.log

  First probes land within 5 s (boom fails on purpose: run_error; slow shows heartbeats).
""",
                flush=True,
            )
            return watch(exporter_url, duration_s=duration)
        finally:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(timeout=30)
            except subprocess.TimeoutExpired:
                daemon.kill()
            servers = "LangGraph servers" if js_url is not None else "LangGraph server"
            print(f"stopped the exporter and the {servers}.")


if __name__ == "__main__":
    sys.exit(main())
