"""A real Prometheus (Debian's) scraping real `poller metrics` processes, with the shipped alert
rules (their `for:` and windows shortened in a test copy) and the Grafana dashboard's queries.

Four targets in the scrape job "poller": a healthy exporter on the session's stack, one whose
Redis holds no worker, one whose Redis does not answer, and one that is not running at all.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aws_batch_emulator.resources import JOB_QUEUE, SLEEP_JOB_DEFINITION

from poller import JobHandle, submit_job
from poller.testing.processes import free_port, stop_process
from poller.testing.redis_server import EmbeddedRedis
from poller.testing.worker import Worker
from tests.conftest import eventually
from tests.test_dashboards import CONFIG, dashboard_queries

pytestmark = pytest.mark.integration

POLLER = str(Path(sys.executable).parent / "poller")


def prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:  # fail, never skip: make test installs it
        pytest.fail("prometheus is not installed (apt-get install prometheus)")
    return found


def fast_rules(text: str) -> str:
    """The shipped rules with `for:` and range windows in seconds, for a test that waits."""
    text = re.sub(r"for: \d+m", "for: 2s", text)
    return re.sub(r"\[(\d+)m\]", "[5s]", text)


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return json.loads(answer.read())


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


def start_exporter(
    env: dict[str, str], tmp_path: Path, name: str
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    log = (tmp_path / f"{name}.log").open("wb")
    process = subprocess.Popen(
        [POLLER, "metrics", "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT
    )
    log.close()
    target = f"127.0.0.1:{port}"
    eventually(lambda: answers(f"http://{target}/metrics"), timeout=30, interval=0.2)
    return process, target


@pytest.fixture
def prometheus(
    poller_env: dict[str, str], poller_worker: Worker, poller_redis: EmbeddedRedis, tmp_path: Path
) -> Iterator[tuple[str, dict[str, str]]]:
    """Prometheus scraping the four exporters every second; its URL and the targets by role."""
    base = {**os.environ, **poller_env}
    processes: list[subprocess.Popen[bytes]] = []
    targets: dict[str, str] = {}
    try:
        for role, redis_url in [
            ("healthy", poller_env["POLLER_REDIS_URL"]),
            ("no-worker", poller_redis.url.rsplit("/", 1)[0] + "/9"),
            ("redis-down", f"redis://127.0.0.1:{free_port()}/0"),
        ]:
            process, targets[role] = start_exporter(
                {**base, "POLLER_REDIS_URL": redis_url}, tmp_path, role
            )
            processes.append(process)
        targets["exporter-down"] = f"127.0.0.1:{free_port()}"
        (tmp_path / "alerts.yml").write_text(
            fast_rules((CONFIG / "prometheus-alerts.yml").read_text())
        )
        (tmp_path / "prometheus.yml").write_text(
            json.dumps({
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(tmp_path / "alerts.yml")],
                "scrape_configs": [
                    {"job_name": "poller", "static_configs": [{"targets": list(targets.values())}]}
                ],
            })
        )  # fmt: skip
        port = free_port()
        log = (tmp_path / "prometheus.log").open("wb")
        server = subprocess.Popen(
            [prometheus_binary(), f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.close()
        processes.append(server)
        url = f"http://127.0.0.1:{port}"
        eventually(lambda: answers(f"{url}/-/ready"), timeout=60, interval=0.2)
        yield url, targets
    finally:
        for process in processes:
            stop_process(process, timeout=10)


def query(url: str, expr: str) -> list[dict[str, Any]]:
    found = get_json(f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert found["status"] == "success", found
    result: list[dict[str, Any]] = found["data"]["result"]
    return result


def firing(url: str) -> set[tuple[str, str]]:
    """(alert, instance) of every firing alert."""
    alerts = get_json(f"{url}/api/v1/alerts")["data"]["alerts"]
    return {
        (a["labels"]["alertname"], a["labels"].get("instance", "")) for a in alerts
        if a["state"] == "firing"
    }  # fmt: skip


def test_prometheus_sees_every_panel_the_first_failure_and_the_down_alerts(
    prometheus: tuple[str, dict[str, str]], report: Any
) -> None:
    url, targets = prometheus
    # Given a job queue with a job, scraped by Prometheus already (its series there at 0)
    healthy = f'instance="{targets["healthy"]}"'
    first = submit_job.delay(
        "prom-first", JOB_QUEUE, SLEEP_JOB_DEFINITION, parameters={"seconds": "0.3"}
    )
    failed = f'poller_jobs_finished_total{{{healthy}, status="FAILED"}}'
    zeros = f"count_over_time({failed}[1m]) >= 2"  # two scrapes of it at 0
    eventually(lambda: query(url, zeros), timeout=30, interval=0.5)
    # When jobs run on the healthy stack, one of them failing
    results = [
        submit_job.delay(f"prom-{i}", JOB_QUEUE, SLEEP_JOB_DEFINITION,
                         parameters={"seconds": "0.3", "exit_code": "3" if i == 0 else "0"})
        for i in range(4)
    ]  # fmt: skip
    for result in [first, *results]:
        JobHandle(result.id).wait(timeout=60)
    # Then increase() sees the first failure (its series existed at 0 before it)
    eventually(lambda: query(url, f"increase({failed}[1m]) > 0"), timeout=30, interval=0.5)
    # And every dashboard query returns data
    per_panel = {}
    for title, expr in dashboard_queries():
        rows = eventually(
            lambda e=expr: query(url, e.replace("$job", "poller")), timeout=30, interval=1
        )
        values = sorted(f"{float(row['value'][1]):.3g}" for row in rows)
        per_panel[f"{title} [{expr[:60]}]"] = f"{len(rows)} series: {', '.join(values[:4])}"
    # And the down alerts fire for the exporter that is down, the one whose Redis is, and the
    # deployment with no worker; none of them for the healthy one
    wanted = {
        ("PollerMetricsDown", targets["exporter-down"]),
        ("PollerRedisDown", targets["redis-down"]),
        ("PollerNoWorker", targets["no-worker"]),
    }

    # (the healthy deployment's worker may be unseen for a moment: another test flushed the
    # records database, and with it the worker's last report)
    def down_alerts_only() -> set[tuple[str, str]] | None:
        fired = firing(url)
        calm = not {alert for alert in fired if alert[1] == targets["healthy"]}
        return fired if fired >= wanted and calm else None

    fired = eventually(down_alerts_only, timeout=90, interval=1)
    report("prometheus", panels_with_data=f"{len(per_panel)}/{len(dashboard_queries())}",
           firing=sorted(fired))  # fmt: skip
    for query_of_panel, result in per_panel.items():
        report("prometheus panel", query=query_of_panel, result=result)


def test_promtool_accepts_the_shipped_rules_and_the_test_copy(tmp_path: Path) -> None:
    promtool = str(Path(prometheus_binary()).with_name("promtool"))
    shipped = CONFIG / "prometheus-alerts.yml"
    copy = tmp_path / "alerts.yml"
    copy.write_text(fast_rules(shipped.read_text()))
    count = sum(len(group["rules"]) for group in yaml.safe_load(shipped.read_text())["groups"])
    for rules in (shipped, copy):
        checked = subprocess.run(
            [promtool, "check", "rules", str(rules)], capture_output=True, text=True
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert f"SUCCESS: {count} rules found" in checked.stdout  # every rule, none skipped
