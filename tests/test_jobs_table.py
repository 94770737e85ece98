"""`poller jobs` as an operator reads it: 80 columns, piped, with Batch's reason for ended jobs."""

from __future__ import annotations

import io

from rich.console import Console

from poller.core import lifecycle
from poller.core.runtime import Runtime
from poller.models import JobRecord, JobStatus
from poller.monitoring import console as view
from poller.testing import FakeBatch
from tests.fakes import running


def rendered(records: list[JobRecord], width: int, wide: bool = False) -> list[str]:
    out = io.StringIO()
    Console(file=out, width=width, color_system=None, soft_wrap=True).print(
        view.jobs_table(records, title=f"{len(records)} job(s)", wide=wide)
    )
    return out.getvalue().splitlines()


def jobs(rt: Runtime, batch: FakeBatch) -> list[JobRecord]:
    """A running job with a long name, and a failed one whose reason is long."""
    first = running(rt, batch, "t1")
    failed = running(rt, batch, "t2")
    reason = "Essential container in task exited " * 3
    batch.set_status(str(failed.job_id), JobStatus.FAILED, reason=reason, exit_code=3)
    for tracking_id in ("t1", "t2"):
        lifecycle.check(rt, tracking_id, 0)
    return [rt.store.get(first.tracking_id), rt.store.get("t2")]


def test_at_80_columns_every_line_fits_and_shows_name_status_age_and_reason(
    rt: Runtime, batch: FakeBatch
) -> None:
    lines = rendered(jobs(rt, batch), width=80)
    assert all(len(line) <= 80 for line in lines), lines
    header = next(line for line in lines if "status" in line)
    assert header.split() == ["job", "status", "age", "reason"]
    running_row, failed_row = (line for line in lines if "nightly" in line)
    assert "RUNNING" in running_row and running_row.rstrip().endswith("s")  # its age, no reason
    assert "FAILED" in failed_row and "Essential container in task" in failed_row
    assert "…" in failed_row  # the long reason is cut, not wrapped onto another line


def test_wide_adds_checks_and_both_ids_uncut(rt: Runtime, batch: FakeBatch) -> None:
    records = jobs(rt, batch)
    lines = rendered(records, width=200, wide=True)
    text = "\n".join(lines)
    for record in records:
        assert record.tracking_id in text and str(record.job_id) in text
    assert view.ended_reason(records[1]).endswith("(exit 3)")
    assert view.ended_reason(records[0]) == ""


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
    rt: Runtime, batch: FakeBatch
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


def test_a_jobs_detail_names_its_region_account_and_profile(rt: Runtime, batch: FakeBatch) -> None:
    record = jobs(rt, batch)[0].model_copy(
        update={"aws_profile": "partner", "aws_region": "eu-west-1", "aws_account": "222222222222"}
    )
    out = io.StringIO()
    Console(file=out, width=120, color_system=None).print(view.record_table(record))
    assert "eu-west-1 / 222222222222" in out.getvalue() and "partner" in out.getvalue()


HOSTILE_NAME = "[/][bold]x\x1b]0;pwned\x07"
HOSTILE_REASON = "exited [red]\x1b[2J\x1b[31mred\x07 \x9b"


def hostile(rt: Runtime, batch: FakeBatch) -> JobRecord:
    """A failed job whose stored name and reason hold markup and terminal escapes."""
    record = running(rt, batch, "t1")
    batch.set_status(str(record.job_id), JobStatus.FAILED, reason=HOSTILE_REASON, exit_code=1)
    lifecycle.check(rt, "t1", 0)
    stored = rt.store.get("t1").model_copy(update={"job_name": HOSTILE_NAME})
    rt.store.redis.set(rt.store.key("job", "t1"), stored.model_dump_json())
    return rt.store.get("t1")


def test_stored_markup_and_escapes_print_as_plain_text(rt: Runtime, batch: FakeBatch) -> None:
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
