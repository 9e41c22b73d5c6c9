"""The waterfall in a terminal (`probe --waterfall`, `watch --target`): characters first, colour
only on top, so it reads the same piped, in a log, or to a colour-blind reader.

    demo-nested · nested · ok · TTFT 212.4 ms · answer 212.4 ms · total 544.0 ms · 31 tokens
                      0 ms                                                   544.0 ms
                      C W H E     F                                                 X
    research          ════════════▼═══════════════════════════════════════         512.0 ms
      inner_agent       ═════════▼════════════════════════════════════════         510.3 ms
        fake-stream-1   ·········| | | | | | | | | | | | | | | | | | | |          20 tok

A node row is `═` from its `tasks` start to its end (`┄` while it never ended), `▼` at its first
token, `✘` where the probe failed; its right column is its TTFT. A call row is `·` from its basis
to its first token, then one mark per column that got tokens: `|` one token, `#` several (a
burst), `:` and `%` the same for reasoning-only tokens. Its right column is its token count.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text

from exporter.core.waterfall import NO_TOKEN, CallRow, NodeRow, Waterfall
from exporter.core.words import counted

__all__ = ["render_text"]

LABEL_MAX = 24
RIGHT = 10


def _ms(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds * 1000:.1f} ms"


def render_text(w: Waterfall, width: int = 80) -> Text:
    """The waterfall as one rich `Text`, `width` columns wide (at least 40)."""
    width = max(40, width)
    labels = [("  " * r.depth + r.label, r) for r in w.rows]
    label_w = min(LABEL_MAX, max([len(s) for s, _ in labels] + [10]) + 4)
    plot_w = width - label_w - RIGHT - 1
    span = w.span_s

    def col(t: float) -> int:
        return max(0, min(plot_w - 1, round(t / span * (plot_w - 1))))

    out = Text(no_wrap=False)
    verdict = "ok" if w.outcome == "success" else f"FAIL {w.failure.kind if w.failure else ''}"
    out.append(f"{w.target} · {w.assistant_id} · ")
    out.append(verdict, style="green" if w.outcome == "success" else "bold red")
    a_s = w.distinct_answer_ttft_s
    answer = "" if a_s is None else f" · answer {_ms(a_s)}"
    out.append(
        f" · TTFT {_ms(w.ttft_s)}{answer} · total {_ms(w.end_s - w.request_s)}"
        f" · {counted(w.tokens, 'token')}\n"
    )
    right_label = _ms(span)
    out.append(" " * label_w + "0 ms".ljust(plot_w - len(right_label)) + right_label + "\n", "dim")
    for line in _axis(w, plot_w, col):
        out.append(" " * label_w + line.rstrip() + "\n", "dim")
    for i, (label, row) in enumerate(labels):
        out.append(_fit(label, label_w), "bold")
        out.append_text(_node_bar(w, i, row, plot_w, col))
        out.append(_ms(row.ttft_s).rjust(RIGHT) + "\n")
        for call in row.calls:
            out.append(_fit("  " * (row.depth + 1) + call.label, label_w), "dim")
            out.append_text(_call_ticks(call, plot_w, col))
            out.append(f"{call.tokens} tok".rjust(RIGHT) + "\n")
    if not w.rows:
        out.append(_fit("(no node ran)", label_w) + "\n", "dim")
    out.append(_phase_legend(w) + "\n", "dim")
    if w.failure is not None:
        f = w.failure
        where = f" on {w.rows[f.row].name}" if f.row is not None else ""
        status = f" HTTP {f.http_status}" if f.http_status else ""
        out.append(
            f"✘ {f.kind}{status} in {f.phase or 'the run'} at {_ms(f.t_s)}{where}: {f.message}\n",
            "red",
        )
    if w.buffered:
        out.append(f"! buffered: {w.buffered_why}\n", "yellow")
    elif w.tokens == 0:
        out.append(f"{NO_TOKEN}\n", "dim")
    else:
        out.append("not buffered: tokens arrived spread out\n", "dim")
    out.append(
        "═ node  ▼ first token  | token  # 2+ tokens  : reasoning  % 2+ reasoning",
        "dim",
    )
    return out


def _fit(label: str, width: int) -> str:
    if len(label) > width - 1:
        label = label[: width - 2] + "…"
    return label.ljust(width)


def _axis(w: Waterfall, plot_w: int, col: Callable[[float], int]) -> list[str]:
    """One line of phase marks, none lost or covered: marks that fall in the same column are
    written side by side in time order (`DCTW` at 0 ms), pulled left at the axis' end; the
    legend under the picture gives each one's time."""
    marks = sorted(w.phases, key=lambda p: p.t_s)[:plot_w]
    cols: list[int] = []
    for p in marks:
        cols.append(max(col(p.t_s), cols[-1] + 1) if cols else col(p.t_s))
    limit = plot_w - 1
    for i in range(len(cols) - 1, -1, -1):  # a run pushed past the end moves left as a whole
        cols[i] = min(cols[i], limit)
        limit = cols[i] - 1
    line = [" "] * plot_w
    for p, c in zip(marks, cols, strict=True):
        line[c] = p.mark
    text = "".join(line)
    return [text] if text.strip() else []


def _node_bar(
    w: Waterfall, index: int, row: NodeRow, plot_w: int, col: Callable[[float], int]
) -> Text:
    cells = [" "] * plot_w
    start = row.start_s if row.start_s is not None else row.first_token_s
    end = row.end_s
    if start is not None:
        stop = col(end if end is not None else w.end_s)
        for c in range(col(start), stop + 1):
            cells[c] = "═" if end is not None else "┄"
    if row.first_token_s is not None:
        cells[col(row.first_token_s)] = "▼"
    failed = w.failure is not None and w.failure.row == index
    if failed and w.failure is not None:
        cells[col(w.failure.t_s)] = "✘"
    text = Text()
    for ch in cells:
        text.append(ch, "red" if ch == "✘" else "cyan" if ch in "═┄▼" else "")
    return text


def _call_ticks(call: CallRow, plot_w: int, col: Callable[[float], int]) -> Text:
    cells = [" "] * plot_w
    if call.token_s:
        for c in range(col(call.start_s), col(call.token_s[0])):
            cells[c] = "·"
    counts: dict[int, list[bool]] = {}
    for t, r in zip(call.token_s, call.reasoning, strict=False):
        counts.setdefault(col(t), []).append(r)
    for c, flags in counts.items():
        if all(flags):
            cells[c] = ":" if len(flags) == 1 else "%"
        else:
            cells[c] = "|" if len(flags) == 1 else "#"
    text = Text()
    for ch in cells:
        text.append(ch, "magenta" if ch in ":%" else "green" if ch in "|#" else "dim")
    return text


def _phase_legend(w: Waterfall) -> str:
    return " · ".join(f"{p.mark} {p.label} {_ms(p.t_s)}" for p in w.phases) + " (from start)"
