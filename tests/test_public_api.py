"""poller's public face: what ``from poller import ...`` offers, and what a type checker sees."""

from __future__ import annotations

import inspect
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import poller
from poller.models import (
    SUBMIT_OPTIONS,
    JobSpec,
    PollOptions,
    PollPolicy,
    ResubmitOptions,
    ResubmitPolicy,
)
from poller.tasks import submit_job_parameters

ROOT = Path(__file__).resolve().parent.parent


def test_the_public_names_leave_out_the_internal_check_task() -> None:
    # The check task's fencing number is poller's own: users never send it
    assert "check_job" not in poller.__all__
    assert {"submit_job", "JobHandle", "JobResult", "JobStatus", "JobFailed"} <= set(poller.__all__)


def test_the_typed_signature_names_every_argument_the_task_accepts() -> None:
    # The signature type checkers see and the spec the worker validates cannot drift apart
    declared = set(inspect.signature(submit_job_parameters).parameters)
    assert declared == set(JobSpec.model_fields) | set(SUBMIT_OPTIONS)


def test_the_typed_options_name_the_policies_fields() -> None:
    # poll= and resubmit= are typed by TypedDicts that mirror the validated policies
    assert set(PollOptions.__annotations__) == set(PollPolicy.model_fields)
    assert set(ResubmitOptions.__annotations__) == set(ResubmitPolicy.model_fields)


USER_FILE = """
from typing import assert_type
from poller import FailureKind, JobFailed, JobResult, submit_job

result = submit_job.delay("nightly", "my-queue", "my-def", parameters={"day": "1"})
assert_type(result.get(timeout=60), JobResult)
submit_job.delay("x", job_queu="q", job_definition="d")
submit_job.delay("x", "q", "d", parameters={"day": 1})
try:
    result.get()
except JobFailed as err:
    assert_type(err.exit_code, int | None)
    assert_type(err.failure_kind, FailureKind | None)
"""


@pytest.mark.integration  # mypy checks poller and its libraries: seconds, not milliseconds
def test_mypy_strict_on_a_users_file_types_get_and_catches_a_typo_and_a_wrong_type(
    tmp_path: Path,
) -> None:
    # Given an app file with a misspelt keyword and a wrong-typed value
    (tmp_path / "app.py").write_text(textwrap.dedent(USER_FILE))
    # When mypy --strict checks it (poller's own modules silent, as an installed package's are)
    checked = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent",
         "--cache-dir", str(tmp_path / ".mypy_cache"), "app.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env={"MYPYPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    out = checked.stdout
    # Then .get() is a JobResult (assert_type holds), and both mistakes are errors naming them
    assert 'app.py:7: error: Unexpected keyword argument "job_queu"' in out, out
    assert 'did you mean "job_queue"' in out
    assert "app.py:8: error: Dict entry 0 has incompatible type" in out
    assert "Found 2 errors in 1 file" in out
