"""The human-readable probe report: outcome first, then one row per node and LLM call."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from exporter.core.result import ProbeResult
from exporter.core.stats import quantile
from exporter.core.words import counted

__all__ = ["render_report"]


def ms(seconds: float | None) -> str:
    """Seconds as milliseconds for a table cell; a dash for "not measured"."""
    return "–" if seconds is None else f"{seconds * 1000:.1f} ms"


def render_report(result: ProbeResult) -> Group:
    """A rich renderable: headline, phases, and the per-node/per-call table in run order (a
    line saying no node ran instead of an empty table). Phases that did not happen are left out
    (connection set-up) or shown as "–", never as 0."""
    if result.failure is None:
        head = Text("✔ success", style="bold green")
    else:
        f = result.failure
        extra = f" (HTTP {f.http_status})" if f.http_status else ""
        head = Text(f"✘ failure: {f.kind.value}{extra}", style="bold red")
        head.append(f"\n  {f.message}", style="red")
    head.append(
        f"\n  {result.url}  assistant={result.assistant_id}  mode={result.mode}"
        f"  protocol={result.protocol}"
        f"\n  run {result.run_id or '–'}  trace {result.trace_id or '–'}",
        style="dim",
    )
    rel = result.since_request_s
    connection = " · ".join(f"{k} {ms(v)}" for k, v in result.phase_durations_s().items())
    answer = ""
    if result.t_first_answer_ns != result.t_first_token_ns:
        answer = f" · first answer token {ms(rel(result.t_first_answer_ns))}"
    phases = Text(
        (f"  {connection}\n" if connection else "") + f"  headers {ms(rel(result.t_headers_ns))}"
        f" · first event {ms(rel(result.t_first_event_ns))}"
        f" · first token {ms(rel(result.t_first_token_ns))}{answer}"
        f" · total {ms(result.duration_s)}"
        f" · {counted(result.tokens, 'token')} · {counted(result.heartbeats, 'heartbeat')}"
    )
    reasoning = any(n.reasoning_tokens for n in result.nodes)
    cols = ["node", "model", "TTFT", *(["answer"] if reasoning else [])]
    cols += ["ITL p50", "ITL p95", "ITL max", "tokens", "TPOT", "duration"]
    table = Table(title=None, show_edge=False, pad_edge=False, box=None, header_style="bold")
    for col in cols:
        table.add_column(col, justify="left" if col in ("node", "model") else "right")
    v2 = result.protocol == "v2"
    if v2:  # server time beside client time (docs/V2.md §4)
        for col in ("server TTFT", "server ITL p50", "jitter max"):
            table.add_column(col, justify="right")
    for node in result.nodes:
        calls = [c for c in node.calls if c.token_ns]
        if not calls:
            empty = ["–"] * (len(cols) - 4)
            table.add_row(
                node.node, *empty, "0", "–", ms(node.duration_s), *(["–"] * 3 if v2 else [])
            )
            continue
        for i, call in enumerate(calls):
            gaps = list(call.itl_s)
            ttft = node.ttft_s if i == 0 else call.ttft_s
            v2_cells: list[str] = []
            if v2:
                jitter = [abs(j) for j in call.jitter_s]
                v2_cells = [
                    ms(node.server_ttft_s if i == 0 else call.server_ttft_s),
                    ms(quantile(list(call.server_itl_s), 0.5)),
                    ms(max(jitter) if jitter else None),
                ]
            tokens = str(call.tokens) + ("?" if call.ambiguous else "")
            if call.reasoning_tokens:
                tokens += f" ({call.reasoning_tokens}r)"
            row = [
                node.node if i == 0 else "",
                call.model or "–",
                ms(ttft) + ("*" if i == 0 and node.basis != "tasks" else ""),
                *([ms(call.answer_ttft_s)] if reasoning else []),
                ms(quantile(gaps, 0.5)),
                ms(quantile(gaps, 0.95)),
                ms(max(gaps) if gaps else None),
                tokens,
                ms(call.tpot_s),
                ms(node.duration_s) if i == 0 else "",
                *v2_cells,
            ]
            table.add_row(*row)
    # A table of headers alone would say nothing; say it in words (the waterfall does the same).
    nodes_part = table if result.nodes else Text("  no node ran", style="dim")
    parts: list[Text | Table] = [head, phases, Text(""), nodes_part]
    if v2:
        parts.append(
            Text(
                "  * v2: TTFT counted from the superstep's (root) or subgraph's start on the"
                " server's clock, moved onto ours at the run's smallest delivery lag"
            )
        )
    elif any(n.basis != "tasks" for n in result.nodes if n.calls):
        parts.append(Text("  * no `tasks` start seen: TTFT counted from the previous boundary"))
    if result.run_status is not None:
        parts.append(Text(f"  run ended: {result.run_status}"))
    for note in result.notes:
        parts.append(Text(f"  ? {note}", style="yellow"))
    if reasoning:
        parts.append(Text("  (Nr): N of the tokens were reasoning; answer = first answer token"))
    if result.stream_mode_fallback:
        parts.append(
            Text(
                "  the server rejected `tasks`: probed with stream_mode"
                f" {list(result.stream_mode)}",
                style="yellow",
            )
        )
    buffered, why = result.buffering()
    if buffered:
        parts.append(
            Text(
                f"  ! buffered: {why}: something between us and the model holds tokens back",
                style="yellow",
            )
        )
    return Group(*parts)
