"""The long-running exporter: config, scheduler, sinks and the HTTP server in one event loop.

Lifecycle (uvicorn's `Server` is the model):

1. Load settings (`LGSE_*`) and the targets file; an invalid file at start exits 1.
2. Bind the listen socket (a busy port exits 1 with one line, before any probe is scheduled),
   then start the scheduler and the HTTP server; `/readyz` turns 200. Orphaned probe threads
   are swept at start and every `LGSE_ORPHAN_SWEEP_INTERVAL`.
3. SIGHUP or `POST /-/reload` reloads the file; an invalid file keeps the old config and sets
   `langgraph_probe_config_last_reload_successful` to 0.
4. SIGTERM or SIGINT: stop scheduling, let running probes finish within the grace period, stop the
   HTTP server, flush spans, exit 0. A second signal exits at once.

Logging never stops any of this: log lines are written straight to fd 2 by `SafeStderr`, and a
write that fails (a closed log pipe) is counted in `sink_errors_total{sink="log"}` and dropped.
The signal handler sets the stop flag before it logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import math
import os
import signal
import socket
import stat
import sys
import threading
from collections.abc import Awaitable, Callable, Generator, Iterable, MutableMapping
from pathlib import Path
from typing import Any

import orjson
import structlog
import uvicorn

from exporter.config import (
    Config,
    SecretMask,
    Settings,
    SettingsError,
    Target,
    load_config,
    load_settings,
    otlp_configured,
    unknown_settings,
)
from exporter.core.errors import ConfigError
from exporter.core.result import ProbeResult
from exporter.core.shard import ordinal_from_hostname, shard_members
from exporter.core.words import counted
from exporter.daemon.events import EventBus
from exporter.daemon.scheduler import OnDemandBusy, Scheduler
from exporter.daemon.web import Handlers, ProbeBusy, make_app
from exporter.daemon.webconfig import BasicAuth, WebConfig, load_web_config
from exporter.http.client import client_for
from exporter.probe import TraceParent, probe
from exporter.probe.request import request_headers
from exporter.probe.threads import sweep_orphaned_threads
from exporter.runtime import (
    freeze_startup_objects,
    freeze_survivors,
    run_async,
    share_gil_finely,
)
from exporter.sinks import Sink, SinkSet
from exporter.sinks.log import History, LogSink, entry, summary
from exporter.sinks.prometheus import PrometheusSink, probe_exposition

__all__ = ["Daemon", "Masker", "SafeStderr", "serve"]

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


class SafeStderr:
    """Standard error for log lines that can neither raise nor leave bytes stuck in a buffer.

    Each line goes to fd 2 in `os.write` calls of its own: no Python-level buffer that a closed
    pipe would leave full (and raise again from at exit). A failed write is counted, reported
    through `on_failure` (the daemon counts it as a log sink error) and the line dropped.
    Used as structlog's logger (`msg` and the level aliases) and as the stdlib handler stream.
    """

    def __init__(self, fd: int = 2) -> None:
        self._fd = fd
        self._lock = threading.Lock()
        self.failures = 0
        self.on_failure: Callable[[], None] | None = None

    def write(self, text: str) -> int:
        data = text.encode("utf-8", "replace")
        try:
            with self._lock:
                view = memoryview(data)
                while view:
                    view = view[os.write(self._fd, view) :]
        except OSError:  # EPIPE, EBADF, EIO: the reader is gone; the daemon carries on
            self.failures += 1
            if self.on_failure is not None:
                with contextlib.suppress(Exception):
                    self.on_failure()
        return len(text)

    def flush(self) -> None:
        """Nothing buffered."""

    def isatty(self) -> bool:
        try:
            return os.isatty(self._fd)
        except OSError:
            return False

    def msg(self, message: str) -> None:
        self.write(message + "\n")

    log = debug = info = warn = warning = err = error = critical = exception = fatal = msg


def configure_logging(settings: Settings, masker: Masker, stream: SafeStderr) -> None:
    """structlog for our events; the stdlib loggers of libraries go to stderr at warning."""
    level = getattr(logging, settings.log_level.upper())
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if settings.log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, *_stamped(masker), renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=lambda *_args: stream,
        cache_logger_on_first_use=False,
    )
    # NOTE: a stdlib handler that fails would print "--- Logging error ---" to stderr: the same
    # closed pipe. SafeStderr never raises; this covers any other handler.
    logging.raiseExceptions = False
    route_stdlib_logging(renderer, masker, stream)


def warn_on_missing_secrets(targets: Iterable[Target]) -> None:
    """A secret source that yields nothing: each probe of that target will fail `config`."""
    for target in targets:
        for problem in target.missing_secrets():
            log.warning("secret_missing", target=target.name, problem=problem)


def _stamped(masker: Masker) -> list[Any]:
    """The processors our events and libraries' stdlib lines share: level, UTC time,
    exception text, then secrets masked last, before rendering."""
    return [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        masker.processor,
    ]


class _StdlibHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler `route_stdlib_logging` installed, so a second call replaces it."""


def route_stdlib_logging(renderer: Any, masker: Masker, stream: Any = None) -> None:
    """Libraries' stdlib `logging` lines (the OTel SDK's export errors, uvicorn) at warning and
    above, rendered by the same structlog renderer as our events: with `LGSE_LOG_FORMAT=json`
    every line on stderr is one JSON object (`logger` names the library)."""
    handler = _StdlibHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *_stamped(masker)],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _StdlibHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)


def warn_on_open_secret_files(targets: Iterable[Target]) -> None:
    """A secret file other users can read is worth a warning at start."""
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

    def __init__(
        self,
        settings: Settings,
        config_path: str,
        config: Config,
        log_stream: SafeStderr | None = None,
        web_config: WebConfig | None = None,
    ) -> None:
        self.settings = settings
        self.web_config = web_config
        self.config_path = config_path
        self.shard = resolve_shard(settings, socket.gethostname())
        self.prometheus = PrometheusSink(
            max_nodes_per_target=settings.max_nodes_per_target, location=settings.location
        )
        self.config = self._my_shard(config)
        self.masker = Masker()
        self.masker.update(self.config.targets)
        self.history = History(settings.history_size)
        if log_stream is not None:
            log_stream.on_failure = lambda: self.prometheus.count_sink_error("log")
        # `/-/events` entries: the `/-/probes` shape, masked when published (daemon/events.py)
        self.events = EventBus(
            lambda r, trigger: self.masker.bytes(orjson.dumps(entry(r, trigger))),
            buffer_size=settings.events_buffer_size,
            max_subscribers=settings.events_max_subscribers,
            queue_size=settings.events_queue_size,
            heartbeat_s=settings.events_heartbeat_s,
        )
        sinks: list[Sink] = [self.prometheus, LogSink(), self.history, self.events]
        self.otlp: Sink | None = None
        if settings.otlp == "on" or (settings.otlp == "auto" and otlp_configured()):
            from exporter.sinks.otlp import OTLPSink

            self.otlp = OTLPSink(
                on_export_failure=lambda: self.prometheus.count_sink_error("otlp"),
                location=settings.location,
                token_events=settings.span_token_events,
            )
            sinks.append(self.otlp)
        if settings.otlp_metrics:
            from exporter.sinks.otlp_metrics import OTLPMetricsSink

            sinks.append(OTLPMetricsSink(semconv=settings.semconv, location=settings.location))
        self.sinks = SinkSet(sinks, on_error=self._sink_error)
        self.prometheus.declare_sinks(self.sinks.names)
        self.scheduler: Scheduler | None = None
        self._ready = False
        self._reload_lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._signals = 0
        #: Tasks nothing else awaits (a SIGHUP reload): the loop keeps only weak references to
        #: tasks, so one not referenced here could be garbage-collected mid-reload.
        self.background: set[asyncio.Task[Any]] = set()

    def _background(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        task.set_name(name)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return task

    def on_sighup(self) -> asyncio.Task[Any]:
        """SIGHUP: reload in a task the daemon holds until it ends."""
        return self._background(self.reload(), "reload:SIGHUP")

    def _sink_error(self, sink: str, exc: Exception) -> None:
        self.prometheus.count_sink_error(sink)
        log.error("sink_failed", sink=sink, error=f"{type(exc).__name__}: {exc}", exc_info=exc)

    def _my_shard(self, config: Config) -> Config:
        """The targets of this replica's shard (all of them with one shard; docs/SCALING.md)."""
        shards = self.settings.shards
        names = shard_members((t.name for t in config.targets), self.shard, shards)
        mine = set(names)
        own = config.model_copy(
            update={"targets": tuple(t for t in config.targets if t.name in mine)}
        )
        self.prometheus.set_shard(self.shard, shards, len(own.targets), len(config.targets))
        return own

    def _declare(self, config: Config) -> None:
        for t in config.targets:
            self.prometheus.declare(t.name, t.assistant_id, dict(t.labels))
        self.prometheus.retain(t.name for t in config.targets)

    async def reload(self) -> tuple[bool, str]:
        """Load the file again; keep the old config if the new one is invalid. Returns (ok,
        message); a sharded replica's message names its share: `reloaded PATH: 6 of 16
        targets, shard 0/2: a, b, ...`."""
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
            in_file = len(config.targets)
            config = self._my_shard(config)
            self.config = config
            self.masker.update(config.targets)
            warn_on_open_secret_files(config.targets)
            warn_on_missing_secrets(config.targets)
            self.scheduler.apply(config)
            self.prometheus.set_reload(True)
            shards = self.settings.shards
            if shards == 1:
                log.info("config_reloaded", path=self.config_path, targets=len(config.targets))
                kept = counted(len(config.targets), "target")
                return True, f"reloaded {self.config_path}: {kept}"
            # A sharded replica says which share it kept, so a reload per replica can be
            # checked against `check-config --shards N` (docs/SCALING.md).
            log.info(
                "config_reloaded",
                path=self.config_path,
                targets=len(config.targets),
                configured_targets=in_file,
                shard=self.shard,
                shards=shards,
            )
            return True, (
                f"reloaded {self.config_path}: {len(config.targets)} of"
                f" {counted(in_file, 'target')},"
                f" shard {self.shard}/{shards}: {', '.join(t.name for t in config.targets)}"
            )

    async def _run_probe(self, name: str, debug: bool) -> dict[str, Any] | None:
        target = self.config.target(name)
        if target is None:
            return None
        lines: list[str] = []
        result = await self._run_probe_result(name, lines)
        if result is None:
            return None
        out = result.to_dict()
        if debug:
            out["log"] = lines
            out["target_config"] = target.model_dump(mode="json")
        return out

    async def _run_probe_metrics(self, name: str) -> bytes | None:
        # Every sink, as an on-demand result: Prometheus counts it in on_demand_runs_total
        # only, so it stays out of the SLO series (docs/RELIABILITY.md).
        result = await self._run_probe_result(name)
        return None if result is None else probe_exposition(result)

    async def _run_probe_result(
        self, name: str, lines: list[str] | None = None
    ) -> ProbeResult | None:
        """An on-demand probe of target `name` (every `/probe` format), as the result itself;
        its log lines go to `lines`. None for an unknown target; `ProbeBusy` when the target
        has an on-demand probe in flight."""
        assert self.scheduler is not None
        if self.config.target(name) is None:
            return None
        try:
            return await self.scheduler.run_now(name, lines)
        except OnDemandBusy as busy:
            raise ProbeBusy(busy.retry_after_s) from busy

    def _probe_detail(self, probe_id: str) -> dict[str, Any] | None:
        result = self.history.find(probe_id)
        if result is None:
            return None
        return {**result.to_dict(), "log": list(result.log)}

    def _probes(self) -> dict[str, Any]:
        assert self.scheduler is not None
        snap: dict[str, Any] = self.history.snapshot()
        last: dict[str, Any] = {}
        for result, trigger in self.history.recent:
            last[result.target] = summary(result, trigger)
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
        # NOTE: act first, log second: a log write must never be what stands between a signal
        # and shutdown (a closed log pipe once kept SIGTERM from ever stopping the daemon).
        self._signals += 1
        if self._signals > 1:
            try:
                log.warning("forced_exit", signal=sig.name)
            finally:
                os._exit(130)
        self._ready = False
        self._stop.set()
        with contextlib.suppress(Exception):
            log.info("shutdown_requested", signal=sig.name, grace_s=self.settings.grace_period_s)

    async def sweep_orphans(self) -> int:
        """One sweep of every configured server (once per URL); the threads deleted."""
        total = 0
        seen: set[str] = set()
        for target in self.config.targets:
            if target.url in seen or target.missing_secrets():
                continue
            seen.add(target.url)
            async with client_for(target, transport=self.settings.transport) as client:
                sweep = await sweep_orphaned_threads(
                    client,
                    target,
                    request_headers(target, TraceParent.new()),
                    older_than_s=self.settings.orphan_thread_age,
                )
            total += sweep.deleted
            self.prometheus.count_orphans_deleted(sweep.deleted)
            if sweep.deleted:
                log.info("orphaned_threads_deleted", url=target.url, deleted=sweep.deleted)
            if sweep.error is not None:
                log.warning("orphan_sweep_failed", url=target.url, error=sweep.error)
        return total

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep_orphans()
            except Exception as exc:  # a bug here must not take the daemon down
                log.error("orphan_sweep_failed", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(self.settings.orphan_sweep_interval)

    async def _refresh_exposition(self) -> None:
        """Render changed targets' `/metrics` blocks once a second, so a scrape only joins
        ready bytes: on the loop, one target per loop iteration (docs/PERFORMANCE.md "Daemon
        scale"; `PrometheusSink.refresh_steps`)."""
        while True:
            await asyncio.sleep(1.0)
            for _ in self.prometheus.refresh_steps():
                await asyncio.sleep(0)

    async def run(self, sock: socket.socket) -> int:
        """Serve on the bound `sock` until a signal; returns the exit status."""
        host, port = sock.getsockname()[:2]
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
            exposition=self.prometheus.exposition_chunks,
            ready=lambda: self._ready,
            reload=self.reload,
            run_probe=self._run_probe,
            probes=self._probes,
            target_names=lambda: [t.name for t in self.config.targets],
            mask=self.masker.bytes,
            run_probe_metrics=self._run_probe_metrics,
            probe_detail=self._probe_detail,
            run_probe_result=self._run_probe_result,
            find_result=self.history.find,
            latest_result=self.history.latest,
            events=self.events,
        )
        web_config = self.web_config
        auth = BasicAuth(web_config.users) if web_config and web_config.users else None
        server = _Server(
            uvicorn.Config(
                make_app(handlers, enable_lifecycle=self.settings.web_enable_lifecycle, auth=auth),
                lifespan="off",
                access_log=False,
                log_level="warning",
                # NOTE: no handlers of uvicorn's own on sys.stderr: its records go to the root
                # logger, whose handler writes through SafeStderr like every other log line.
                log_config=None,
                server_header=False,
                # A client that holds a connection open must not hold the process either.
                timeout_graceful_shutdown=max(1, math.ceil(self.settings.grace_period_s)),
                **(web_config.uvicorn_ssl() if web_config else {}),
            )
        )
        for sig in HANDLED_SIGNALS:
            loop.add_signal_handler(sig, self._on_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, self.on_sighup)
        warn_on_open_secret_files(self.config.targets)
        warn_on_missing_secrets(self.config.targets)
        self.prometheus.set_reload(True)
        scheduler.apply(self.config)
        web = asyncio.create_task(server.serve(sockets=[sock]), name="web")
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
        scheme = "https" if web_config and web_config.tls else "http"
        log.info(
            "exporter_started",
            listen=f"{scheme}://{host}:{port}",
            metrics=f"{scheme}://{host}:{port}/metrics",
            targets=[t.name for t in self.config.targets],
            otlp=self.otlp is not None,
            lifecycle_apis=self.settings.web_enable_lifecycle,
            basic_auth=auth is not None,
            web_config=web_config.path if web_config else None,
        )
        if auth is not None and scheme == "http":
            log.warning("basic_auth_without_tls", detail="passwords cross the network in clear")
        renderer = asyncio.create_task(self._refresh_exposition(), name="exposition")
        freezer = asyncio.create_task(freeze_survivors(), name="gc-freeze")
        sweeper = (
            asyncio.create_task(self._sweep_forever(), name="orphan-sweep")
            if self.settings.orphan_sweep
            else None
        )
        stopper = asyncio.create_task(self._stop.wait())
        await asyncio.wait({web, stopper}, return_when=asyncio.FIRST_COMPLETED)
        # 1. Stop accepting work: no new probes, readiness off.
        self._ready = False
        renderer.cancel()
        freezer.cancel()
        if sweeper is not None:
            sweeper.cancel()
        scheduler.stop_scheduling()
        # 2. Let running probes finish within the grace period; cancel the rest.
        await scheduler.drain(self.settings.grace_period_s)
        # 3. Stop the HTTP server (scrapes kept working while probes drained); end the open
        # `/-/events` streams first, or uvicorn would wait for those clients to leave.
        self.events.shut_down()
        server.should_exit = True
        with contextlib.suppress(Exception):
            await web
        # 4. Flush spans and close sinks, off the event loop (the OTLP batch thread joins).
        await asyncio.to_thread(self.sinks.close)
        log.info("exporter_stopped")
        return 0


def resolve_shard(settings: Settings, hostname: str) -> int:
    """This replica's shard: `LGSE_SHARD`, or with `auto` the ordinal ending `hostname`.

    Raises SettingsError naming the variable when the shard is not below `LGSE_SHARDS` or the
    hostname has no ordinal.
    """
    if settings.shard == "auto":
        try:
            shard = ordinal_from_hostname(hostname)
        except ValueError as exc:
            raise SettingsError([f"LGSE_SHARD='auto': {exc}"]) from exc
    else:
        shard = int(settings.shard)
    if shard >= settings.shards:
        raise SettingsError(
            [f"LGSE_SHARD={shard}: must be below LGSE_SHARDS={settings.shards} (0-based)"]
        )
    return shard


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


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before anything is scheduled; raises `OSError`."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=2048)


def serve(
    *,
    config_path: str | None,
    listen: str | None,
    web_config_file: str | None = None,
    enable_lifecycle: bool = False,
) -> int:
    """Entry point of `langgraph-stream-exporter run`; returns the exit status.

    `web_config_file` and `enable_lifecycle` (the flags) win over `LGSE_WEB_CONFIG_FILE` and
    `LGSE_WEB_ENABLE_LIFECYCLE`. An invalid targets or web-config file exits 1.
    """
    try:
        settings = load_settings()
        resolve_shard(settings, socket.gethostname())
    except SettingsError as exc:
        for problem in exc.problems:
            sys.stderr.write(f"langgraph-stream-exporter: error: {problem}\n")
        return 2
    if enable_lifecycle:
        settings = settings.model_copy(update={"web_enable_lifecycle": True})
    masker = Masker()
    stream = SafeStderr()
    configure_logging(settings, masker, stream)
    for problem in unknown_settings():
        log.warning("unknown_setting", problem=problem)
    path = config_path or settings.config
    try:
        host, port = _listen(listen or settings.listen)
    except ValueError as exc:
        sys.stderr.write(f"langgraph-stream-exporter: error: {exc}\n")
        return 2
    web_path = web_config_file or settings.web_config_file
    try:
        config = load_config(path)
        web_config = load_web_config(web_path) if web_path else None
    except ConfigError as exc:
        for problem in exc.problems:
            sys.stderr.write(f"{exc.path}: {problem}\n")
        return 1

    try:
        sock = bind(host, port)
    except OSError as exc:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)
        if exc.errno == errno.EADDRINUSE:
            reason = "address already in use"
        stream.write(f"langgraph-stream-exporter: cannot listen on {listen or settings.listen}:"
                     f" {reason.lower()}\n")  # fmt: skip
        return 1

    async def main() -> int:
        daemon = Daemon(settings, path, config, log_stream=stream, web_config=web_config)
        daemon.masker = masker
        masker.update(config.targets)
        return await daemon.run(sock)

    try:
        return run_async(main())
    finally:
        sock.close()
