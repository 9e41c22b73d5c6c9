"""`make demo`: a real `langgraph dev` with the demo graphs, the exporter probing all of them,
and a live per-node view in the terminal, until Ctrl-C (or DEMO_DURATION seconds).

No API key and no network: the demo graphs use a fake streaming model (demo/).
"""

from __future__ import annotations

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

from exporter.watch import watch  # noqa: E402


def port_or_free(preferred: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
        except OSError:
            s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def demo_config(url: str) -> dict[str, object]:
    weather = {"messages": [{"role": "human", "content": "what's the weather in sf?"}]}
    return {
        "defaults": {"interval": "5s", "input": weather, "labels": {"env": "demo"}},
        "targets": [
            {"name": "agent", "url": url, "assistant_id": "agent",
             "expect": {"content_regex": "foggy"}},
            {"name": "agent-thread", "url": url, "assistant_id": "agent", "mode": "thread"},
            {"name": "parallel", "url": url, "assistant_id": "parallel"},
            {"name": "nested", "url": url, "assistant_id": "nested"},
            {"name": "boom", "url": url, "assistant_id": "boom", "interval": "10s"},
            {"name": "slow", "url": url, "assistant_id": "slow", "interval": "20s"},
        ],
    }  # fmt: skip


def _exit_cleanly(signum: int, _frame: object) -> None:
    # A closed terminal (SIGHUP) or `kill` (SIGTERM) must still stop the exporter and the
    # LangGraph server: SystemExit runs the `finally` and `with` blocks below.
    raise SystemExit(128 + signum)


def main() -> int:
    for sig in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, _exit_cleanly)
    duration = float(os.environ["DEMO_DURATION"]) if os.environ.get("DEMO_DURATION") else None
    work = Path(tempfile.mkdtemp(prefix="lgse-demo-"))
    print("starting langgraph dev with the demo graphs (demo/) …", flush=True)
    with DevServer(log_path=str(work / "langgraph.log")) as server:
        config = work / "config.yaml"
        config.write_text(yaml.safe_dump(demo_config(server.url), sort_keys=False))
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
  LangGraph dev server  {server.url}   (graphs: agent parallel nested boom slow)
  exporter /metrics     {exporter_url}/metrics
  recent probes (JSON)  {exporter_url}/-/probes
  probe one now         curl '{exporter_url}/probe?target=agent&debug=true'
  targets file          {config}
  logs                  {work}/exporter.log  {work}/langgraph.log

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
            print("stopped the exporter and the LangGraph server.")


if __name__ == "__main__":
    sys.exit(main())
