"""Fuzzed job specs and a raising signal receiver: refused or tracked, never stuck or crashed."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
import redis
from aws_batch_emulator.resources import JOB_QUEUE, SLEEP_JOB_DEFINITION
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from poller import JobHandle, submit_job
from poller.errors import InvalidJobSpec
from tests.conftest import eventually
from tests.faults.conftest import FaultStack

pytestmark = pytest.mark.integration

names = st.one_of(
    st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,20}", fullmatch=True), st.text(max_size=140)
)
values = st.one_of(st.text(max_size=8), st.integers(), st.floats(allow_nan=False), st.none())
specs = st.fixed_dictionaries(
    {
        "job_name": names,
        "job_queue": st.sampled_from([JOB_QUEUE, JOB_QUEUE, "no-such-queue", ""]),
        "job_definition": st.sampled_from(
            [SLEEP_JOB_DEFINITION, SLEEP_JOB_DEFINITION, "no-such-def"]
        ),
    },
    optional={
        "parameters": st.dictionaries(
            st.sampled_from(["sim_seconds", "sim_exit_code", "seconds", "x"]),
            st.one_of(st.sampled_from(["0.2", "1", "0", "3", "-1", "abc"]), values),
            max_size=3,
        ),
        "tags": st.dictionaries(st.text(min_size=1, max_size=5), st.text(max_size=5), max_size=55),
        "array_properties": st.fixed_dictionaries(
            {"size": st.one_of(st.integers(-2, 4), st.just(10_001), values)}
        ),
        "timeout": st.fixed_dictionaries(
            {"attemptDurationSeconds": st.one_of(st.integers(0, 120), values)}
        ),
        "retry_strategy": st.fixed_dictionaries(
            {"attempts": st.one_of(st.integers(-1, 12), values)}
        ),
        "poll": st.fixed_dictionaries({"initial_delay": st.one_of(st.floats(-1, 1), values)}),
        "bogus_field": values,
    },
)


def test_fuzzed_specs_are_refused_naming_the_field_or_tracked_to_the_end(
    stack: FaultStack, report: Any
) -> None:
    stack.start_worker()
    outcomes: Counter[str] = Counter()
    accepted: list[str] = []

    @settings(
        max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
    )
    @given(spec=specs)
    def submit(spec: dict[str, Any]) -> None:
        try:
            result = submit_job.delay(**spec)
        except InvalidJobSpec as err:
            # Refused before anything was sent, naming the field
            assert err.field, err
            assert err.field.split(".")[0] in str(err)
            outcomes["refused"] += 1
        else:
            accepted.append(result.id)

    submit()
    # Every accepted spec is tracked to a terminal status: no stuck record, no crashed worker
    records = stack.wait_all_terminal(accepted, timeout=120)
    outcomes.update(r.status.value for r in records)
    assert stack.workers[0].is_running, stack.workers[0].log_tail()
    report("fuzzed specs", examples=outcomes.total(), **dict(outcomes))
    assert outcomes["refused"] > 0
    assert accepted


def test_a_raising_receiver_disturbs_neither_tracking_nor_other_receivers(
    stack: FaultStack, report: Any
) -> None:
    # Given jobs whose names make one signal receiver raise on every signal
    stack.start_worker()
    ids = [
        submit_job.delay(
            f"explode-{i}", JOB_QUEUE, SLEEP_JOB_DEFINITION, parameters={"sim_seconds": "0.5"}
        ).id
        for i in range(10)
    ]
    # Then every job is tracked to the end and the other receiver saw each finish once
    records = stack.wait_all_terminal(ids, timeout=60)
    finished = stack.wait_finished_signals(ids)
    errors = eventually(
        lambda: stack.workers[0].log_tail(100000).count("raised: RuntimeError"), timeout=10
    )
    report(
        "raising receiver",
        jobs=len(ids),
        receiver_errors_logged=errors,
        job_finished_signals=sum(finished.values()),
    )
    assert {r.status.value for r in records} == {"SUCCEEDED"}
    assert all(finished[i] == 1 for i in ids)
    assert stack.signals_sent_again() == 0
    assert JobHandle(ids[0]).record.history[-1].status.value == "SUCCEEDED"


FORGED = [
    b"this is not a celery message",  # not JSON
    json.dumps({"body": "garbage", "headers": {"task": "poller.submit_job", "id": "forged-1"},
                "content-type": "application/json",
                "properties": {"delivery_tag": "x", "body_encoding": "base64"}}),  # not base64
    json.dumps({"no": "envelope"}),  # no properties
]  # fmt: skip


def test_forged_broker_messages_are_dropped_one_by_one_and_the_worker_goes_on(
    stack: FaultStack, report: Any
) -> None:
    # Given a worker, and messages no kombu producer made pushed onto poller's queue
    worker = stack.start_worker()
    broker = redis.Redis.from_url(stack.env["POLLER_BROKER_URL"])
    for forged in FORGED:
        broker.lpush("poller", forged)
    # When a real job is submitted after them
    result = submit_job.delay("after-forged", JOB_QUEUE, SLEEP_JOB_DEFINITION,
                              parameters={"sim_seconds": "0.5"})  # fmt: skip
    # Then the job succeeds, each forged message was dropped in one line, the worker still runs
    assert result.get(timeout=60)["status"] == "SUCCEEDED"
    dropped = eventually(
        lambda: (n := worker.log_tail(100000).count("could not be parsed was dropped")) >= 3 and n
    )
    report("forged broker messages", pushed=len(FORGED), dropped=dropped)
    assert "Unrecoverable error" not in worker.log_tail(100000)
    assert worker.process is not None and worker.process.poll() is None
