"""deploy/monitoring: promtool accepts the rules and the Prometheus configuration, the rules'
own unit tests (certfed_rules_test.yml) pass, and the rules and the Grafana dashboard name only
series certfed really exports; every alert is explained in docs/operations.md."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterable
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from federation.metrics import ProcessMetrics, series_names
from federation_node.metrics import CycleMetrics, NodeCollector
from registry.metrics import RegistryCollector
from tests.unit.deploy.deploy_files import DEPLOY, ROOT, FindTool

MONITORING = DEPLOY / "monitoring"
RULES = MONITORING / "certfed.rules.yml"
RULES_TEST = Path(__file__).with_name("certfed_rules_test.yml")
DASHBOARD = MONITORING / "grafana-dashboard.json"
OPERATIONS = ROOT / "docs" / "operations.md"

# PromQL words that are not series names.
PROMQL_WORDS = {
    "and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
    "bool", "offset", "inf", "nan",
}  # fmt: skip


def exported_series() -> set[str]:
    """Every series name a certfed registry or node can show in a scrape."""
    families = [*RegistryCollector.families(), *NodeCollector.families()]
    cycle = CollectorRegistry()
    CycleMetrics(cycle)
    return (
        ProcessMetrics({}).series_names() | series_names(families) | series_names(cycle.collect())
    )


def series_in(expression: str) -> set[str]:
    """The series names a PromQL expression selects."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expression)  # string literals
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range and subquery durations
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        followed_by = text[match.end() :].lstrip()[:1]
        preceded_by = text[: match.start()][-1:]
        if followed_by == "(" or preceded_by.isdigit() or match.group() in PROMQL_WORDS:
            continue  # a function or aggregation, a duration unit, a keyword
        names.add(match.group())
    return names


def rules() -> list[dict[str, str]]:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard_expressions() -> Iterable[tuple[str, str]]:
    document = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    for panel in document["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def test_promtool_accepts_the_rules(tool: FindTool) -> None:
    finished = subprocess.run(
        [tool("promtool"), "check", "rules", str(RULES)], capture_output=True, text=True
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr


def test_promtool_accepts_the_prometheus_configuration(tool: FindTool) -> None:
    finished = subprocess.run(
        [tool("promtool"), "check", "config", str(MONITORING / "prometheus.yml")],
        capture_output=True,
        text=True,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr


def test_each_alert_fires_on_what_should_raise_it(tool: FindTool) -> None:
    finished = subprocess.run(
        [tool("promtool"), "test", "rules", RULES_TEST.name],
        capture_output=True,
        text=True,
        cwd=RULES_TEST.parent,
    )
    assert finished.returncode == 0, finished.stdout + finished.stderr
    tested = {
        case["alertname"]
        for group in yaml.safe_load(RULES_TEST.read_text(encoding="utf-8"))["tests"]
        for case in group.get("alert_rule_test", [])
        if case["exp_alerts"]
    }
    assert tested == {rule["alert"] for rule in rules()}


def test_the_name_finder_sees_through_promql() -> None:
    expression = (
        'sum without (instance, code) (rate(certfed_rpc_handled_total{code=~"A|B"}[10m])) '
        "/ on (job) group_left max by (le) (certfed_log_size) - time() < 2 * 86400"
    )
    assert series_in(expression) == {"certfed_rpc_handled_total", "certfed_log_size"}


@pytest.mark.parametrize("rule", rules(), ids=lambda rule: rule["alert"])
def test_alert_names_only_exported_series(rule: dict[str, str]) -> None:
    named = series_in(rule["expr"])
    assert named, "the expression names no series"
    assert named <= exported_series(), f"not exported: {sorted(named - exported_series())}"


def test_dashboard_names_only_exported_series() -> None:
    exported = exported_series()
    for title, expression in dashboard_expressions():
        named = series_in(expression)
        assert named, f"{title}: the expression names no series"
        assert named <= exported, f"{title}: not exported: {sorted(named - exported)}"


def test_every_alert_is_explained_in_the_operations_guide() -> None:
    guide = OPERATIONS.read_text(encoding="utf-8")
    missing = [rule["alert"] for rule in rules() if f"`{rule['alert']}`" not in guide]
    assert not missing, f"docs/operations.md does not explain {missing}"
