"""The long-running exporter: config, scheduler, sinks and the HTTP server in one event loop.

Lifecycle (uvicorn's `Server` is the model, STYLE §6):

1. Load settings (`LGSE_*`) and the targets file; an invalid file at start exits 1.
2. Start the scheduler and the HTTP server; `/readyz` turns 200.
3. SIGHUP or `POST /-/reload` reloads the file; an invalid file keeps the old config and sets
   `langgraph_probe_config_last_reload_successful` to 0.
4. SIGTERM or SIGINT: stop scheduling, let running probes finish within the grace period, stop the
   HTTP server, flush spans, exit 0. A second signal exits at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import stat
import sys
from collections.abc import Callable, Generator, Iterable, MutableMapping
from pathlib import Path
from typing import Any

import orjson
import structlog
import uvicorn

from exporter.config import (
    Config,
    SecretMask,
    Settings,
    Target,
    load_config,
    otlp_configured,
)
from exporter.core.errors import ConfigError
from exporter.core.result import ProbeResult
from exporter.daemon.events import EventBus
from exporter.daemon.scheduler import Scheduler
from exporter.daemon.web import Handlers, make_app
from exporter.probe import TraceParent, probe
from exporter.runtime import freeze_startup_objects, run_async, share_gil_finely
from exporter.sinks import Sink, SinkSet
from exporter.sinks.log import History, LogSink, summary
from exporter.sinks.prometheus import PrometheusSink

__all__ = ["Daemon", "Masker", "serve"]

HANDLED_SIGNALS = (
    signal.SIGINT,  # Unix signal 2. Sent by Ctrl+C.
    signal.SIGTERM,  # Unix signal 15. Sent by `kill <pid>` and by Kubernetes.
)
log = structlog.get_logger("exporter.daemon")


class Masker:
    """Replaces every known secret value with `***` in any text that leaves the process."""

    def __init__(self) -> None:
        self._mask = SecretMask()

    def update(self, targets: Iterable[Target]) -> None:
        self._mask = SecretMask(v for t in targets for v in t.secret_values())

    def text(self, value: str) -> str:
        return self._mask.text(value)

    def bytes(self, value: bytes) -> bytes:
        return self._mask.bytes(value)

    def processor(
        self, _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        """structlog processor: masks every string value of a log event."""
        for key, value in event_dict.items():
            if isinstance(value, str):
                event_dict[key] = self.text(value)
        return event_dict


def configure_logging(settings: Settings, masker: Masker) -> None:
    """structlog for our events; the stdlib loggers of libraries go to stderr at warning."""
    level = getattr(logging, settings.log_level.upper())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if settings.log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            masker.processor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s: %(message)s")


def warn_on_open_secret_files(targets: Iterable[Target]) -> None:
    """A secret file other users can read is worth a warning at start (issue 7)."""
    for target in targets:
        for path in target.secret_files():
            try:
                mode = Path(path).stat().st_mode
            except OSError as exc:
                log.warning("secret_file_unreadable", target=target.name, path=path, error=str(exc))
                continue
            if mode & (stat.S_IRGRP | stat.S_IROTH):
                log.warning(
                    "secret_file_readable_by_others",
                    target=target.name,
                    path=path,
                    mode=oct(stat.S_IMODE(mode)),
                )


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the daemon owns signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class Daemon:
    """Wires config, scheduler, sinks and web together; `run()` returns the exit status."""

    def __init__(self, settings: Settings, config_path: str, config: Config) -> None:
        self.settings = settings
        self.config_path = config_path
        self.config = config
        self.masker = Masker()
        self.masker.update(config.targets)
        self.prometheus = PrometheusSink(max_nodes_per_target=settings.max_nodes_per_target)
        self.history = History(settings.history_size)
        # `/-/events` entries: the `/-/probes` shape, masked when published (daemon/events.py)
        self.events = EventBus(
            lambda r: self.masker.bytes(orjson.dumps(summary(r))),
            buffer_size=settings.events_buffer_size,
            max_subscribers=settings.events_max_subscribers,
            queue_size=settings.events_queue_size,
            heartbeat_s=settings.events_heartbeat_s,
        )
        sinks: list[Sink] = [self.prometheus, LogSink(), self.history, self.events]
        self.otlp: Sink | None = None
        if settings.otlp == "on" or (settings.otlp == "auto" and otlp_configured()):
            from exporter.sinks.otlp import OTLPSink

            self.otlp = OTLPSink(token_events=settings.span_token_events)
            sinks.append(self.otlp)
        if settings.otlp_metrics:
            from exporter.sinks.otlp_metrics import OTLPMetricsSink

            sinks.append(OTLPMetricsSink(semconv=settings.semconv))
        self.sinks = SinkSet(sinks, on_error=self._sink_error)
        self.scheduler: Scheduler | None = None
        self._ready = False
        self._reload_lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._signals = 0

    def _sink_error(self, sink: str, exc: Exception) -> None:
        self.prometheus.count_sink_error(sink)
        log.error("sink_failed", sink=sink, error=f"{type(exc).__name__}: {exc}", exc_info=exc)

    def _declare(self, config: Config) -> None:
        for t in config.targets:
            self.prometheus.declare(t.name, t.assistant_id, dict(t.labels))
        self.prometheus.retain(t.name for t in config.targets)

    async def reload(self) -> tuple[bool, str]:
        """Load the file again; keep the old config if the new one is invalid."""
        async with self._reload_lock:
            try:
                config = load_config(self.config_path)
            except ConfigError as exc:
                self.prometheus.set_reload(False)
                log.error("config_reload_failed", path=exc.path, problems=exc.problems)
                return False, "reload failed, old config kept:\n" + "\n".join(
                    f"{exc.path}: {p}" for p in exc.problems
                )
            assert self.scheduler is not None
            self.config = config
            self.masker.update(config.targets)
            warn_on_open_secret_files(config.targets)
            self.scheduler.apply(config)
            self.prometheus.set_reload(True)
            log.info("config_reloaded", path=self.config_path, targets=len(config.targets))
            return True, f"reloaded {self.config_path}: {len(config.targets)} target(s)"

    async def _run_probe(self, name: str, debug: bool) -> dict[str, Any] | None:
        assert self.scheduler is not None
        target = self.config.target(name)
        if target is None:
            return None
        lines: list[str] = []
        result = await self.scheduler.run_now(name, lines)
        if result is None:
            return None
        out = result.to_dict()
        if debug:
            out["log"] = lines
            out["target_config"] = target.model_dump(mode="json")
        return out

    def _probes(self) -> dict[str, Any]:
        assert self.scheduler is not None
        snap: dict[str, Any] = self.history.snapshot()
        last: dict[str, Any] = {}
        for result in self.history.recent:
            last[result.target] = summary(result)
        snap["last"] = last
        snap["events"] = {
            "subscribers": self.events.subscribers,
            "published": self.events.published,
            "dropped": self.events.dropped_total,
            "rejected": self.events.rejected_total,
        }
        snap["schedule"] = {
            name: [{"planned": p, "started": s} for p, s in starts]
            for name, starts in self.scheduler.schedule_log().items()
        }
        return snap

    def _on_signal(self, sig: signal.Signals) -> None:
        self._signals += 1
        if self._signals > 1:
            log.warning("forced_exit", signal=sig.name)
            os._exit(130)
        log.info("shutdown_requested", signal=sig.name, grace_s=self.settings.grace_period_s)
        self._stop.set()

    async def run(self, host: str, port: int) -> int:
        loop = asyncio.get_running_loop()
        scheduler = self.scheduler = Scheduler(
            lambda target, trace, say: _probe(target, trace, say, self.settings),
            self.sinks,
            max_concurrency=self.settings.max_concurrency,
            on_skip=self.prometheus.count_skip,
            on_targets=self._declare,
        )
        self.prometheus.in_flight = lambda: scheduler.in_flight
        handlers = Handlers(
            registry=self.prometheus.registry,
            ready=lambda: self._ready,
            reload=self.reload,
            run_probe=self._run_probe,
            probes=self._probes,
            target_names=lambda: [t.name for t in self.config.targets],
            mask=self.masker.bytes,
            run_probe_result=lambda name: scheduler.run_now(name),
            find_result=self.history.find,
            latest_result=self.history.latest,
            events=self.events,
        )
        server = _Server(
            uvicorn.Config(
                make_app(handlers),
                host=host,
                port=port,
                lifespan="off",
                access_log=False,
                log_level="warning",
                server_header=False,
            )
        )
        for sig in HANDLED_SIGNALS:
            loop.add_signal_handler(sig, self._on_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self.reload()))
        warn_on_open_secret_files(self.config.targets)
        self.prometheus.set_reload(True)
        scheduler.apply(self.config)
        web = asyncio.create_task(server.serve(), name="web")
        # uvicorn exposes startup only as a flag, not an event.
        while not server.started and not web.done():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        if web.done():
            scheduler.stop_scheduling()
            scheduler.cancel_all()
            exc = web.exception()
            log.error("http_server_failed", listen=f"{host}:{port}", error=str(exc))
            return 1
        self._ready = True
        freeze_startup_objects()
        share_gil_finely()
        log.info(
            "exporter_started",
            listen=f"http://{host}:{port}",
            metrics=f"http://{host}:{port}/metrics",
            targets=[t.name for t in self.config.targets],
            otlp=self.otlp is not None,
        )
        stopper = asyncio.create_task(self._stop.wait())
        await asyncio.wait({web, stopper}, return_when=asyncio.FIRST_COMPLETED)
        # 1. Stop accepting work: no new probes, readiness off.
        self._ready = False
        scheduler.stop_scheduling()
        # 2. Let running probes finish within the grace period; cancel the rest.
        await scheduler.drain(self.settings.grace_period_s)
        # 3. Stop the HTTP server (scrapes kept working while probes drained).
        server.should_exit = True
        with contextlib.suppress(Exception):
            await web
        # 4. Flush spans and close sinks, off the event loop (the OTLP batch thread joins).
        await asyncio.to_thread(self.sinks.close)
        log.info("exporter_stopped")
        return 0


async def _probe(
    target: Target, trace: TraceParent, say: Callable[[str], None] | None, settings: Settings
) -> ProbeResult:
    with structlog.contextvars.bound_contextvars(target=target.name):
        return await probe(target, trace=trace, transport=settings.transport, log=say)


def _listen(value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"listen address must be HOST:PORT, got {value!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


def serve(*, config_path: str | None, listen: str | None) -> int:
    """Entry point of `langgraph-stream-exporter run`; returns the exit status."""
    settings = Settings()
    masker = Masker()
    configure_logging(settings, masker)
    path = config_path or settings.config
    try:
        host, port = _listen(listen or settings.listen)
    except ValueError as exc:
        sys.stderr.write(f"langgraph-stream-exporter: error: {exc}\n")
        return 2
    try:
        config = load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            sys.stderr.write(f"{exc.path}: {problem}\n")
        return 1

    async def main() -> int:
        daemon = Daemon(settings, path, config)
        daemon.masker = masker
        masker.update(config.targets)
        return await daemon.run(host, port)

    return run_async(main())
