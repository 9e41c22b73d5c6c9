"""The waterfall as a standalone SVG document (`probe --svg`, the daemon's `/-/probes/<id>.svg`).

Same content as the terminal view, plus what only a picture can hold: hover titles (`<title>`)
with exact values on every bar, mark and token tick, the failure drawn where it happened, and
the buffered verdict. Reasoning-only tokens are circles and answer tokens are upright lines, so
shape alone tells them apart; colour only repeats it.

Why plain SVG text and not a library: the document uses six element kinds, and every value that
came from the server (node names, model names, error messages) must be escaped both as text and
inside attributes. Among the SVG writers on PyPI, svgwrite has had no release since 2022, and
drawsvg 2.4 (maintained) escapes text content but writes attribute values as given, so it would
not remove the need for our own escaping. Here every attribute goes through
`xml.sax.saxutils.quoteattr` and every text through `xml.sax.saxutils.escape` in one place
(`_el`), so no label can inject markup.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from xml.sax.saxutils import escape, quoteattr

from exporter.core.waterfall import NO_TOKEN, CallRow, NodeRow, Phase, Waterfall
from exporter.core.words import counted

__all__ = ["WIDTH_PX", "render_svg", "svg_height_px"]

WIDTH_PX = 1000
LABEL_W = 210
RIGHT_W = 130
PLOT_X0 = LABEL_W
PLOT_X1 = WIDTH_PX - RIGHT_W
HEADER_H = 64
AXIS_H = 56
NODE_H = 24
CALL_H = 18
FOOTER_H = 78
LABEL_ROWS = 3  # phase labels: rows above the grid's tick labels
LABEL_ROW_H = 12  # a 10 px label's box (ascent + descent) is about 11.7 px high
LABEL_CHAR_PX = 6.2  # per lower-case letter, digit, space or sign of a 10 px label
LABEL_UPPER_PX = 7.8  # per capital letter
LABEL_GAP_PX = 4
MAX_TICK_TITLES = 400  # per call: beyond this, ticks are drawn without their own hover title

_STYLE = """
text { font-family: DejaVu Sans, Verdana, sans-serif; font-size: 12px; fill: #1d2330; }
.dim { fill: #5b6272; } .small { font-size: 10px; } .head { font-size: 14px; font-weight: bold; }
.bar { fill: #4c7bd9; } .open { fill: #c9d6f2; stroke: #4c7bd9; stroke-dasharray: 4 2; }
.phase { stroke: #8a90a0; stroke-dasharray: 2 3; } .grid { stroke: #e3e6ec; }
.call { stroke: #b8bfcc; stroke-width: 1; } .tok { stroke: #1f8a4c; stroke-width: 1.5; }
.rtok { fill: none; stroke: #9b3fb5; stroke-width: 1.2; }
.first { fill: #e07b00; } .fail { stroke: #d0261b; stroke-width: 3; }
.failtext { fill: #d0261b; } .buffered { fill: #a86400; } .ok { fill: #1f8a4c; }
"""


def _ms(seconds: float | None) -> str:
    return "–" if seconds is None else f"{seconds * 1000:.1f} ms"


def _exact(seconds: float | None) -> str:
    """Exact value for hover titles: nanosecond resolution in milliseconds."""
    return "not seen" if seconds is None else f"{seconds * 1000:.6f} ms"


def _el(tag: str, attrs: dict[str, object], children: str = "", title: str | None = None) -> str:
    """One element; every attribute value is quoted and escaped, the title text escaped."""
    parts = [tag] + [f"{k.replace('_', '-')}={quoteattr(str(v))}" for k, v in attrs.items()]
    inner = (f"<title>{escape(title)}</title>" if title is not None else "") + children
    return f"<{' '.join(parts)}>{inner}</{tag}>" if inner else f"<{' '.join(parts)}/>"


def _text(x: float, y: float, content: str, cls: str = "", **attrs: object) -> str:
    a: dict[str, object] = {"x": f"{x:.1f}", "y": f"{y:.1f}", **attrs}
    if cls:
        a["class"] = cls
    return _el("text", a, escape(content))


def svg_height_px(w: Waterfall) -> int:
    """The document's height for `w` (its width is always `WIDTH_PX`)."""
    rows = sum(NODE_H + CALL_H * len(r.calls) for r in w.rows) or NODE_H
    return HEADER_H + AXIS_H + rows + FOOTER_H


def _step_s(span_s: float) -> float:
    """A 1-2-5 grid step giving 4 to 10 lines over the axis."""
    raw = span_s / 6
    base = 10.0 ** math.floor(math.log10(raw))
    for m in (1.0, 2.0, 5.0):
        if base * m >= raw:
            return base * m
    return base * 10.0


def _title_of_row(r: NodeRow) -> str:
    lines = [
        f"node {r.name}" + (f" (task {r.task_id})" if r.task_id else ""),
        f"start {_exact(r.start_s)}",
        f"end {_exact(r.end_s)}" + ("" if r.end_s is not None else " (never ended)"),
        f"first token {_exact(r.first_token_s)}",
        f"TTFT {_exact(r.ttft_s)} (from {r.basis})",
        f"tokens {r.tokens}",
    ]
    if r.start_s is not None and r.end_s is not None:
        lines.append(f"duration {_exact(r.end_s - r.start_s)}")
    if r.error_type:
        lines.append(f"error {r.error_type}")
    return "\n".join(lines)


def _title_of_call(c: CallRow) -> str:
    reasoning = sum(c.reasoning)
    return "\n".join(
        [
            f"LLM call {c.label} (message {c.msg_id})",
            f"basis {_exact(c.basis_s)}",
            f"first token {_exact(c.token_s[0])}, last {_exact(c.token_s[-1])}",
            f"TTFT {_exact(c.ttft_s)}, answer TTFT {_exact(c.answer_ttft_s)}",
            f"tokens {c.tokens} ({reasoning} reasoning-only)",
            f"ITL p50 {_exact(c.itl_p50_s)}, max {_exact(c.itl_max_s)}",
            f"TPOT {_exact(c.tpot_s)}",
            "completed" if c.completed else "did not finish streaming",
        ]
    )


def render_svg(w: Waterfall) -> str:
    """A complete SVG 1.1 document (UTF-8 text), `WIDTH_PX` wide and `svg_height_px(w)` high."""
    height = svg_height_px(w)
    span = w.span_s
    plot_w = PLOT_X1 - PLOT_X0

    def x(t: float) -> float:
        return PLOT_X0 + max(0.0, min(1.0, t / span)) * plot_w

    rows_y0 = HEADER_H + AXIS_H
    rows_y1 = height - FOOTER_H
    out: list[str] = []
    ok = w.outcome == "success"
    title = f"waterfall of a probe of {w.target} ({w.assistant_id}): {w.outcome}"
    out.append(_el("rect", {"x": 0, "y": 0, "width": WIDTH_PX, "height": height, "fill": "#fff"}))
    # -- header ---------------------------------------------------------------------------
    out.append(_text(12, 22, f"{w.target} · {w.assistant_id}", "head"))
    verdict = "ok" if ok else f"failed: {w.failure.kind if w.failure else ''}"
    out.append(
        _text(WIDTH_PX - 12, 22, verdict, "head " + ("ok" if ok else "failtext"), text_anchor="end")
    )
    a_s = w.distinct_answer_ttft_s
    answer = "" if a_s is None else f" · answer TTFT {_ms(a_s)}"
    out.append(
        _text(
            12,
            42,
            f"run TTFT {_ms(w.ttft_s)}{answer} · total {_ms(w.end_s - w.request_s)}"
            f" · {counted(w.tokens, 'token')} · run {w.run_id or '–'} · trace {w.trace_id or '–'}",
            "dim",
        )
    )
    # -- axis: grid, phases ---------------------------------------------------------------
    step = _step_s(span)
    t = 0.0
    while t <= span + 1e-12:
        gx = x(t)
        out.append(
            _el("line", {"x1": gx, "y1": rows_y0 - 6, "x2": gx, "y2": rows_y1, "class": "grid"})
        )
        out.append(_text(gx, rows_y0 - 10, _ms(t), "small dim", text_anchor="middle"))
        t += step
    titles = {p.key: _phase_title(w, p) for p in w.phases}
    for label_x, row, phases in _phase_labels(w.phases, x):
        label_y = HEADER_H + 10 + row * LABEL_ROW_H
        words = " · ".join(p.label for p in phases)
        merged = "\n".join(titles[p.key] for p in phases) if len(phases) > 1 else None
        label = _el(
            "text", {"x": f"{label_x:.1f}", "y": f"{label_y:.1f}", "class": "small dim"},
            escape(words), merged,
        )  # fmt: skip
        for i, p in enumerate(phases):
            px = x(p.t_s)
            line = _el("line", {"x1": px, "y1": label_y + 2, "x2": px, "y2": rows_y1,
                                "class": "phase"})  # fmt: skip
            # A joined label sits in the group of the first phase it names.
            body = line + (label if i == 0 else "")
            out.append(_el("g", {"class": "phase-mark", "data-phase": p.key}, body, titles[p.key]))
    # -- rows -----------------------------------------------------------------------------
    y = rows_y0
    if not w.rows:
        out.append(_text(12, y + 16, "(no node ran)", "dim"))
    for index, r in enumerate(w.rows):
        out.append(_node_row(w, index, r, y, x))
        y += NODE_H
        for c in r.calls:
            out.append(_call_row(r, c, y, x))
            y += CALL_H
    # -- failure where it happened ----------------------------------------------------------
    if w.failure is not None:
        f = w.failure
        fy = rows_y0 + 12
        if f.row is not None:
            fy = rows_y0 + sum(NODE_H + CALL_H * len(r.calls) for r in w.rows[: f.row]) + 12
        fx = x(f.t_s)
        status = f" HTTP {f.http_status}" if f.http_status else ""
        ftitle = (
            f"failure {f.kind}{status} in {f.phase or 'the run'} at {_exact(f.t_s)}"
            + (f" on {w.rows[f.row].name}" if f.row is not None else "")
            + (f" ({f.error_type})" if f.error_type else "")
            + f": {f.message}"
        )
        d = f"M{fx - 6},{fy - 6} L{fx + 6},{fy + 6} M{fx - 6},{fy + 6} L{fx + 6},{fy - 6}"
        cross = _el("path", {"d": d, "class": "fail"})
        out.append(_el("g", {"class": "failure"}, cross, ftitle))
        out.append(_text(12, rows_y1 + 20, ftitle[:160], "failtext"))
    # -- footer: buffered verdict, legend -------------------------------------------------
    by = rows_y1 + 40
    if w.buffered:
        verdict_text, verdict_class = f"buffered: {w.buffered_why}", "buffered"
        verdict_title = (
            "something between the server and this probe held tokens back and sent them"
            f" in bursts: {w.buffered_why}"
        )
    elif w.tokens == 0:
        verdict_text, verdict_class = NO_TOKEN, "dim"
        verdict_title = "buffered verdict: none (README \u201cHow it measures\u201d)"
    else:
        verdict_text, verdict_class = "not buffered: tokens arrived spread out", "dim"
        verdict_title = "buffered verdict: no (README \u201cHow it measures\u201d)"
    out.append(
        _el("g", {"class": "verdict"}, _text(12, by, verdict_text, verdict_class), verdict_title)
    )
    out.append(_legend(rows_y1 + 62))
    body = "\n".join(out)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH_PX}" height="{height}"'
        f' viewBox="0 0 {WIDTH_PX} {height}">\n'
        f"<title>{escape(title)}</title>\n<style>{_STYLE}</style>\n{body}\n</svg>\n"
    )


def _phase_title(w: Waterfall, p: Phase) -> str:
    after = p.t_s - w.request_s
    return f"{p.label}: {_exact(p.t_s)} from the probe's start" + (
        f", {_exact(after)} after the request" if after >= 0 else ""
    )


def _label_px(text: str) -> float:
    """A generous width (px) of `text` at the labels' 10 px: wider than DejaVu Sans or Verdana
    draw it, so labels laid out by it never touch."""
    return sum(LABEL_UPPER_PX if ch.isupper() else LABEL_CHAR_PX for ch in text)


def _phase_labels(
    phases: tuple[Phase, ...], x: Callable[[float], float]
) -> list[tuple[float, int, list[Phase]]]:
    """(left x, row, phases) of each phase label, laid out so that no two overlap: in time
    order, a label goes on the first of `LABEL_ROWS` rows where it clears the label before it
    there; with no row free it joins the label placed just before it (`TLS · request
    written`). A row whose labels would pass the picture's right edge is pushed left."""
    labels: list[tuple[float, int, list[Phase]]] = []
    row_end = [-math.inf] * LABEL_ROWS  # right edge (px) of the last label on each row
    for p in sorted(phases, key=lambda p: p.t_s):
        left = x(p.t_s) + 2
        row = next((r for r in range(LABEL_ROWS) if row_end[r] + LABEL_GAP_PX <= left), None)
        if row is None:
            left, row, joined = labels[-1]
            joined.append(p)
        else:
            labels.append((left, row, [p]))
        row_end[row] = left + _label_px(" · ".join(q.label for q in labels[-1][2]))
    for row in range(LABEL_ROWS):
        limit: float = WIDTH_PX - LABEL_GAP_PX
        for i in range(len(labels) - 1, -1, -1):
            left, r, group = labels[i]
            if r == row:
                width = _label_px(" · ".join(q.label for q in group))
                left = min(left, limit - width)
                labels[i] = (left, r, group)
                limit = left - LABEL_GAP_PX
    return labels


def _node_row(w: Waterfall, index: int, r: NodeRow, y: float, x: Callable[[float], float]) -> str:
    label = r.label if len(r.label) <= 28 - 2 * r.depth else r.label[: 27 - 2 * r.depth] + "…"
    parts = [_text(12 + 14 * r.depth, y + 16, label, "")]
    start = r.start_s if r.start_s is not None else r.first_token_s
    if start is not None:
        end = r.end_s if r.end_s is not None else w.end_s
        x0, x1 = x(start), x(end)
        parts.append(
            _el(
                "rect",
                {
                    "x": f"{x0:.2f}",
                    "y": y + 5,
                    "width": f"{max(1.0, x1 - x0):.2f}",
                    "height": NODE_H - 10,
                    "rx": 2,
                    "class": "bar" if r.end_s is not None else "open",
                },
            )
        )
    if r.first_token_s is not None:
        fx = x(r.first_token_s)
        parts.append(
            _el(
                "path",
                {"d": f"M{fx - 5:.2f},{y + 1} L{fx + 5:.2f},{y + 1} L{fx:.2f},{y + 10} Z",
                 "class": "first"},
                title=f"{r.name}: first token at {_exact(r.first_token_s)},"
                f" TTFT {_exact(r.ttft_s)}",
            )
        )  # fmt: skip
    parts.append(_text(PLOT_X1 + 8, y + 16, f"TTFT {_ms(r.ttft_s)}", "small dim"))
    return _el("g", {"class": "node", "data-node": r.name}, "".join(parts), _title_of_row(r))


def _call_row(r: NodeRow, c: CallRow, y: float, x: Callable[[float], float]) -> str:
    mid = y + CALL_H / 2
    parts = [
        _text(26 + 14 * r.depth, mid + 4, c.label[:30], "small dim"),
        _el("line", {"x1": f"{x(c.start_s):.2f}", "y1": mid, "x2": f"{x(c.end_s):.2f}",
                     "y2": mid, "class": "call"}),
    ]  # fmt: skip
    prev: float | None = None
    for i, (t, reasoning) in enumerate(zip(c.token_s, c.reasoning, strict=False)):
        tx = x(t)
        gap = "" if prev is None else f" (+{(t - prev) * 1000:.3f} ms)"
        title = (
            f"{'reasoning ' if reasoning else ''}token {i + 1} at {_exact(t)}{gap}"
            if i < MAX_TICK_TITLES
            else None
        )
        if reasoning:
            parts.append(
                _el("circle", {"cx": f"{tx:.2f}", "cy": mid, "r": 2.5, "class": "rtok"},
                    title=title)
            )  # fmt: skip
        else:
            parts.append(
                _el("line", {"x1": f"{tx:.2f}", "y1": mid - 6, "x2": f"{tx:.2f}",
                             "y2": mid + 6, "class": "tok"}, title=title)
            )  # fmt: skip
        prev = t
    parts.append(
        _text(PLOT_X1 + 8, mid + 4, f"{c.tokens} tok · p50 {_ms(c.itl_p50_s)}", "small dim")
    )
    return _el("g", {"class": "llm-call", "data-call": c.msg_id}, "".join(parts), _title_of_call(c))


def _legend(y: float) -> str:
    parts = [
        _el("rect", {"x": 12, "y": y - 9, "width": 24, "height": 10, "class": "bar"}),
        _text(40, y, "node: tasks start → end", "small dim"),
        _el("path", {"d": f"M185,{y - 9} L195,{y - 9} L190,{y} Z", "class": "first"}),
        _text(200, y, "first token", "small dim"),
        _el("line", {"x1": 280, "y1": y - 10, "x2": 280, "y2": y + 2, "class": "tok"}),
        _text(286, y, "answer token", "small dim"),
        _el("circle", {"cx": 380, "cy": y - 4, "r": 2.5, "class": "rtok"}),
        _text(386, y, "reasoning-only token", "small dim"),
        _el("path", {"d": f"M520,{y - 9} L530,{y + 1} M520,{y + 1} L530,{y - 9}", "class": "fail"}),
        _text(536, y, "failure", "small dim"),
        _text(600, y, "dashed lines: phases (hover for exact times)", "small dim"),
    ]
    return _el("g", {"class": "legend"}, "".join(parts))
