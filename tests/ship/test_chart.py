"""The Helm chart: lint, schema-valid output, secure defaults, config wiring, optional objects."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from . import k8s, paths
from .conftest import Render, by_kind, container, only, run

VALUES_FILES = [pytest.param(path, id=path.name) for path in paths.CHART_CI_VALUES]
EXAMPLE_FILES = [pytest.param(path, id=f"examples/{path.name}") for path in paths.EXAMPLE_VALUES]


def test_ci_values_files_exist() -> None:
    """The chart ships ci/*.yaml values files for lint and chart-testing."""
    assert len(paths.CHART_CI_VALUES) >= 3


def test_helm_lint_passes_with_default_values(helm: Path) -> None:
    """`helm lint --strict` accepts the chart with its default values."""
    proc = run([helm, "lint", "--strict", paths.CHART])
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_examples_values_files_exist() -> None:
    """The two-locations example's values files are among the checked examples."""
    assert {paths.SIDECAR_VALUES, paths.INGRESS_VALUES} <= set(paths.EXAMPLE_VALUES)


@pytest.mark.parametrize("values", [*VALUES_FILES, *EXAMPLE_FILES])
def test_helm_lint_passes_with_ci_values(helm: Path, values: Path) -> None:
    """`helm lint --strict` accepts the chart with each ci/ and examples/ values file."""
    proc = run([helm, "lint", "--strict", paths.CHART, "-f", values])
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "values", [pytest.param(None, id="defaults"), *VALUES_FILES, *EXAMPLE_FILES]
)
def test_rendered_manifests_match_kubernetes_schemas(render: Render, values: Path | None) -> None:
    """Every rendered manifest validates (kubernetes-validate strict; CRDs by required fields)."""
    docs = render(*(["-f", str(values)] if values else []))
    errors = [error for doc in docs for error in k8s.manifest_errors(doc)]
    assert errors == []


def test_full_values_render_both_crd_kinds(render: Render) -> None:
    """ci/full-values.yaml turns on the ServiceMonitor and the PrometheusRule, so both are checked."""
    kinds = {doc["kind"] for doc in render("-f", str(paths.CHART / "ci" / "full-values.yaml"))}
    assert kinds >= k8s.CRD_KINDS


def test_servicemonitor_check_catches_a_missing_selector(render: Render) -> None:
    """The hand-written ServiceMonitor check reports a missing spec.selector."""
    monitor = only(render("--set", "serviceMonitor.enabled=true"), "ServiceMonitor")
    del monitor["spec"]["selector"]
    assert "spec.selector is required" in k8s.manifest_errors(monitor)


def test_prometheusrule_check_catches_a_rule_without_expr(render: Render) -> None:
    """The hand-written PrometheusRule check reports a rule without expr."""
    rule = only(render("--set", "prometheusRule.enabled=true"), "PrometheusRule")
    del rule["spec"]["groups"][0]["rules"][0]["expr"]
    assert "spec.groups[0].rules[0].expr is required" in k8s.manifest_errors(rule)


def test_default_render_has_the_standalone_objects(render: Render) -> None:
    """Defaults render a Deployment, Service, ServiceAccount and ConfigMap and no optional object."""
    kinds = sorted(doc["kind"] for doc in render())
    assert kinds == ["ConfigMap", "Deployment", "Service", "ServiceAccount"]


def test_container_security_context_is_locked_down(render: Render) -> None:
    """The exporter runs as uid 1000, non-root, read-only root fs, no privilege escalation, no caps."""
    ctx = container(only(render(), "Deployment"))["securityContext"]
    assert ctx["runAsNonRoot"] is True
    assert ctx["runAsUser"] == 1000
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}


def test_pod_security_context_is_non_root_with_seccomp(render: Render) -> None:
    """The pod runs non-root with the runtime's default seccomp profile."""
    ctx = only(render(), "Deployment")["spec"]["template"]["spec"]["securityContext"]
    assert ctx["runAsNonRoot"] is True
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}


def test_container_has_resource_requests_and_limits(render: Render) -> None:
    """CPU and memory requests and limits are set by default."""
    resources = container(only(render(), "Deployment"))["resources"]
    assert set(resources["requests"]) == {"cpu", "memory"}
    assert set(resources["limits"]) == {"cpu", "memory"}


def test_tmp_is_the_only_writable_mount(render: Render) -> None:
    """With a read-only root fs, /tmp is an emptyDir and the config is mounted read-only."""
    deployment = only(render(), "Deployment")
    mounts = {m["mountPath"]: m for m in container(deployment)["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
    assert mounts["/etc/langgraph-stream-exporter"]["readOnly"] is True


def test_liveness_and_readiness_probe_healthz_and_readyz(render: Render) -> None:
    """Liveness hits /healthz and readiness /readyz on the metrics port."""
    exporter = container(only(render(), "Deployment"))
    assert exporter["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert exporter["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert exporter["ports"] == [{"name": "http", "containerPort": 9465, "protocol": "TCP"}]


def test_container_reads_the_config_where_the_configmap_is_mounted(render: Render) -> None:
    """The run args point at config.yaml inside the ConfigMap's mount path, on port 9465."""
    exporter = container(only(render(), "Deployment"))
    assert exporter["args"] == [
        "run",
        "--config",
        "/etc/langgraph-stream-exporter/config.yaml",
        "--listen",
        "0.0.0.0:9465",
    ]


def test_image_cmd_uses_the_same_config_path(render: Render) -> None:
    """The Dockerfile's default CMD reads the config path the chart mounts."""
    exporter = container(only(render(), "Deployment"))
    cmd = re.search(r"^CMD (.*)$", paths.DOCKERFILE.read_text(), re.MULTILINE)
    assert cmd is not None
    assert yaml.safe_load(cmd.group(1)) == exporter["args"][:3]


def test_configmap_holds_the_targets_from_values(render: Render) -> None:
    """config.yaml in the ConfigMap is exactly `.Values.config`."""
    values = yaml.safe_load((paths.CHART / "values.yaml").read_text())
    configmap = only(render(), "ConfigMap")
    assert yaml.safe_load(configmap["data"]["config.yaml"]) == values["config"]


def test_config_checksum_changes_when_the_config_changes(render: Render) -> None:
    """The checksum/config pod annotation changes with the targets, so pods roll."""

    def checksum(*args: str) -> str:
        deployment = only(render(*args), "Deployment")
        value: str = deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
        return value

    assert checksum() != checksum("--set", "config.defaults.interval=45s")


def test_api_key_comes_from_the_existing_secret(render: Render) -> None:
    """apiKey.existingSecret becomes a secretKeyRef env var; no key value is in any manifest."""
    docs = render("--set", "apiKey.existingSecret=lg-key", "--set", "apiKey.key=token")
    env = {e["name"]: e for e in container(only(docs, "Deployment"))["env"]}
    assert env["LANGGRAPH_API_KEY"]["valueFrom"] == {
        "secretKeyRef": {"name": "lg-key", "key": "token"}
    }
    assert by_kind(docs, "Secret") == []


def test_no_api_key_env_without_a_secret(render: Render) -> None:
    """Without apiKey.existingSecret there is no API key variable."""
    env = {e["name"] for e in container(only(render(), "Deployment"))["env"]}
    assert "LANGGRAPH_API_KEY" not in env


def test_service_selects_the_pods_on_the_metrics_port(render: Render) -> None:
    """The Service's selector matches the pod labels and targets the named metrics port."""
    docs = render()
    service, deployment = only(docs, "Service"), only(docs, "Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_selector_labels_exclude_the_chart_version(render: Render) -> None:
    """helm.sh/chart is not in the Deployment's immutable selector."""
    selector = only(render(), "Deployment")["spec"]["selector"]["matchLabels"]
    assert "helm.sh/chart" not in selector


def test_servicemonitor_selects_the_service(render: Render) -> None:
    """The ServiceMonitor's selector matches the Service labels and scrapes its port by name."""
    docs = render("--set", "serviceMonitor.enabled=true")
    monitor, service = only(docs, "ServiceMonitor"), only(docs, "Service")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert monitor["spec"]["endpoints"][0]["port"] == service["spec"]["ports"][0]["name"]


def test_dashboard_configmap_has_the_grafana_label_and_the_dashboard(render: Render) -> None:
    """The dashboard ConfigMap carries grafana_dashboard: "1" and the dashboard JSON."""
    docs = render("--set", "grafanaDashboard.enabled=true")
    (configmap,) = [
        d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-dashboard")
    ]
    assert configmap["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert yaml.safe_load(configmap["data"]["langgraph-stream-exporter.json"]) == yaml.safe_load(
        paths.DASHBOARD.read_text()
    )


def test_prometheusrule_renders_the_alerts_file(render: Render) -> None:
    """The PrometheusRule's groups are those of alerts/langgraph-stream-exporter.rules.yaml."""
    rule = only(render("--set", "prometheusRule.enabled=true"), "PrometheusRule")
    assert rule["spec"] == yaml.safe_load(paths.RULES.read_text())


def test_sidecar_mode_renders_only_the_configmap(render: Render) -> None:
    """mode=sidecar renders the targets ConfigMap and nothing that would run a second exporter."""
    docs = render("-f", str(paths.CHART / "ci" / "sidecar-values.yaml"))
    assert [doc["kind"] for doc in docs] == ["ConfigMap"]


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        pytest.param(
            "prometheusRule.ttftSLO.thresholdSeconds=3", "must be one of", id="slo-not-a-bucket"
        ),
        pytest.param("mode=daemonset", "must be one of", id="unknown-mode"),
        pytest.param("config.targets[0].api_key=secret", "config.targets.0", id="key-in-configmap"),
        pytest.param("replicaCount=-1", "replicaCount", id="negative-replicas"),
        pytest.param("serviceMonitr.enabled=true", "serviceMonitr", id="typo-top-level"),
        pytest.param("web.config.tsl=true", "tsl", id="typo-web-config"),
        pytest.param("serviceMonitor.scheme=ftp", "must be one of", id="scrape-scheme"),
    ],
)
def test_values_schema_rejects_bad_values(helm: Path, setting: str, message: str) -> None:
    """values.schema.json rejects an SLO threshold off the buckets, typos and secrets in targets."""
    proc = run([helm, "template", "x", paths.CHART, "--set", setting])
    assert proc.returncode != 0
    assert message in proc.stderr


# Values documented as one row (Kubernetes objects or free-form maps), not key by key.
OPAQUE_VALUES = frozenset(
    {
        "config",
        "env",
        "livenessProbe",
        "readinessProbe",
        "resources",
        "podSecurityContext",
        "securityContext",
    }
)


def _leaf_keys(values: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value and path not in OPAQUE_VALUES:
            keys += _leaf_keys(value, path + ".")
        else:
            keys.append(path)
    return keys


def test_readme_documents_every_value() -> None:
    """Every leaf key of values.yaml has a row in the README's values table."""
    values = yaml.safe_load((paths.CHART / "values.yaml").read_text())
    readme = (paths.CHART / "README.md").read_text()
    documented = set(re.findall(r"^\| `([^`]+)` \|", readme, re.MULTILINE))
    assert [key for key in _leaf_keys(values) if key not in documented] == []


@pytest.mark.parametrize(
    "values",
    [
        pytest.param(None, id="defaults"),
        *VALUES_FILES,
        *EXAMPLE_FILES,
    ],
)
def test_rendered_targets_file_passes_check_config(
    render: Render, values: Path | None, tmp_path: Path
) -> None:
    """The config.yaml the chart renders is accepted by the exporter's own `check-config`."""
    docs = render(*(["-f", str(values)] if values else []))
    (configmap,) = [d for d in by_kind(docs, "ConfigMap") if "config.yaml" in d["data"]]
    config = tmp_path / "config.yaml"
    config.write_text(configmap["data"]["config.yaml"])
    proc = run([sys.executable, "-m", "exporter", "check-config", config])
    assert proc.returncode == 0, proc.stdout + proc.stderr


STATEFULSET_VALUES = paths.CHART / "ci" / "statefulset-values.yaml"


def test_statefulset_mode_renders_shards_behind_a_headless_service(render: Render) -> None:
    """mode=statefulset: a StatefulSet of replicaCount shards (no Deployment), governed by a
    headless Service of the same name, with a PodDisruptionBudget over the same pods."""
    docs = render("-f", str(STATEFULSET_VALUES))
    kinds = sorted(doc["kind"] for doc in docs)
    assert "Deployment" not in kinds
    assert {"StatefulSet", "Service", "PodDisruptionBudget"} <= set(kinds)
    sts, svc = only(docs, "StatefulSet"), only(docs, "Service")
    pdb = only(docs, "PodDisruptionBudget")
    assert sts["spec"]["replicas"] == 3
    assert sts["spec"]["serviceName"] == svc["metadata"]["name"]
    assert svc["spec"]["clusterIP"] == "None"
    assert pdb["spec"]["selector"]["matchLabels"] == sts["spec"]["selector"]["matchLabels"]
    assert pdb["spec"]["maxUnavailable"] == 1


def test_statefulset_pods_take_their_shard_from_the_pod_name(render: Render) -> None:
    """Each pod gets LGSE_SHARDS=replicaCount and LGSE_SHARD=auto; the pod names the StatefulSet
    gives (name-0 .. name-N-1) are exactly the shards 0..N-1."""
    from exporter.core.shard import ordinal_from_hostname

    sts = only(render("-f", str(STATEFULSET_VALUES)), "StatefulSet")
    env = {e["name"]: e.get("value") for e in container(sts)["env"]}
    assert env["LGSE_SHARDS"] == "3" and env["LGSE_SHARD"] == "auto"
    assert env["LGSE_LOCATION"] == "cluster-a"
    pods = [f"{sts['metadata']['name']}-{k}" for k in range(sts["spec"]["replicas"])]
    assert [ordinal_from_hostname(p) for p in pods] == [0, 1, 2]


def test_two_locations_example_probes_one_target_from_the_sidecar_and_the_ingress(
    render: Render,
) -> None:
    """examples/two-locations.md: the sidecar (LangGraph server pod, loopback) and a standalone
    release (the public URL) set LGSE_LOCATION to sidecar and ingress and probe the same target
    names, so their series differ only by `location`; the standalone release ships the
    dashboard with the panel the example points to."""
    sidecar_docs = render("-f", str(paths.SIDECAR_VALUES))
    (server,) = [
        d
        for d in by_kind(sidecar_docs, "Deployment")
        if d["metadata"]["name"] == "langgraph-server"
    ]
    ingress_docs = render("-f", str(paths.INGRESS_VALUES))
    standalone = only(ingress_docs, "Deployment")
    envs = [{e["name"]: e.get("value") for e in container(d)["env"]} for d in (server, standalone)]
    assert [env.get("LGSE_LOCATION") for env in envs] == ["sidecar", "ingress"]

    def targets(docs: list[dict[str, Any]]) -> list[tuple[str, str]]:
        (configmap,) = [d for d in by_kind(docs, "ConfigMap") if "config.yaml" in d["data"]]
        config = yaml.safe_load(configmap["data"]["config.yaml"])
        return [(t["name"], t["assistant_id"]) for t in config["targets"]]

    assert targets(sidecar_docs) == targets(ingress_docs)
    (dashboard,) = [
        d
        for d in by_kind(ingress_docs, "ConfigMap")
        if d["metadata"]["name"].endswith("-dashboard")
    ]
    panel = "Network and proxy cost per node, by location"
    assert panel in dashboard["data"]["langgraph-stream-exporter.json"]
    assert panel in (paths.CHART / "examples" / "two-locations.md").read_text()


def test_standalone_mode_sets_no_shard_settings(render: Render) -> None:
    """Only the StatefulSet shards: a Deployment's replicas each probe every target."""
    env = {e["name"] for e in container(only(render(), "Deployment"))["env"]}
    assert not env & {"LGSE_SHARDS", "LGSE_SHARD", "LGSE_LOCATION"}


# ------------------------------------------------------------------ the exporter's web surface

WEB_TLS = ("--set", "web.config.existingSecret=lgse-web", "--set", "web.config.tls=true",
           "--set", "web.tlsSecret=lgse-tls")  # fmt: skip


def test_lifecycle_apis_stay_off_by_default(render: Render) -> None:
    """Defaults set no LGSE_WEB_ENABLE_LIFECYCLE (so /probe and /-/reload answer 403);
    web.enableLifecycle=true sets it."""
    env = container(only(render(), "Deployment")).get("env", [])
    assert "LGSE_WEB_ENABLE_LIFECYCLE" not in {e["name"] for e in env}
    env = container(only(render("--set", "web.enableLifecycle=true"), "Deployment"))["env"]
    assert {"name": "LGSE_WEB_ENABLE_LIFECYCLE", "value": "true"} in env


def test_web_config_secret_is_mounted_and_named_in_the_environment(render: Render) -> None:
    """web.config.existingSecret is mounted read-only beside the config and LGSE_WEB_CONFIG_FILE
    points at its key; web.tlsSecret is mounted for the file's cert_file and key_file."""
    deployment = only(render(*WEB_TLS), "Deployment")
    exporter = container(deployment)
    mounts = {m["name"]: m for m in exporter["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["exporter-web-config"]["secret"]["secretName"] == "lgse-web"
    assert volumes["exporter-web-tls"]["secret"]["secretName"] == "lgse-tls"
    web_dir = mounts["exporter-web-config"]["mountPath"]
    assert mounts["exporter-web-config"]["readOnly"] and mounts["exporter-web-tls"]["readOnly"]
    assert {"name": "LGSE_WEB_CONFIG_FILE", "value": f"{web_dir}/web-config.yml"} in exporter["env"]
    assert not web_dir.startswith("/etc/langgraph-stream-exporter/")  # not inside the ConfigMap


def test_probes_use_https_without_credentials_when_tls_is_on(render: Render) -> None:
    """With web.config.tls, liveness and readiness use scheme HTTPS and carry no Authorization
    header (the exporter serves /healthz and /readyz without basic auth)."""
    exporter = container(only(render(*WEB_TLS), "Deployment"))
    for probe in ("livenessProbe", "readinessProbe"):
        assert exporter[probe]["httpGet"]["scheme"] == "HTTPS", probe
        assert "httpHeaders" not in exporter[probe]["httpGet"], probe


def test_servicemonitor_scrapes_https_with_basic_auth_and_tls_config(render: Render) -> None:
    """With TLS on, the ServiceMonitor endpoint is https and passes basicAuth and tlsConfig on."""
    monitor = only(
        render(*WEB_TLS, "--set", "serviceMonitor.enabled=true",
               "--set", "serviceMonitor.basicAuth.username.name=scrape",
               "--set", "serviceMonitor.basicAuth.username.key=user",
               "--set", "serviceMonitor.basicAuth.password.name=scrape",
               "--set", "serviceMonitor.basicAuth.password.key=password",
               "--set", "serviceMonitor.tlsConfig.ca.secret.name=lgse-tls",
               "--set", "serviceMonitor.tlsConfig.ca.secret.key=ca.crt"),
        "ServiceMonitor",
    )  # fmt: skip
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["scheme"] == "https"
    assert endpoint["basicAuth"]["password"] == {"name": "scrape", "key": "password"}
    assert endpoint["tlsConfig"]["ca"]["secret"]["name"] == "lgse-tls"
    assert k8s.manifest_errors(monitor) == []


def test_web_tls_render_matches_kubernetes_schemas(render: Render) -> None:
    """The manifests with the web-config and TLS Secrets mounted validate."""
    docs = render(*WEB_TLS, "--set", "web.enableLifecycle=true")
    assert [e for doc in docs for e in k8s.manifest_errors(doc)] == []
