"""The rendered sidecar example: schema-valid, and the same exporter container as standalone."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from . import k8s, paths
from .conftest import Render, by_kind, container, only

# The example's `location` (examples/two-locations.md), for the standalone it is compared with.
SAME_LOCATION = ("--set", "location=sidecar")


@pytest.fixture(scope="module")
def example() -> list[dict[str, Any]]:
    """The manifests in examples/sidecar-deployment.yaml."""
    return [doc for doc in yaml.safe_load_all(paths.SIDECAR_EXAMPLE.read_text()) if doc]


def _server(example: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = [
        d for d in by_kind(example, "Deployment") if d["metadata"]["name"] == "langgraph-server"
    ]
    return deployment


def test_sidecar_example_matches_kubernetes_schemas(example: list[dict[str, Any]]) -> None:
    """Every manifest of the sidecar example validates against the Kubernetes schemas."""
    assert [error for doc in example for error in k8s.manifest_errors(doc)] == []


def test_sidecar_example_runs_the_exporter_beside_the_server(example: list[dict[str, Any]]) -> None:
    """The server Deployment's pod has the server and the exporter as its two containers."""
    names = [c["name"] for c in _server(example)["spec"]["template"]["spec"]["containers"]]
    assert names == ["langgraph-server", "exporter"]


def test_sidecar_security_context_equals_the_standalone_one(
    example: list[dict[str, Any]], render: Render
) -> None:
    """The sidecar exporter container has exactly the standalone Deployment's security context."""
    standalone = container(only(render(), "Deployment"))
    assert container(_server(example))["securityContext"] == standalone["securityContext"]


def test_sidecar_container_equals_the_standalone_container_but_readiness(
    example: list[dict[str, Any]], render: Render
) -> None:
    """Image, args, env, liveness, resources and mounts of the sidecar match the standalone
    container of the same location (the example sets `location: sidecar`)."""
    standalone = container(only(render(*SAME_LOCATION), "Deployment"))
    del standalone["readinessProbe"]
    assert container(_server(example)) == standalone


def test_sidecar_has_no_readiness_probe(example: list[dict[str, Any]]) -> None:
    """The sidecar never gates the server pod's readiness, so it has no readiness probe."""
    assert "readinessProbe" not in container(_server(example))


def test_sidecar_targets_probe_the_server_over_loopback(example: list[dict[str, Any]]) -> None:
    """The example's targets file probes http://127.0.0.1:<serverPort>, bypassing every proxy."""
    config = yaml.safe_load(only(example, "ConfigMap")["data"]["config.yaml"])
    server_port = _server(example)["spec"]["template"]["spec"]["containers"][0]["ports"][0][
        "containerPort"
    ]
    assert [t["url"] for t in config["targets"]] == [f"http://127.0.0.1:{server_port}"]


def test_sidecar_volumes_mount_the_example_configmap(example: list[dict[str, Any]]) -> None:
    """The exporter's config volume is the ConfigMap rendered beside the Deployment."""
    volumes = {v["name"]: v for v in _server(example)["spec"]["template"]["spec"]["volumes"]}
    assert (
        volumes["exporter-config"]["configMap"]["name"]
        == only(example, "ConfigMap")["metadata"]["name"]
    )
