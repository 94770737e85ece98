"""`poller jobs` and `poller status` as an operator reads them: 80 columns, piped, with Batch's
reason and the exit code of ended jobs; `--wide` with every value whole."""

from __future__ import annotations

import io
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from rich.console import Console

from poller.cli import main
from poller.core import lifecycle
from poller.models import JobRecord, JobStatus, utcnow
from poller.monitoring import console as view
from poller.runtime import ProcessRuntime
from poller.testing import FakeBatch
from tests.fakes import running

REASON = "Essential container in task exited " * 3  # longer than 80 columns leave it
LONG_NAME = "nightly-warehouse-load-for-every-region-and-every-account"


def rendered(records: list[JobRecord], width: int, wide: bool = False) -> list[str]:
    out = io.StringIO()
    Console(file=out, width=width, color_system=None, soft_wrap=True).print(
        view.jobs_table(records, title=f"{len(records)} job(s)", wide=wide)
    )
    return out.getvalue().splitlines()


def jobs(rt: ProcessRuntime, batch: FakeBatch) -> list[JobRecord]:
    """A running job, and a failed one (exit code 3) whose reason is long."""
    first = running(rt, batch, "t1")
    failed = running(rt, batch, "t2")
    batch.set_status(str(failed.job_id), JobStatus.FAILED, reason=REASON, exit_code=3)
    for tracking_id in ("t1", "t2"):
        lifecycle.check(rt, tracking_id, 0)
    return [rt.store.get(first.tracking_id), rt.store.get("t2")]


def column(header: str, row: str, name: str) -> str:
    """The cell of column ``name`` (right-justified, as wide as its header) in ``row``."""
    end = header.index(name) + len(name)
    return row[end - len(name) : end].strip()


def test_at_80_columns_every_line_fits_and_shows_name_status_exit_code_age_and_reason(
    rt: ProcessRuntime, batch: FakeBatch
) -> None:
    # Given a running job and a failed one (exit code 3) whose reason is longer than the line
    # When the jobs table is printed piped (80 columns)
    lines = rendered(jobs(rt, batch), width=80)
    # Then every line fits, and each job shows its name, status, age and, once ended, its exit
    # code and Batch's reason
    assert all(len(line) <= 80 for line in lines), lines
    header = next(line for line in lines if "status" in line)
    assert header.split() == ["job", "status", "exit", "age", "reason"]
    running_row, failed_row = (line for line in lines if "nightly" in line)
    assert "RUNNING" in running_row and running_row.rstrip().endswith("s")  # its age, no reason
    assert column(header, running_row, "exit") == ""
    assert "FAILED" in failed_row and "Essential container in task" in failed_row
    # And the long reason is cut (not wrapped onto another line), the exit code is not
    assert "…" in failed_row
    assert column(header, failed_row, "exit") == "3"


def test_wide_piped_prints_every_value_whole(rt: ProcessRuntime, batch: FakeBatch) -> None:
    # Given jobs with a long name and a long reason
    first, failed = jobs(rt, batch)
    records = [first.model_copy(update={"job_name": LONG_NAME}), failed]
    # When the wide table is printed piped (80 columns)
    lines = rendered(records, width=80, wide=True)
    text = "\n".join(lines)
    # Then nothing is cut: the name, Batch's reason, the exit code, the checks and both ids
    # are whole, each row on one line, longer than 80 columns
    assert "…" not in text
    header = next(line for line in lines if "status" in line)
    assert header.split()[:5] == ["job", "status", "exit", "age", "reason"]
    first_row, failed_row = (line for line in lines if "nightly" in line)
    assert LONG_NAME in first_row
    assert REASON.strip() in failed_row and column(header, failed_row, "exit") == "3"
    for row, record in ((first_row, records[0]), (failed_row, records[1])):
        assert record.tracking_id in row and str(record.job_id) in row
    assert len(failed_row) > 80


def test_the_exit_code_and_reason_belong_to_ended_jobs(
    rt: ProcessRuntime, batch: FakeBatch
) -> None:
    active, failed = jobs(rt, batch)
    assert (view.exit_text(active), view.ended_reason(active)) == ("", "")
    assert (view.exit_text(failed), view.ended_reason(failed)) == ("3", REASON)
    # (a job that ended without running its container has no exit code)
    assert view.exit_text(failed.with_parts(batch={"exit_code": None})) == ""


def test_age_reads_in_the_largest_units() -> None:
    from datetime import timedelta

    from poller.models import Transition, utcnow

    now = utcnow()
    for seconds, expected in [(42, "42s"), (425, "7m05s"), (11_520, "3h12m"), (187_200, "2d04h")]:
        record = JobRecord.model_construct(
            history=[
                Transition(status=JobStatus.QUEUED, observed_at=now - timedelta(seconds=seconds))
            ]
        )
        assert view.age(record, now) == expected


def test_jobs_in_several_regions_show_their_region_and_wide_their_account(
    rt: ProcessRuntime, batch: FakeBatch
) -> None:
    east, west = jobs(rt, batch)
    records = [
        east.model_copy(update={"aws_region": "us-east-1", "aws_account": "123456789012"}),
        west.model_copy(update={"aws_region": "ap-southeast-2", "aws_account": "222222222222"}),
    ]
    narrow = rendered(records, width=80)
    assert all(len(line) <= 80 for line in narrow), narrow
    assert "ap-southeast-2" in "\n".join(narrow) and "222222222222" not in "\n".join(narrow)
    wide = "\n".join(rendered(records, width=200, wide=True))
    assert "ap-southeast-2" in wide and "222222222222" in wide
    # One region: no column for it unless wide
    assert "region" not in "\n".join(rendered([east], width=80))


def test_a_jobs_detail_names_its_region_account_and_profile(
    rt: ProcessRuntime, batch: FakeBatch
) -> None:
    record = jobs(rt, batch)[0].model_copy(
        update={"aws_profile": "partner", "aws_region": "eu-west-1", "aws_account": "222222222222"}
    )
    out = io.StringIO()
    Console(file=out, width=120, color_system=None).print(view.record_table(record))
    assert "eu-west-1 / 222222222222" in out.getvalue() and "partner" in out.getvalue()


HOSTILE_NAME = "[/][bold]x\x1b]0;pwned\x07"
HOSTILE_REASON = "exited [red]\x1b[2J\x1b[31mred\x07 \x9b"


def hostile(rt: ProcessRuntime, batch: FakeBatch) -> JobRecord:
    """A failed job whose stored name and reason hold markup and terminal escapes."""
    record = running(rt, batch, "t1")
    batch.set_status(str(record.job_id), JobStatus.FAILED, reason=HOSTILE_REASON, exit_code=1)
    lifecycle.check(rt, "t1", 0)
    stored = rt.store.get("t1").model_copy(update={"job_name": HOSTILE_NAME})
    rt.store.redis.set(rt.store.key("job", "t1"), stored.model_dump_json())
    return rt.store.get("t1")


def test_stored_markup_and_escapes_print_as_plain_text(
    rt: ProcessRuntime, batch: FakeBatch
) -> None:
    # Given a record whose name and reason hold Rich markup and terminal escape sequences
    record = hostile(rt, batch)
    # When the jobs table and the job's own table are printed to a terminal
    out = io.StringIO()
    terminal = Console(file=out, width=200, force_terminal=True, color_system="standard")
    terminal.print(view.jobs_table([record], wide=True))
    terminal.print(view.record_table(record))
    text = out.getvalue()
    # Then nothing raised, the brackets show as text, and no escape of the record's reaches
    # the terminal (only Rich's own colour codes, which end in "m", remain)
    assert "[/][bold]x" in text
    assert "exited [red]" in text
    assert "\x07" not in text
    assert "\x9b" not in text
    assert "]0;" not in text
    assert "\x1b[2J" not in text


def test_printable_drops_escape_sequences_and_control_characters() -> None:
    assert view.printable("a\x1b[31mb\x1b[0m\x1b]0;t\x07c\x00d\ne\tf\x9bg") == "abcd e fg"


def cli(monkeypatch: pytest.MonkeyPatch, rt: ProcessRuntime, *args: str) -> str:
    """`poller ARGS` in-process, on the test's store; its stdout (the runner is no terminal)."""
    monkeypatch.setattr("poller.runtime.get_store", lambda: rt.store)
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result.stdout


def test_poller_jobs_shows_the_exit_code_and_wide_cuts_nothing_when_piped(
    rt: ProcessRuntime, batch: FakeBatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a failed job (exit code 3) whose reason is long
    failed = jobs(rt, batch)[1]
    # When `poller jobs` is piped, Then its row shows the exit code in its own column
    narrow = cli(monkeypatch, rt, "jobs").splitlines()
    header = next(line for line in narrow if "status" in line)
    (row,) = (line for line in narrow if "FAILED" in line)
    assert column(header, row, "exit") == "3"
    # And `poller jobs --wide` piped prints the reason and both ids whole
    wide = cli(monkeypatch, rt, "jobs", "--wide")
    assert "…" not in wide
    assert REASON.strip() in wide
    assert failed.tracking_id in wide and str(failed.job_id) in wide


def test_poller_status_shows_the_next_check_of_active_jobs_only(
    rt: ProcessRuntime, batch: FakeBatch, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an active and an ended job, both with a next check time stored
    due = utcnow()
    active, ended = (r.with_parts(schedule={"next_check_at": due}) for r in jobs(rt, batch))
    for record in (active, ended):
        # When `poller status` shows it
        monkeypatch.setattr(
            "poller.cli.jobs.job_handle", lambda _, shown=record: SimpleNamespace(record=shown)
        )
        shown = cli(monkeypatch, rt, "status", record.tracking_id)
        # Then only the active job has a next check
        assert ("next check" in shown) is (record is active), shown
        assert record.status.value in shown
