"""Schema checks for rendered manifests.

Built-in kinds go through kubernetes-validate (strict: unknown fields are errors) for the oldest
Kubernetes version the chart supports and the newest the package knows. The Prometheus Operator
CRDs (ServiceMonitor, PrometheusRule) have no schema there, so their required fields are checked
here by hand, following the CRDs' OpenAPI `required` lists.
"""

from __future__ import annotations

import re
from typing import Any, Final

import kubernetes_validate  # type: ignore[import-untyped]

# Chart.yaml kubeVersion is ">=1.25.0-0".
KUBE_VERSIONS: Final = ("1.25.0", kubernetes_validate.latest_version())
CRD_KINDS: Final = frozenset({"ServiceMonitor", "PrometheusRule"})
_DURATION: Final = re.compile(
    r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
)
_NAME: Final = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


def _require(obj: dict[str, Any], where: str, *keys: str) -> list[str]:
    return [f"{where}.{key} is required" for key in keys if obj.get(key) in (None, "", [], {})]


def _metadata_errors(doc: dict[str, Any]) -> list[str]:
    meta = doc.get("metadata") or {}
    errors = _require(meta, "metadata", "name", "namespace")
    name = meta.get("name", "")
    if name and (len(name) > 253 or not _NAME.match(name)):
        errors.append(f"metadata.name {name!r} is not a DNS subdomain name")
    return errors


def _duration_errors(value: object, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, str) or not _DURATION.match(value):
        return [f"{where} {value!r} is not a Prometheus duration"]
    return []


def servicemonitor_errors(doc: dict[str, Any]) -> list[str]:
    """Missing or malformed fields of a monitoring.coreos.com/v1 ServiceMonitor."""
    errors = _metadata_errors(doc)
    if doc.get("apiVersion") != "monitoring.coreos.com/v1":
        errors.append(f"apiVersion {doc.get('apiVersion')!r} is not monitoring.coreos.com/v1")
    spec = doc.get("spec") or {}
    errors += _require(spec, "spec", "selector", "endpoints")
    if not isinstance(spec.get("selector"), dict):
        errors.append("spec.selector must be a label selector")
    for i, endpoint in enumerate(spec.get("endpoints") or []):
        where = f"spec.endpoints[{i}]"
        if not (endpoint.get("port") or endpoint.get("targetPort")):
            errors.append(f"{where} needs port or targetPort")
        errors += _duration_errors(endpoint.get("interval"), f"{where}.interval")
        errors += _duration_errors(endpoint.get("scrapeTimeout"), f"{where}.scrapeTimeout")
    return errors


def prometheusrule_errors(doc: dict[str, Any]) -> list[str]:
    """Missing or malformed fields of a monitoring.coreos.com/v1 PrometheusRule."""
    errors = _metadata_errors(doc)
    if doc.get("apiVersion") != "monitoring.coreos.com/v1":
        errors.append(f"apiVersion {doc.get('apiVersion')!r} is not monitoring.coreos.com/v1")
    groups = (doc.get("spec") or {}).get("groups")
    if not groups:
        errors.append("spec.groups is required")
    names = [group.get("name") for group in groups or []]
    if len(set(names)) != len(names):
        errors.append(f"spec.groups names are not unique: {names}")
    for i, group in enumerate(groups or []):
        where = f"spec.groups[{i}]"
        errors += _require(group, where, "name", "rules")
        for j, rule in enumerate(group.get("rules") or []):
            rwhere = f"{where}.rules[{j}]"
            if bool(rule.get("alert")) == bool(rule.get("record")):
                errors.append(f"{rwhere} needs exactly one of alert and record")
            if not isinstance(rule.get("expr"), str | int) or rule.get("expr") == "":
                errors.append(f"{rwhere}.expr is required")
            errors += _duration_errors(rule.get("for"), f"{rwhere}.for")
            for field in ("labels", "annotations"):
                values = rule.get(field) or {}
                if not all(isinstance(v, str) for v in values.values()):
                    errors.append(f"{rwhere}.{field} values must be strings")
    return errors


def manifest_errors(doc: dict[str, Any]) -> list[str]:
    """Schema errors of one rendered manifest (empty when valid)."""
    kind = doc.get("kind")
    if kind == "ServiceMonitor":
        return servicemonitor_errors(doc)
    if kind == "PrometheusRule":
        return prometheusrule_errors(doc)
    errors = []
    for version in KUBE_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            errors.append(f"{kind}/{doc['metadata']['name']} @ {version}: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            errors.append(exc.message)
    return errors
