"""The Grafana dashboard and the alerting rules use only metrics `poller metrics` serves."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from poller.metrics import registry_for
from poller.runtime import Runtime

CONFIG = Path(__file__).parent.parent / "config"
METRIC = re.compile(r"\bpoller_[a-z_]+")


def served(rt: Runtime) -> set[str]:
    """Every sample name a scrape can hold (histograms' _bucket/_sum/_count too)."""
    text = generate_latest(registry_for(rt.store, rt.settings)).decode()
    names = set()
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_sum", "_count"]}
        names.update(family.name + s for s in suffixes.get(family.type, []))
    return names


def dashboard_expressions() -> list[str]:
    dashboard = json.loads((CONFIG / "grafana-dashboard.json").read_text())
    return [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]


def alert_expressions() -> list[str]:
    rules = yaml.safe_load((CONFIG / "prometheus-alerts.yml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def test_every_metric_the_dashboard_and_alerts_use_is_served(rt: Runtime) -> None:
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
