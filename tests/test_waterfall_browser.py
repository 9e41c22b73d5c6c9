"""The SVG waterfall of real probes (`probe --svg`, demo `parallel` and `nested` on real
`langgraph dev`) rendered by a real browser: headless Chromium, installed by
scripts/install-tools.sh, screenshots it and dumps its DOM."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import orjson
import pytest
from PIL import Image

from exporter.core.waterfall_svg import WIDTH_PX

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
