"""The human-readable probe report: outcome first, then one row per node and LLM call."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from exporter.core.result import ProbeResult
from exporter.core.stats import quantile

__all__ = ["render_report"]


def ms(seconds: float | None) -> str:
    """Seconds as milliseconds for a table cell; a dash for "not measured"."""
    return "–" if seconds is None else f"{seconds * 1000:.1f} ms"


def render_report(result: ProbeResult) -> Group:
    """A rich renderable: headline, phases, and the per-node/per-call table in run order."""
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
    phases = Text(
        f"  headers {ms(rel(result.t_headers_ns))} · first event {ms(rel(result.t_first_event_ns))}"
        f" · first token {ms(rel(result.t_first_token_ns))} · total {ms(result.duration_s)}"
        f" · {result.tokens} tokens · {result.heartbeats} heartbeats"
    )
    table = Table(title=None, show_edge=False, pad_edge=False, box=None, header_style="bold")
    for col in ("node", "model", "TTFT", "ITL p50", "ITL p95", "ITL max", "tokens", "TPOT"):
        table.add_column(col, justify="left" if col in ("node", "model") else "right")
    table.add_column("duration", justify="right")
    v2 = result.protocol == "v2"
    if v2:  # server time beside client time (docs/V2.md §4)
        for col in ("server TTFT", "server ITL p50", "jitter max"):
            table.add_column(col, justify="right")
    for node in result.nodes:
        calls = [c for c in node.calls if c.token_ns]
        if not calls:
            row = [node.node, "–", "–", "–", "–", "–", "0", "–", ms(node.duration_s)]
            table.add_row(*row, *(["–"] * 3 if v2 else []))
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
            table.add_row(
                node.node if i == 0 else "",
                call.model or "–",
                ms(ttft) + ("*" if i == 0 and node.basis != "tasks" else ""),
                ms(quantile(gaps, 0.5)),
                ms(quantile(gaps, 0.95)),
                ms(max(gaps) if gaps else None),
                str(call.tokens) + ("?" if call.ambiguous else ""),
                ms(call.tpot_s),
                ms(node.duration_s) if i == 0 else "",
                *v2_cells,
            )
    parts: list[Text | Table] = [head, phases, Text(""), table]
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
    delivery = result.delivery
    if delivery is not None and delivery.verdict == "buffered":
        jit = [abs(j) for j in delivery.jitter_s]
        parts.append(
            Text(
                f"  ! the server's token gaps are steady, the received ones are not (|jitter| up"
                f" to {max(jit) * 1000:.1f} ms): delivery is batched or polled on the way",
                style="yellow",
            )
        )
    ratio = result.buffered_gap_ratio()
    if ratio is not None and ratio > 0.5:
        parts.append(
            Text(
                f"  ! {ratio:.0%} of token gaps are under 1 ms: something between us and the"
                " server buffers the stream",
                style="yellow",
            )
        )
    return Group(*parts)
