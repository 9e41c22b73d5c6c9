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
from exporter.config import Target, load_config
from exporter.core.errors import ConfigError
from exporter.runtime import run_async

__all__ = ["main"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
PROG = "langgraph-stream-exporter"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _usage_error(message: str) -> NoReturn:
    sys.stderr.write(f"{PROG}: error: {message}\n")
    raise SystemExit(EXIT_USAGE)


def _header(value: str) -> tuple[str, str]:
    name, sep, val = value.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected 'Name: value', got {value!r}")
    return name.strip(), val.strip()


def _json_object(value: str) -> dict[str, Any]:
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise argparse.ArgumentTypeError("expected a JSON object")
    return obj


def _add_target_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", required=True, help="base URL of the LangGraph API server")
    p.add_argument("--assistant", required=True, help="assistant id or graph id")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--input", dest="input_text", help="a human message to send")
    src.add_argument("--input-file", help="JSON file with the whole run `input` object")
    p.add_argument("--mode", choices=("stateless", "thread"), default="stateless")
    p.add_argument("--header", action="append", type=_header, default=[], help="'Name: value'")
    key = p.add_mutually_exclusive_group()
    key.add_argument("--api-key-env", help="environment variable holding the x-api-key")
    key.add_argument("--api-key-file", help="file holding the x-api-key (e.g. a mounted Secret)")
    p.add_argument("--no-subgraphs", action="store_true", help="do not stream subgraph tokens")
    p.add_argument("--run-config", type=_json_object, help="run `config` as JSON")
    p.add_argument("--timeout-total", type=float, default=120.0, metavar="S")
    p.add_argument("--expect-regex", help="the streamed text must match this regex")


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
    total = args.timeout_total
    if total <= 0:
        _usage_error("--timeout-total must be positive")
    timeout = {"total": total, "idle": min(15.0, total)}
    for phase, default in (("headers", 10.0), ("first_event", 30.0), ("first_token", 60.0)):
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
                "api_key_env": args.api_key_env,
                "api_key_file": args.api_key_file,
                "stream_subgraphs": not args.no_subgraphs,
                "timeout": timeout,
                "expect": {"content_regex": args.expect_regex},
            }
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or "target"
        _usage_error(f"{loc}: {first['msg'].removeprefix('Value error, ')}")


def _cmd_probe(args: argparse.Namespace) -> int:
    from exporter.probe import probe

    target = _target_from_args(args)
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
    try:
        config = load_config(args.file)
    except ConfigError as exc:
        for problem in exc.problems:
            sys.stderr.write(f"{exc.path}: {problem}\n")
        return EXIT_FAILURE
    names = ", ".join(t.name for t in config.targets) or "none"
    sys.stdout.write(f"{args.file}: OK, {len(config.targets)} target(s): {names}\n")
    return EXIT_OK


def _cmd_run(args: argparse.Namespace) -> int:
    from exporter.daemon import serve

    code: int = serve(config_path=args.config, listen=args.listen)
    return code


def _cmd_load(args: argparse.Namespace) -> int:
    from exporter.load import LoadOptions, run_load

    target = _target_from_args(args, name="load")
    if args.concurrency < 1:
        _usage_error("--concurrency must be at least 1")
    if args.duration <= 0:
        _usage_error("--duration must be positive")
    options = LoadOptions(
        concurrency=args.concurrency,
        duration_s=args.duration,
        max_streams=args.max_streams,
        trace_out=args.trace_out,
        json_summary=args.json_summary,
        progress=not args.no_progress,
        transport=args.transport,
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
    _add_target_args(p)
    p.add_argument("--json", action="store_true", help="print exactly one JSON object")
    p.add_argument(
        "--waterfall", action="store_true", help="print the waterfall instead of the table"
    )
    p.add_argument("--svg", metavar="FILE", help="also write the waterfall as an SVG file")
    p.add_argument("--transport", choices=("stamping", "aiohttp", "httpcore"), default="stamping")
    p.set_defaults(func=_cmd_probe)

    p = sub.add_parser("load", help="N concurrent streams; TTFT and ITL per node under load")
    _add_target_args(p)
    p.add_argument("--concurrency", type=int, required=True, metavar="C")
    p.add_argument("--duration", type=float, required=True, metavar="S")
    p.add_argument("--max-streams", type=int, metavar="N")
    p.add_argument("--trace-out", metavar="FILE", help="one JSON line per stream")
    p.add_argument("--json-summary", action="store_true", help="last line: cpu_s, wall_s, rss")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--transport", choices=("stamping", "aiohttp", "httpcore"), default="stamping")
    p.set_defaults(func=_cmd_load)

    p = sub.add_parser("run", help="run the exporter daemon")
    p.add_argument("--config", help="targets file (default: $LGSE_CONFIG)")
    p.add_argument("--listen", help="HOST:PORT (default: $LGSE_LISTEN or 0.0.0.0:9465)")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("watch", help="live per-target, per-node view of a running exporter")
    p.add_argument("--url", default="http://127.0.0.1:9465", help="the exporter's base URL")
    p.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    p.add_argument("--target", metavar="NAME", help="also draw the waterfall of NAME's last probe")
    p.set_defaults(func=_cmd_watch)

    p = sub.add_parser("check-config", help="validate a targets file and exit 0/1")
    p.add_argument("file")
    p.set_defaults(func=_cmd_check_config)
    return parser


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
