"""`make image` builds the image the chart runs by default, and `make image-push` the one the
chart runs with `image.registry` set (no container engine here: `make -n` shows the commands)."""

from __future__ import annotations

import os
import re
import subprocess

from . import paths
from .conftest import Render, container, only


def _make_n(*args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    proc = subprocess.run(
        ["make", "--no-print-directory", "-n", *args],
        cwd=paths.REPO, capture_output=True, text=True, check=True, env=env,
    )  # fmt: skip
    return proc.stdout


def test_make_image_tags_the_charts_default_image(render: Render) -> None:
    """`make image` tags exactly the chart's default `image:` (no registry, appVersion tag)."""
    (tag,) = re.findall(r"-t (\S+) \.", _make_n("image"))
    deployment = only(render(), "Deployment")
    assert container(deployment)["image"] == tag


def test_make_image_push_pushes_what_the_chart_pulls_with_a_registry(render: Render) -> None:
    """With IMAGE_REGISTRY, `make image-push` pushes the image the chart pulls with the same
    `image.registry`."""
    out = _make_n("image-push", "IMAGE_REGISTRY=ghcr.io/acme")
    (pushed,) = re.findall(r"^docker push (\S+)$", out, re.M)
    deployment = only(render("--set", "image.registry=ghcr.io/acme"), "Deployment")
    assert container(deployment)["image"] == pushed
