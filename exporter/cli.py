"""Command line: `probe` (one shot), `load`, `run` (the daemon), `check-config`.

The only module that reads argv and chooses an exit status: 0 success, 1 a probe or config
failure, 2 a usage error (bad flags, unreadable input file, invalid target).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import orjson
from pydantic import ValidationError

from exporter import __version__
from exporter.config import (
    SECRET_HEADERS,
    Target,
    Timeouts,
    check_header_name,
    check_header_value,
    load_config,
    parse_duration,
)
from exporter.core.errors import ConfigError
from exporter.core.words import counted
from exporter.runtime import run_async

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
PROG = "langgraph-stream-exporter"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _usage_error(message: str, command: str | None = None) -> NoReturn:
    """Exit 2 with argparse's wording (`PROG [command]: error: message`)."""
    sys.stderr.write(f"{PROG}{' ' + command if command else ''}: error: {message}\n")
    raise SystemExit(EXIT_USAGE)


def _header(value: str) -> tuple[str, str]:
    name, sep, val = value.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected 'Name: value', got {value!r}")
    name, val = name.strip(), val.strip()
    try:
        check_header_name(name)
        check_header_value(val)
    except ValueError as exc:  # the value is not echoed: it may be a credential
        raise argparse.ArgumentTypeError(f"{name!r}: {exc}") from exc
    hint = SECRET_HEADERS.get(name.lower())
    if hint is not None:
        raise argparse.ArgumentTypeError(
            f"{name.lower()} is a secret: use --secret-header '{name}=ENV_VAR'"
            + (" or --api-key-env/--api-key-file" if name.lower() == "x-api-key" else "")
        )
    return name, val


def _secret_header(value: str) -> tuple[str, dict[str, str]]:
    name, sep, env = value.partition("=")
    name, env = name.strip(), env.strip()
    if not sep or not name or not env:
        raise argparse.ArgumentTypeError(f"expected 'Name=ENV_VAR', got {value!r}")
    try:
        check_header_name(name)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{name!r}: {exc}") from exc
    return name, {"env": env}


def _duration(value: str) -> float:
    """argparse type: the exporter's one duration syntax (`30`, `500ms`, `1m30s`) -> seconds."""
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


#: `--timeout-<phase>` flags, one per `Timeouts` field.
TIMEOUT_PHASES = tuple(Timeouts.model_fields)


def _json_object(value: str) -> dict[str, Any]:
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return obj


def _add_target_args(p: argparse.ArgumentParser, *, required: bool = True) -> None:
    p.add_argument("--url", required=required, help="base URL of the LangGraph API server")
    p.add_argument(
        "--assistant", "--assistant-id", dest="assistant", required=required,
        help="assistant id or graph id (the targets file's assistant_id)",
    )  # fmt: skip
    src = p.add_mutually_exclusive_group()
    src.add_argument("--input", dest="input_text", help="a human message to send")
    src.add_argument("--input-file", help="JSON file with the whole run `input` object")
    p.add_argument("--mode", choices=("stateless", "thread"), default="stateless")
    p.add_argument("--header", action="append", type=_header, default=[], help="'Name: value'")
    p.add_argument(
        "--secret-header",
        action="append",
        type=_secret_header,
        default=[],
        metavar="NAME=ENV_VAR",
        help="a header whose value is read from an environment variable (e.g. Authorization)",
    )
    key = p.add_mutually_exclusive_group()
    key.add_argument("--api-key-env", help="environment variable holding the x-api-key")
    key.add_argument("--api-key-file", help="file holding the x-api-key (e.g. a mounted Secret)")
    p.add_argument("--no-subgraphs", action="store_true", help="do not stream subgraph tokens")
    p.add_argument("--run-config", type=_json_object, help="run `config` as JSON")
    for phase in TIMEOUT_PHASES:
        field = Timeouts.model_fields[phase]
        p.add_argument(
            f"--timeout-{phase.replace('_', '-')}", dest=f"timeout_{phase}", type=_duration,
            metavar="DURATION", help=f"{field.description} (default {field.default:g}s)",
        )  # fmt: skip
    p.add_argument("--expect-regex", help="the streamed text must match this regex")
    p.add_argument(
        "--protocol",
        choices=("legacy", "v2", "auto"),
        default="legacy",
        help="legacy POST /runs/stream (default), v2 event streaming, or auto: v2 where offered",
    )


def _target_from_args(args: argparse.Namespace, name: str = "cli") -> Target:
    if args.input_file:
        try:
            data = orjson.loads(Path(args.input_file).read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            _usage_error(f"--input-file {args.input_file}: {exc}")
        if not isinstance(data, dict):
            _usage_error(f"--input-file {args.input_file}: expected a JSON object")
        run_input = data
    else:
        text = args.input_text if args.input_text is not None else "what's the weather in sf?"
        run_input = {"messages": [{"role": "human", "content": text}]}
    # A phase not given defaults to its usual value, capped by the total when one is given.
    total = args.timeout_total
    timeout: dict[str, float] = {}
    for phase in TIMEOUT_PHASES:
        given = getattr(args, f"timeout_{phase}")
        default = Timeouts.model_fields[phase].default
        if given is not None:
            timeout[phase] = given
        elif total is not None and phase != "connect":
            timeout[phase] = min(default, total)
    try:
        return Target.model_validate(
            {
                "name": name,
                "url": args.url,
                "assistant_id": args.assistant,
                "mode": args.mode,
                "input": run_input,
                "config": args.run_config,
                "headers": dict(args.header),
                "secret_headers": dict(args.secret_header),
                "api_key_env": args.api_key_env,
                "api_key_file": args.api_key_file,
                "stream_subgraphs": not args.no_subgraphs,
                "timeout": timeout,
                "expect": {"content_regex": args.expect_regex},
                "protocol": args.protocol,
            }
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "target"
        _usage_error(f"{loc}: {first['msg'].removeprefix('Value error, ')}")


def _configured_target(args: argparse.Namespace) -> Target:
    """`--config FILE --target NAME`: the target exactly as the daemon would probe it."""
    flags = [
        f
        for f in (
            "url",
            "assistant",
            "input_text",
            "input_file",
            "run_config",
            "api_key_env",
            "api_key_file",
            "expect_regex",
        )
        if getattr(args, f)
    ]
    flags += [p for p in TIMEOUT_PHASES if getattr(args, f"timeout_{p}") is not None]
    if args.header:
        flags.append("header")
    if flags:
        _usage_error(
            f"--config takes the target from the file; do not combine it with --{flags[0]}".replace(
                "_", "-"
            )
        )
    if not args.target:
        _usage_error("--config needs --target NAME")
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        _usage_error("\n".join(f"{exc.path}: {p}" for p in exc.problems))
    target = config.target(args.target)
    if target is None:
        names = ", ".join(t.name for t in config.targets)
        _usage_error(f"{args.config}: no target named {args.target!r} (targets: {names})")
    return target


def _check_secrets(target: Target) -> None:
    """A configured secret source that yields nothing is a usage error, named (exit 2)."""
    missing = target.missing_secrets()
    if missing:
        _usage_error("; ".join(missing))


def _cmd_probe(args: argparse.Namespace) -> int:
    from exporter.probe import probe

    if args.config is not None:
        target = _configured_target(args)
    elif args.target is not None:
        _usage_error("--target needs --config FILE")
    elif not args.url or not args.assistant:
        _usage_error("give --url and --assistant, or --config FILE --target NAME")
    else:
        target = _target_from_args(args)
    _check_secrets(target)
    result = run_async(probe(target, transport=args.transport))
    if args.svg:
        from exporter.core.waterfall import layout
        from exporter.core.waterfall_svg import render_svg

        try:
            Path(args.svg).write_text(render_svg(layout(result)), encoding="utf-8")
        except OSError as exc:
            _usage_error(f"--svg {args.svg}: {exc.strerror or exc}")
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(result.to_dict()) + b"\n")
        sys.stdout.flush()
    elif args.waterfall:
        from rich.console import Console

        from exporter.core.waterfall import layout
        from exporter.core.waterfall_text import render_text

        console = Console()
        console.print(render_text(layout(result), width=min(console.width, 120)))
    else:
        from rich.console import Console

        from exporter.core.report import render_report

        console = Console()
        if not console.is_terminal:
            console = Console(width=120)  # piped: do not squeeze the table into 80 columns
        console.print(render_report(result))
    return EXIT_OK if result.success else EXIT_FAILURE


def _cmd_check_config(args: argparse.Namespace) -> int:
    """Each file: its problems (exit 1), or OK; a secret source that yields nothing here is a
    warning, an error with `--strict` (for CI that has the secrets)."""
    from exporter.config import unknown_settings

    code = EXIT_OK
    level = "error" if args.strict else "warning"
    for name in unknown_settings():
        sys.stderr.write(f"{level}: {name}\n")
        code = EXIT_FAILURE if args.strict else code
    for path in args.files:
        try:
            config = load_config(path)
        except ConfigError as exc:
            for problem in exc.problems:
                sys.stderr.write(f"{exc.path}: {problem}\n")
            code = EXIT_FAILURE
            continue
        secrets_ok = True
        for i, target in enumerate(config.targets):
            for problem in target.missing_secrets():
                sys.stderr.write(f"{path}: {level}: targets[{i}].{problem}\n")
                secrets_ok = False
        if args.strict and not secrets_ok:
            code = EXIT_FAILURE
            continue
        names = ", ".join(t.name for t in config.targets)
        sys.stdout.write(f"{path}: OK, {counted(len(config.targets), 'target')}: {names}\n")
        if args.shards is not None:
            from exporter.core.shard import shard_members

            for k in range(args.shards):
                own = shard_members((t.name for t in config.targets), k, args.shards)
                sys.stdout.write(f"  shard {k}/{args.shards}: {len(own)}: {', '.join(own)}\n")
    return code


def _cmd_run(args: argparse.Namespace) -> int:
    from exporter.daemon import serve

    code: int = serve(
        config_path=args.config,
        listen=args.listen,
        web_config_file=args.web_config_file,
        enable_lifecycle=args.web_enable_lifecycle,
    )
    return code


def _cmd_load(args: argparse.Namespace) -> int:
    from exporter.load import LoadOptions, run_load

    target = _target_from_args(args, name="load")
    _check_secrets(target)
    if args.workers > args.concurrency:
        _usage_error(
            f"argument --workers: {counted(args.workers, 'worker')} for --concurrency"
            f" {args.concurrency}:"
            " each worker needs at least one stream slot",
            command="load",
        )
    options = LoadOptions(
        concurrency=args.concurrency,
        duration_s=args.duration,
        max_streams=args.max_streams,
        trace_out=args.trace_out,
        json_summary=args.json_summary,
        progress=not args.no_progress,
        transport=args.transport,
        workers=args.workers,
    )
    code: int = run_load(target, options)
    return code


def _cmd_watch(args: argparse.Namespace) -> int:
    from exporter.watch import watch

    return watch(args.url, duration_s=args.duration, target=args.target)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Synthetic streaming probes for LangGraph APIs.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("probe", help="probe once and print a report (or --json)")
    _add_target_args(p, required=False)
    p.add_argument("--config", metavar="FILE", help="targets file: probe one of its targets")
    p.add_argument("--target", metavar="NAME", help="with --config: the target to probe")
    p.add_argument("--json", action="store_true", help="print exactly one JSON object")
    p.add_argument(
        "--waterfall", action="store_true", help="print the waterfall instead of the table"
    )
    p.add_argument("--svg", metavar="FILE", help="also write the waterfall as an SVG file")
    p.add_argument("--transport", choices=("stamping", "aiohttp", "httpcore"), default="stamping")
    p.set_defaults(func=_cmd_probe)

    p = sub.add_parser("load", help="N concurrent streams; TTFT and ITL per node under load")
    _add_target_args(p)
    p.add_argument("--concurrency", type=_positive_int, required=True, metavar="C")
    p.add_argument(
        "--duration", type=_duration, required=True, metavar="DURATION",
        help="no stream starts after this (30, 10s, 2m)",
    )  # fmt: skip
    p.add_argument("--max-streams", type=int, metavar="N")
    p.add_argument("--trace-out", metavar="FILE", help="one JSON line per stream")
    p.add_argument(
        "--json-summary", action="store_true",
        help="last line: one JSON object with latencies, failures by kind, cpu_s, wall_s, rss",
    )  # fmt: skip
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--transport", choices=("stamping", "aiohttp", "httpcore"), default="stamping")
    p.add_argument(
        "--workers", type=_positive_int, default=1, metavar="W",
        help="processes, each with its own event loop and share of C and N; one merged report"
        " (default 1: in this process)",
    )  # fmt: skip
    p.set_defaults(func=_cmd_load)

    p = sub.add_parser("run", help="run the exporter daemon")
    p.add_argument("--config", help="targets file (default: $LGSE_CONFIG)")
    p.add_argument("--listen", help="HOST:PORT (default: $LGSE_LISTEN or 0.0.0.0:9465)")
    p.add_argument(
        "--web.config.file",
        dest="web_config_file",
        metavar="FILE",
        help="exporter-toolkit web-config YAML: TLS, basic auth (default: $LGSE_WEB_CONFIG_FILE)",
    )
    p.add_argument(
        "--web.enable-lifecycle",
        dest="web_enable_lifecycle",
        action="store_true",
        help="serve /probe and POST /-/reload (default: $LGSE_WEB_ENABLE_LIFECYCLE, off)",
    )
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("watch", help="live per-target, per-node view of a running exporter")
    p.add_argument(
        "--url", default="http://127.0.0.1:9465",
        help="the exporter's base URL or its /metrics URL",
    )  # fmt: skip
    p.add_argument("--duration", type=_duration, metavar="DURATION", help="stop after this")
    p.add_argument("--target", metavar="NAME", help="also draw the waterfall of NAME's last probe")
    p.set_defaults(func=_cmd_watch)

    p = sub.add_parser("check-config", help="validate targets files and exit 0/1")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument(
        "--strict", action="store_true",
        help="a secret source that yields nothing (or an unknown LGSE_* variable) is an error",
    )  # fmt: skip
    p.add_argument(
        "--shards", type=_positive_int, metavar="N",
        help="also print which targets each of N shards probes (LGSE_SHARDS; docs/SCALING.md)",
    )  # fmt: skip
    p.set_defaults(func=_cmd_check_config)
    return parser


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


def console() -> None:
    """Console-script entry point."""
    sys.exit(main())
