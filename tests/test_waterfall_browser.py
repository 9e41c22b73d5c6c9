"""The SVG waterfall of real probes (`probe --svg`, demo `parallel` and `nested` on real
`langgraph dev`) rendered by a real browser: headless Chromium, installed by
scripts/install-tools.sh, screenshots it and dumps its DOM; and the boxes Chromium lays out for
the phase labels of a crowded axis."""

from __future__ import annotations

import dataclasses
import html
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import orjson
import pytest
from PIL import Image

from exporter.core.waterfall import layout
from exporter.core.waterfall_svg import AXIS_H, HEADER_H, WIDTH_PX, render_svg
from tests.test_waterfall import MS, T0, call, node, result

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM = Path(__file__).resolve().parents[1] / ".tools" / "bin" / "chromium"
SVG_NS = "{http://www.w3.org/2000/svg}"


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess[str]:
    if not CHROMIUM.exists():
        raise RuntimeError(f"{CHROMIUM} missing: run `make tools` (scripts/install-tools.sh)")
    return subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--no-first-run", f"--user-data-dir={profile}", *args],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip


@pytest.mark.parametrize("graph", ["parallel", "nested"])
def test_probe_svg_renders_in_headless_chromium(
    graph: str, langgraph_server: str, tmp_path: Path
) -> None:
    """The browser draws the SVG at its declared size with more than a blank page's colours,
    and every node name of the probe is in the browser's DOM."""
    svg = tmp_path / f"{graph}.svg"
    out = subprocess.run(
        [sys.executable, "-m", "exporter", "probe", "--url", langgraph_server,
         "--assistant", graph, "--svg", str(svg), "--json"],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    result = orjson.loads(out.stdout)
    names = {n["node"] for n in result["nodes"]}
    assert result["outcome"] == "success" and names
    root = ET.fromstring(svg.read_bytes())
    width, height = int(root.get("width", 0)), int(root.get("height", 0))
    assert width == WIDTH_PX and height > 150

    png = tmp_path / f"{graph}.png"
    chromium(f"--window-size={width},{height}", f"--screenshot={png}", svg.as_uri(),
             profile=tmp_path / "profile-shot")  # fmt: skip
    with Image.open(png) as image:
        assert image.size == (width, height), f"screenshot is {image.size}"
        colours = image.convert("RGB").getcolors(maxcolors=1 << 16) or []
    assert len(colours) > 20, f"only {len(colours)} colours: nothing drawn"
    white = max(colours)[0] / (width * height)  # the most common colour: the background
    assert white < 0.97, f"{white:.1%} of the screenshot is one colour"

    dom = chromium("--dump-dom", svg.as_uri(), profile=tmp_path / "profile-dom").stdout
    texts = " ".join(el.text or "" for el in ET.fromstring(dom).iter() if el.text)
    missing = [n for n in names if n not in texts]
    assert not missing, f"node names not in the browser's DOM: {missing}"


#: Inline in an HTML page, the SVG's text elements of the axis band report the box Chromium
#: laid out for them (`getBBox`, in the SVG's own units) into `<pre id=boxes>`.
BOXES_PAGE = """<!doctype html><html><body>{svg}<pre id=boxes></pre><script>
const boxes = [];
for (const t of document.querySelectorAll("svg text")) {{
  const y = Number(t.getAttribute("y"));
  if (y < {y0} || y > {y1}) continue;
  const b = t.getBBox();
  boxes.push([t.lastChild.textContent, b.x, b.y, b.width, b.height]);
}}
document.getElementById("boxes").textContent = JSON.stringify(boxes);
</script></body></html>
"""


def test_phase_labels_of_a_crowded_axis_do_not_overlap_in_chromium(tmp_path: Path) -> None:
    """DNS, connect, TLS, request written and headers within 5 ms of a 1.5 s axis, reasoning
    then the answer and the end within its last 10 ms: the boxes Chromium lays out for the
    phase labels (and the grid's time labels) do not overlap and stay inside the picture."""
    r = result(node("agent", 600, 1499, call("c", 1490, 3, 2, bytes([1, 0, 0]))), end_ms=1500)
    r = dataclasses.replace(
        r, t_dns_ns=T0 + MS // 10, t_connect_ns=T0 + 3 * MS // 10, t_tls_ns=T0 + 4 * MS // 10,
        t_request_ns=T0 + MS // 2, t_headers_ns=T0 + 5 * MS, t_first_event_ns=T0 + 600 * MS,
        t_first_answer_ns=T0 + 1492 * MS,
    )  # fmt: skip
    svg = render_svg(layout(r)).split("?>", 1)[1]
    page = tmp_path / "labels.html"
    page.write_text(BOXES_PAGE.format(svg=svg, y0=HEADER_H, y1=HEADER_H + AXIS_H), "utf-8")
    dom = chromium("--dump-dom", page.as_uri(), profile=tmp_path / "profile-boxes").stdout
    found = re.search(r"<pre id=\"boxes\">(.*?)</pre>", dom, re.S)
    assert found, dom[-2000:]
    boxes = orjson.loads(html.unescape(found[1]))
    labels = " ".join(b[0] for b in boxes)
    for phase in ("DNS", "connect", "TLS", "request written", "headers", "answer token", "end"):
        assert phase in labels, labels
    overlaps = [
        (a[0], b[0])
        for i, a in enumerate(boxes)
        for b in boxes[i + 1 :]
        if a[1] < b[1] + b[3] and b[1] < a[1] + a[3] and a[2] < b[2] + b[4] and b[2] < a[2] + a[4]
    ]
    assert not overlaps, f"label boxes overlap: {overlaps}; boxes {boxes}"
    outside = [b[0] for b in boxes if b[1] < 0 or b[1] + b[3] > WIDTH_PX]
    assert not outside, f"labels outside the picture: {outside}"
