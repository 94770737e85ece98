"""A job record in parts by concern, stored in the one flat shape every release reads."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from poller.models import JobRecord, JobStatus, Submission
from tests.fakes import settings

T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


def make(**fields: object) -> JobRecord:
    return JobRecord(
        tracking_id="t1", job_name="n", job_queue="q", job_definition="d",
        poll=settings().poll_policy, **fields,  # type: ignore[arg-type]
    )  # fmt: skip


def test_each_field_lives_in_its_part_and_is_stored_flat() -> None:
    # Given a record built from the flat names (as stored, and as callers pass them)
    record = make(
        checks=3, next_check_at=T0, exit_code=2, attempts=1, submit_failures=4,
        submit_lease_until=T0, canvas={"chain": []}, resolved=True,
    )  # fmt: skip
    # Then each field is in its part
    assert (record.schedule.checks, record.schedule.next_check_at) == (3, T0)
    assert (record.batch.exit_code, record.batch.attempts) == (2, 1)
    assert (record.submission.failures, record.submission.lease_until) == (4, T0)
    assert record.celery.canvas == {"chain": []} and record.celery.resolved
    # And it is stored as one flat object, which reads back equal
    stored = json.loads(record.model_dump_json())
    assert {"batch", "schedule", "submission", "celery"}.isdisjoint(stored)
    assert stored["checks"] == 3 and stored["exit_code"] == 2 and stored["submit_failures"] == 4
    assert JobRecord.model_validate_json(record.model_dump_json()) == record


def test_a_record_stored_before_the_resubmission_state_was_explicit_reads_as_it_meant() -> None:
    # Given records as an earlier release stored them: no "resubmitting" field
    ended = Submission(number=1, job_id="b-1", job_queue="q", submitted_at=T0)
    between = make(submissions=[ended]).model_dump(mode="json")
    submitted = make(job_id="b-1", submissions=[ended]).model_dump(mode="json")
    for stored in (between, submitted):
        del stored["resubmitting"]
    # Then the one between a Batch job's end and its resubmission is resubmitting, the other not
    assert JobRecord.model_validate(between).resubmitting
    assert not JobRecord.model_validate(submitted).resubmitting


def test_a_copy_with_parts_changed_leaves_the_original_alone() -> None:
    record = make(checks=1)
    later = record.with_parts(schedule={"checks": 2}, celery={"resolved": True})
    assert (later.schedule.checks, later.celery.resolved) == (2, True)
    assert (record.schedule.checks, record.celery.resolved) == (1, False)


def test_a_copy_naming_a_field_the_record_does_not_have_is_refused() -> None:
    # pydantic's model_copy would set it silently: a part's field must go through with_parts
    with pytest.raises(TypeError, match="checks"):
        make().model_copy(update={"checks": 2})
    assert make().model_copy(update={"status": JobStatus.RUNNING}).status is JobStatus.RUNNING
