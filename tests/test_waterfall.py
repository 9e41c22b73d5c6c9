"""The waterfall of one probe: layout, terminal text and SVG, from hand-built results (pure)."""

from __future__ import annotations

import dataclasses
import io
import xml.etree.ElementTree as ET

from rich.console import Console

from exporter.core.errors import FailureKind
from exporter.core.result import CallTiming, Failure, NodeExecution, ProbeResult
from exporter.core.waterfall import Waterfall, layout
from exporter.core.waterfall_svg import WIDTH_PX, render_svg, svg_height_px
from exporter.core.waterfall_text import render_text

MS = 1_000_000
T0 = 10_000 * MS
SVG = "{http://www.w3.org/2000/svg}"
EVIL = ("<script>alert(1)</script>", "\"&'")


def call(msg: str, first_ms: int, n: int, gap_ms: int, reasoning: bytes = b"") -> CallTiming:
    return CallTiming(
        msg_id=msg, model=f"model-{msg}", provider="p",
        token_ns=tuple(T0 + (first_ms + i * gap_ms) * MS for i in range(n)),
        basis_ns=None, output_tokens=None, completed=True, reasoning=reasoning,
    )  # fmt: skip


def node(name: str, start_ms: int, end_ms: int | None, *calls: CallTiming, err: str | None = None):
    return NodeExecution(
        node=name, task_id=f"task-{name}-{start_ms}", start_ns=T0 + start_ms * MS,
        end_ns=None if end_ms is None else T0 + end_ms * MS, error_type=err,
        calls=calls, basis="tasks", basis_ns=T0 + start_ms * MS,
    )  # fmt: skip


def result(*nodes: NodeExecution, failure: Failure | None = None, end_ms: int = 500) -> ProbeResult:
    firsts = [n.first_token_ns for n in nodes if n.first_token_ns]
    return ProbeResult(
        target="t", url="http://x", assistant_id="a", mode="stateless",
        t_request_ns=T0 + 5 * MS, wall_request_ns=1, t_end_ns=T0 + end_ms * MS, failure=failure,
        t_start_ns=T0, t_connect_ns=T0 + 2 * MS, t_headers_ns=T0 + 20 * MS,
        t_first_event_ns=T0 + 30 * MS, t_first_token_ns=min(firsts) if firsts else None,
        nodes=nodes, trace_id="ab" * 16,
    )  # fmt: skip


def test_subgraph_nodes_follow_their_running_parent_indented() -> None:
    """A `parent/child` execution sits right under the parent execution running when it started,
    one level deeper, even when another node started between them."""
    r = result(
        node("research", 100, 400),
        node("other", 150, 200, call("o", 160, 3, 10)),
        node("research/inner", 180, 390, call("i", 200, 3, 10)),
    )
    rows = layout(r).rows
    assert [(row.name, row.depth) for row in rows] == [
        ("research", 0), ("research/inner", 1), ("other", 0),
    ]  # fmt: skip


def test_times_count_from_probe_start_and_phases_are_on_the_axis() -> None:
    """Phase marks sit at their stamp minus `t_start_ns` (connect 2 ms, request 5 ms, …)."""
    w = layout(result(node("n", 40, 300, call("c", 50, 2, 10))))
    at = {p.key: round(p.t_s * 1000, 3) for p in w.phases}
    assert at == {"connect": 2.0, "request_written": 5.0, "headers": 20.0, "first_event": 30.0,
                  "first_token": 50.0, "end": 500.0}  # fmt: skip
    assert w.rows[0].calls[0].token_s == (0.05, 0.06)


def test_terminal_view_fits_80_columns_and_tells_reasoning_by_shape() -> None:
    """At 80 columns no line is wider; reasoning ticks use `:`, answer ticks `|` (no colour)."""
    flags = bytes([1, 1, 1, 0, 0, 0])
    w = layout(result(node("thinker", 10, 480, call("c", 20, 6, 70, flags))))
    console = Console(width=80, no_color=True, record=True, file=io.StringIO())
    console.print(render_text(w, width=80))
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= 80, "a line is wider than 80 columns"
    (ticks,) = [line for line in lines if "model-c" in line]
    assert ticks.count(":") == 3 and ticks.count("|") == 3, ticks


def test_terminal_axis_keeps_every_phase_mark_when_they_crowd_near_zero() -> None:
    """DNS, connect, TLS, request written and headers within 5 ms of a 1.5 s axis: each mark
    is on the axis once, none covered or dropped, in time order (`DCTWH`)."""
    r = dataclasses.replace(
        result(node("n", 600, 1400, call("c", 800, 3, 60)), end_ms=1500),
        t_dns_ns=T0 + MS // 10, t_connect_ns=T0 + 3 * MS // 10, t_tls_ns=T0 + 4 * MS // 10,
        t_request_ns=T0 + MS // 2, t_headers_ns=T0 + 5 * MS, t_first_event_ns=T0 + 600 * MS,
    )  # fmt: skip
    lines = render_text(layout(r), width=80).plain.splitlines()
    axis = lines[2 : next(i for i, line in enumerate(lines) if line.startswith("n "))]
    marks = "".join(ch for line in axis for ch in line if ch != " ")
    assert marks == "DCTWHEFX", axis


def test_failure_is_marked_on_the_node_that_was_running() -> None:
    """A stream cut inside a node puts ✘ on that node's row, at the end of the probe."""
    failure = Failure(FailureKind.INCOMPLETE, "stream ended inside an event", phase="stream")
    w = layout(result(node("ok", 10, 100), node("cut", 120, None), failure=failure, end_ms=300))
    assert w.failure is not None and w.failure.row == 1 and w.failure.t_s == 0.3
    text = render_text(w, width=80).plain
    (row,) = [line for line in text.splitlines() if line.startswith("cut")]
    assert "✘" in row and "incomplete in stream at 300.0 ms on cut" in text


def test_svg_escapes_every_server_string() -> None:
    """Node and model names with markup stay text: the SVG parses, holds no <script> element,
    and the names come back verbatim from text and attributes."""
    r = result(
        node(EVIL[0], 10, 200, call(EVIL[1], 20, 3, 10)),
        node(EVIL[1], 210, 300),
        failure=Failure(FailureKind.RUN_ERROR, "</text><script>x</script>", phase="stream"),
    )
    svg = render_svg(layout(r))
    root = ET.fromstring(svg.encode())
    assert not list(root.iter(f"{SVG}script")) and not list(root.iter("script"))
    texts = "".join(t.text or "" for t in root.iter(f"{SVG}text"))
    assert EVIL[0] in texts and EVIL[1] in texts
    nodes = {g.get("data-node") for g in root.iter(f"{SVG}g") if g.get("class") == "node"}
    assert nodes == set(EVIL)
    titles = "".join(t.text or "" for t in root.iter(f"{SVG}title"))
    assert "</text><script>x</script>" in titles


def test_svg_size_titles_failure_and_verdict() -> None:
    """The document declares WIDTH_PX × svg_height_px, every node has an exact hover title,
    and the failure cross and the buffered verdict are drawn."""
    failure = Failure(FailureKind.RUN_ERROR, "boom", error_type="ValueError", phase="stream")
    w = layout(result(node("a", 10, 200, call("c", 20, 4, 10)), node("b", 210, 250, err="ValueError"),
                      failure=failure))  # fmt: skip
    root = ET.fromstring(render_svg(w).encode())
    assert (root.get("width"), root.get("height")) == (str(WIDTH_PX), str(svg_height_px(w)))
    node_titles = [
        g.find(f"{SVG}title").text for g in root.iter(f"{SVG}g") if g.get("class") == "node"
    ]  # type: ignore[union-attr]
    assert "start 10.000000 ms" in node_titles[0] and "duration 190.000000 ms" in node_titles[0]
    (cross,) = [g for g in root.iter(f"{SVG}g") if g.get("class") == "failure"]
    assert "run_error in stream at 500.000000 ms on b (ValueError): boom" in cross[0].text  # type: ignore[operator]
    verdict = [g for g in root.iter(f"{SVG}g") if g.get("class") == "verdict"]
    assert "not buffered" in "".join(t.text or "" for t in verdict[0].iter(f"{SVG}text"))


def test_reasoning_ticks_are_circles_answer_ticks_are_lines() -> None:
    """Shape alone tells reasoning-only tokens (circle) from answer tokens (line)."""
    w = layout(result(node("n", 10, 200, call("c", 20, 5, 10, bytes([1, 1, 0, 0, 0])))))
    root = ET.fromstring(render_svg(w).encode())
    (g,) = [g for g in root.iter(f"{SVG}g") if g.get("class") == "llm-call"]
    assert len(g.findall(f"{SVG}circle")) == 2
    assert len([e for e in g.findall(f"{SVG}line") if e.get("class") == "tok"]) == 3


def test_waterfall_survives_json() -> None:
    """`from_dict(to_dict())` gives the same waterfall (what `watch` draws from the daemon)."""
    failure = Failure(FailureKind.INCOMPLETE, "cut", phase="stream")
    w = layout(result(node("a", 10, 200, call("c", 20, 4, 10, bytes([1, 0, 0, 0]))),
                      node("b", 210, None), failure=failure))  # fmt: skip
    assert Waterfall.from_dict(w.to_dict()) == w


def test_the_legend_says_what_a_crowded_column_means() -> None:
    """`#` marks a column that got several tokens, bunched or not: the legend must not call it
    a burst (a stream judged not buffered had `# burst` beside it)."""
    w = layout(result(node("agent", 0, 400, call("m", 100, 30, 2))))
    text = render_text(w).plain
    legend = text.splitlines()[-1]
    assert "# 2+ tokens" in legend and "burst" not in legend, legend
    assert len(legend) <= 80
