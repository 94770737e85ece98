"""Fleet metrics counted with each record change, read back as Prometheus text (in process)."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import boto3
import pytest
import redis
from botocore.stub import Stubber
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from redis.backoff import NoBackoff
from redis.retry import Retry

from poller.aws.aws_calls import OPERATIONS, OUTCOMES, CallCounter, outcome
from poller.core import lifecycle
from poller.models import JobStatus, utcnow
from poller.monitoring.exporter import registry_for
from poller.runtime import ProcessRuntime
from poller.store import Change, JobStore
from poller.store.counters import BUCKETS, EVENT_OUTCOMES
from poller.testing import FakeBatch
from poller.testing.processes import free_port
from tests.fakes import QUEUE, admitted, running, settings


def scrape(rt: ProcessRuntime) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of one scrape, by name and labels."""
    text = generate_latest(registry_for(rt.store, rt.settings)).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_a_jobs_life_is_counted_once_per_change(rt: ProcessRuntime, batch: FakeBatch) -> None:
    # Given three jobs: one succeeds, one fails, one still runs (each check calls AWS)
    rt.settings = settings(coalesce=False)
    # (tracking ids apart from every label value: "ok" is an AWS call's outcome)
    for tracking_id in ("job-ok", "job-bad", "job-busy"):
        running(rt, batch, tracking_id)
    for tracking_id, status in (("job-ok", JobStatus.SUCCEEDED), ("job-bad", JobStatus.FAILED)):
        job_id = str(rt.store.get(tracking_id).job_id)
        batch.set_status(job_id, JobStatus.RUNNING)
        lifecycle.check(rt, tracking_id, 0)
        batch.set_status(job_id, status)
        lifecycle.check(rt, tracking_id, 1)
        # a duplicate delivery changes nothing, so counts nothing
        lifecycle.check(rt, tracking_id, 1)
    samples = scrape(rt)
    # Then each status holds its jobs now, and every transition and end is counted once
    assert samples[("poller_jobs", (("status", "SUCCEEDED"),))] == 1
    assert samples[("poller_jobs", (("status", "FAILED"),))] == 1
    assert samples[("poller_jobs", (("status", "SUBMITTED"),))] == 1  # "job-busy"
    assert samples[("poller_jobs", (("status", "RUNNING"),))] == 0
    assert samples[("poller_jobs", (("status", "QUEUED"),))] == 0
    assert samples[("poller_job_transitions_total", (("status", "SUBMITTED"),))] == 3
    assert samples[("poller_job_transitions_total", (("status", "RUNNING"),))] == 2
    # (a fake Batch's jobs go to us-east-1, as its ARNs would say)
    finished = (("job_queue", "poller-local"), ("region", "us-east-1"), ("status", "SUCCEEDED"))
    assert samples[("poller_jobs_finished_total", finished)] == 1
    assert samples[("poller_detection_lag_seconds_count", ())] == 2
    assert samples[("poller_job_run_seconds_count", (("job_queue", "poller-local"),))] == 2
    assert samples[("poller_queue_wait_seconds_count", (("job_queue", "poller-local"),))] == 2
    # And no label carries a job's id or name
    labels = {value for _, pairs in samples for _, value in pairs}
    assert not labels & {"job-ok", "job-bad", "job-busy", "nightly"}


def test_overdue_checks_and_resends_are_counted(rt: ProcessRuntime, batch: FakeBatch) -> None:
    running(rt, batch, "on-time")  # due 1 s after submission
    running(rt, batch, "late")
    ten_seconds_ago = utcnow() - timedelta(seconds=10)
    rt.store.update(
        "late", lambda r: Change(r.with_parts(schedule={"next_check_at": ten_seconds_ago}))
    )
    rt.store.counters.count_resends(2)
    samples = scrape(rt)
    assert samples[("poller_reconciler_resends_total", ())] == 2
    assert samples[("poller_checks_overdue", ())] == 1


class Sink:
    def __init__(self) -> None:
        self.flushed: list[dict[tuple[str, str, str], int]] = []

    def count_aws_calls(self, calls: dict[tuple[str, str, str], int]) -> None:
        self.flushed.append(calls)


def test_aws_calls_are_counted_in_memory_and_flushed_in_one_round_trip() -> None:
    sink = Sink()
    counter = CallCounter(sink)
    for _ in range(3):
        counter.record("DescribeJobs", "ok", "us-east-1")
    counter.record("SubmitJob", "throttled", "eu-west-1")
    counter.flush()
    assert sink.flushed == [
        {("DescribeJobs", "ok", "us-east-1"): 3, ("SubmitJob", "throttled", "eu-west-1"): 1}
    ]


def test_a_clients_calls_are_counted_under_its_region() -> None:
    sink = Sink()
    counter = CallCounter(sink)
    client = boto3.session.Session().client(
        "batch", region_name="eu-west-1", aws_access_key_id="a", aws_secret_access_key="b"
    )
    counter.attach(client)
    with Stubber(client) as stub:
        stub.add_response("describe_jobs", {"jobs": []}, {"jobs": ["j-1"]})
        client.describe_jobs(jobs=["j-1"])
    counter.flush()
    assert sink.flushed == [{("DescribeJobs", "ok", "eu-west-1"): 1}]


def test_outcomes_of_an_aws_call() -> None:
    cases: list[tuple[Any, Any, str]] = [
        (200, None, "ok"), (429, None, "throttled"), (400, "ThrottlingException", "throttled"),
        (503, None, "server_error"), (None, None, "server_error"), (400, "ClientException", "client_error"),
    ]  # fmt: skip
    assert [outcome(status, code) for status, code, _ in cases] == [want for *_, want in cases]


def test_known_label_sets_are_served_at_zero_before_their_first_event(
    rt: ProcessRuntime, batch: FakeBatch
) -> None:
    # Given one job AWS accepted for a queue, and nothing else yet
    running(rt, batch)
    samples = scrape(rt)
    region = boto3.session.Session().region_name or ""  # the scraping process's default
    # Then each terminal status of that queue, each AWS operation and outcome, each event
    # outcome and each status's transitions exist at 0: rate() and increase() see the first one
    for status in ("SUCCEEDED", "FAILED", "REJECTED", "TIMED_OUT"):
        assert (
            samples[
                (
                    "poller_jobs_finished_total",
                    (("job_queue", QUEUE), ("region", region), ("status", status)),
                )
            ]
            == 0
        )
    for operation in OPERATIONS:
        for result in OUTCOMES:
            labels = (("operation", operation), ("outcome", result), ("region", region))
            assert samples[("poller_aws_calls_total", labels)] == 0
    for result in EVENT_OUTCOMES:
        assert samples[("poller_events_total", (("outcome", result),))] == 0
    assert samples[("poller_job_transitions_total", (("status", "RUNNING"),))] == 0
    assert samples[("poller_job_transitions_total", (("status", "QUEUED"),))] == 1
    assert samples[("poller_up", ())] == 1


def test_with_redis_unreachable_the_scrape_answers_poller_up_0(rt: ProcessRuntime) -> None:
    # Given a store whose Redis does not answer (its client fails at once: redis-py's default
    # retries would only add seconds of backoff to the same answer)
    unreachable = redis.Redis(
        port=free_port(), socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)
    )
    store = JobStore(unreachable, prefix="metrics-test")
    # When Prometheus scrapes, then it gets an answer, saying only that
    text = generate_latest(registry_for(store, rt.settings)).decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert list(families) == ["poller_up"]
    assert families["poller_up"].samples[0].value == 0


def test_histogram_buckets_fit_batch_times() -> None:
    for name, bounds in BUCKETS.items():
        # Then neighbouring bounds are at most x2.5 apart, so a quantile is off by less
        assert all(b / a <= 2.5 for a, b in itertools.pairwise(bounds)), name
    assert BUCKETS["job_run_seconds"][0] == 1 and BUCKETS["job_run_seconds"][-1] >= 3600
    assert BUCKETS["queue_wait_seconds"][0] == 1 and BUCKETS["queue_wait_seconds"][-1] >= 3600
    assert BUCKETS["detection_lag_seconds"][0] == 0.1
    assert BUCKETS["detection_lag_seconds"][-1] == 600


def test_a_refused_queue_never_becomes_a_series_and_labels_are_escaped_and_capped(
    rt: ProcessRuntime, batch: FakeBatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    from poller.store import counters

    # Given a cap of 3 job queues a scrape, a job AWS refused (its queue does not exist), and
    # ended jobs in 6 queues, one of whose names holds the label separator (a tampered record)
    monkeypatch.setattr(counters, "MAX_LABEL_VALUES", 3)
    rt.settings = settings(coalesce=False)
    refused = admitted(rt, "refused").model_copy(update={"job_queue": "no-such-queue"})
    rt.store.redis.set(rt.store.key("job", "refused"), refused.model_dump_json())
    lifecycle.reject(rt, "refused", "AWS Batch refused it")
    queues = [f"q{n:03d}" for n in range(5)] + ["a|b"]
    for n, queue in enumerate(queues):
        batch.queues.add(queue)
        record = running(rt, batch, f"t{n}")
        stored = rt.store.get(f"t{n}").model_copy(update={"job_queue": queue})
        rt.store.redis.set(rt.store.key("job", f"t{n}"), stored.model_dump_json())
        batch.set_status(str(record.job_id), JobStatus.SUCCEEDED)
        lifecycle.check(rt, f"t{n}", 0)
    # When scraped
    samples = scrape(rt)
    finished = {
        dict(labels)["job_queue"]
        for (name, labels) in samples
        if name == "poller_jobs_finished_total"
    }
    # Then the refused queue is no series (the job counts under ""), "a|b" stays whole or
    # goes to _other, and at most 3 queues show, the rest under _other
    assert "no-such-queue" not in finished
    assert "" in finished
    assert "b" not in finished
    assert len(finished - {"", counters.OTHER}) <= counters.MAX_LABEL_VALUES
    assert counters.OTHER in finished
    total = sum(
        value
        for (name, labels), value in samples.items()
        if name == "poller_jobs_finished_total" and dict(labels)["status"] == "SUCCEEDED"
    )
    assert total == len(queues)  # nothing lost by the cap
