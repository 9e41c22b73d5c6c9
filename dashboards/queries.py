"""Extract every PromQL expression from a Grafana dashboard JSON and make it runnable.

Grafana fills in template variables before a query reaches Prometheus; `render()` does the same
with fixed values (every multi-value variable, `$location`, `$instance`, `$target`, `$node`, is
"All", i.e. `.*`, which also matches a series without that label), so each expression can be sent
to a real Prometheus `/api/v1/query` and checked for errors and for data.

    python dashboards/queries.py                         # list the rendered expressions
    python dashboards/queries.py --prometheus URL        # run them; exit 1 on any error

Standard library only, so it runs from any Python.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

DASHBOARD: Final = Path(__file__).with_name("langgraph-stream-exporter.json")

# Values for Grafana's built-in interval variables when a query runs outside Grafana. 5m is four
# scrapes at the usual 30 s interval and so yields a rate; $__range is the dashboard's 6h default.
BUILTINS: Final[Mapping[str, str]] = {
    "__rate_interval": "5m",
    "__interval": "1m",
    "__range": "6h",
}

# The "All" value of the multi-value variables (their allValue in the JSON).
ALL: Final = ".*"

# `label_values(metric{selector}, label)` in a variable query; Prometheus cannot run it as PromQL.
_LABEL_VALUES: Final = re.compile(
    r"^\s*label_values\((?P<selector>.*),\s*(?P<label>\w+)\s*\)\s*$", re.DOTALL
)
# $name, ${name}, ${name:format} and the deprecated [[name]].
_VARIABLE: Final = re.compile(
    r"\$\{(?P<braced>\w+)(?::\w+)?\}|\[\[(?P<old>\w+)\]\]|\$(?P<plain>\w+)"
)


@dataclass(frozen=True)
class Query:
    """One PromQL expression of the dashboard, with where it comes from."""

    panel: str  # panel title, or "variable <name>"
    ref_id: str
    expr: str  # as written in the JSON, with Grafana variables
    legend: str = ""


def load(path: Path = DASHBOARD) -> dict[str, Any]:
    """The dashboard as a dict."""
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    # NOTE: a collapsed row keeps its panels inside it; an expanded row's panels are top level.
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def iter_queries(dashboard: Mapping[str, Any]) -> Iterator[Query]:
    """Every PromQL expression: each panel target's `expr`, then each query variable's query.

    A `label_values(selector, label)` variable becomes `group by (label) (selector)`, the PromQL
    that returns the same label values.
    """
    for panel in _panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            expr = target.get("expr")
            if expr:
                yield Query(
                    panel["title"], target.get("refId", ""), expr, target.get("legendFormat", "")
                )
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query or "")
        match = _LABEL_VALUES.match(text)
        if match:
            text = f"group by ({match['label']}) ({match['selector']})"
        yield Query(f"variable {variable['name']}", "", text)


def default_variables(dashboard: Mapping[str, Any]) -> dict[str, str]:
    """Values for the dashboard's variables: "All" (`.*`) where offered, else the current value."""
    values = dict(BUILTINS)
    for variable in dashboard.get("templating", {}).get("list", []):
        name = variable["name"]
        if variable.get("includeAll"):
            values[name] = variable.get("allValue") or ALL
        else:
            current = variable.get("current") or {}
            values[name] = str(current.get("value", ""))
    return values


def render(expr: str, variables: Mapping[str, str]) -> str:
    """Substitute Grafana variables in `expr`; an unknown variable is an error (a typo)."""

    def substitute(match: re.Match[str]) -> str:
        name = match["braced"] or match["old"] or match["plain"]
        if name not in variables:
            msg = f"unknown dashboard variable ${name} in {expr!r}"
            raise KeyError(msg)
        return variables[name]

    return _VARIABLE.sub(substitute, expr)


def rendered_queries(dashboard: Mapping[str, Any]) -> list[tuple[Query, str]]:
    """Every query with its expression rendered with the default variables."""
    variables = default_variables(dashboard)
    return [(query, render(query.expr, variables)) for query in iter_queries(dashboard)]


def run(prometheus_url: str, expr: str, timeout_s: float = 10.0) -> dict[str, Any]:
    """Run an instant query; returns Prometheus' JSON answer (status "success" or "error")."""
    url = prometheus_url.rstrip("/") + "/api/v1/query"
    body = urllib.parse.urlencode({"query": expr}).encode()
    request = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            answer: dict[str, Any] = json.load(response)
    except urllib.error.HTTPError as exc:  # 400/422 carry the JSON error body
        answer = json.load(exc)
    return answer


def main(argv: list[str] | None = None) -> int:
    """List the rendered expressions, or run them against --prometheus and report errors."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dashboard", type=Path, default=DASHBOARD)
    parser.add_argument("--prometheus", help="base URL of a Prometheus to run the queries against")
    args = parser.parse_args(argv)
    failures = 0
    for query, expr in rendered_queries(load(args.dashboard)):
        if not args.prometheus:
            print(f"# {query.panel} {query.ref_id}\n{expr}\n")
            continue
        answer = run(args.prometheus, expr)
        if answer.get("status") != "success":
            failures += 1
            print(f"ERROR {query.panel} {query.ref_id}: {answer.get('error')}\n  {expr}")
        else:
            print(f"ok ({len(answer['data']['result'])} series) {query.panel} {query.ref_id}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
