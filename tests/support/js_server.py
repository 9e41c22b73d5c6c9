"""Fixtures: the real LangGraph.js dev server (``langgraphjs dev``) serving demo/js.

A pytest plugin module (list it in ``pytest_plugins``), the JS counterpart of the
``langgraph_dev`` / ``langgraph_server`` fixtures in tests/conftest.py. The server is
``demo/devserver_js.JsDevServer``: a fresh temp copy of demo/js on a free 127.0.0.1 port, no
outbound traffic. It needs ``demo/js/node_modules`` (``make demo-js``; ``make pytest`` builds
it first). A server that does not start fails every test that uses it, with the server's log
tail; it is never skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

#: Seconds to wait for ``GET /ok``; a cold start takes about 2.5 s on this machine.
JS_STARTUP_TIMEOUT_S = 60.0


@pytest.fixture(scope="session")
def langgraph_js_dev() -> Iterator[Any]:
    """A real ``langgraphjs dev`` serving demo/js on a free loopback port (a ``JsDevServer``,
    whose ``log_text()`` is the server's own log), for the whole session."""
    from devserver import DevServerError  # demo/ is on pythonpath (pyproject)
    from devserver_js import JsDevServer

    server = JsDevServer(startup_timeout_s=JS_STARTUP_TIMEOUT_S)
    try:
        server.start()
    except DevServerError as e:
        pytest.fail(f"the LangGraph.js dev server did not start: {e}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def langgraph_js_server(langgraph_js_dev: Any) -> str:
    """Base URL of the session's ``langgraphjs dev``."""
    return str(langgraph_js_dev.url)
