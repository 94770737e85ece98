"""The Grafana dashboard and the alerting rules use only metrics `poller metrics` serves."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from poller.monitoring.exporter import registry_for
from poller.runtime import ProcessRuntime

CONFIG = Path(__file__).parent.parent / "config"
METRIC = re.compile(r"\bpoller_[a-z_]+")


def served(rt: ProcessRuntime) -> set[str]:
    """Every sample name a scrape can hold (histograms' _bucket/_sum/_count too)."""
    text = generate_latest(registry_for(rt.store, rt.settings)).decode()
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
        names.update(family.name + s for s in suffixes.get(family.type, []))
    return names


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, query) of every query of the Grafana dashboard."""
    dashboard = json.loads((CONFIG / "grafana-dashboard.json").read_text())
    return [(panel["title"], t["expr"]) for panel in dashboard["panels"] for t in panel["targets"]]


def dashboard_expressions() -> list[str]:
    return [expr for _, expr in dashboard_queries()]


def alert_expressions() -> list[str]:
    rules = yaml.safe_load((CONFIG / "prometheus-alerts.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def test_every_metric_the_dashboard_and_alerts_use_is_served(rt: ProcessRuntime) -> None:
    available = served(rt)
    used = {m for e in dashboard_expressions() + alert_expressions() for m in METRIC.findall(e)}
    assert used and used <= available, used - available
    # And between them they cover what the operator watches
    for family in ("poller_jobs", "poller_detection_lag_seconds_bucket", "poller_workers",
                   "poller_aws_calls_total", "poller_checks_overdue", "poller_queue_wait_seconds_bucket"):  # fmt: skip
        assert family in used


def test_the_alerts_say_what_to_do() -> None:
    rules = yaml.safe_load((CONFIG / "prometheus-alerts.yml").read_text())
    names = [rule["alert"] for group in rules["groups"] for rule in group["rules"]]
    assert {
        "PollerNoWorker",
        "PollerChecksOverdue",
        "PollerAwsThrottled",
        "PollerJobsFailing",
    } <= set(names)
    assert all(rule["annotations"]["description"] for g in rules["groups"] for rule in g["rules"])


def test_every_panel_is_scoped_to_the_chosen_deployment() -> None:
    # Given the dashboard's variable naming a deployment (its scrape job)
    dashboard = json.loads((CONFIG / "grafana-dashboard.json").read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert "poller_up" in variables["job"]["definition"]
    # Then every series a panel reads is of that deployment: two never add up
    selectors = re.compile(r"\bpoller_[a-z_]+(\{[^}]*\})?")
    for expr in dashboard_expressions():
        for match in selectors.finditer(expr):
            assert match.group(1) and 'job="$job"' in match.group(1), expr


def test_the_alerts_cover_an_exporter_or_redis_that_is_down() -> None:
    rules = yaml.safe_load((CONFIG / "prometheus-alerts.yml").read_text())
    by_name = {rule["alert"]: rule for group in rules["groups"] for rule in group["rules"]}
    assert 'up{job="poller"} == 0' in by_name["PollerMetricsDown"]["expr"]
    assert "absent(" in by_name["PollerMetricsDown"]["expr"]
    assert "poller_up" in by_name["PollerRedisDown"]["expr"]
