"""The ``simulated`` runtime: no process and no thread; status is computed from the clock.

A job's timeline is planned once its dependencies are met: each attempt spends one
``stage_seconds`` in RUNNABLE and in STARTING, then RUNNING for ``sim_seconds`` (job parameter,
default from the server option), and ends with exit code ``sim_exit_code`` (parameter, default 0).
Describing a job reads the plan against the clock, so thousands of jobs cost nothing while idle.
AWS's own failures asked for with job parameters (host or Spot loss, image pull, stuck in
RUNNABLE, out of memory: `aws_batch_emulator.failures`) are part of the plan.
The compute environment's concurrency limit is not simulated.

When the compute environment has a change listener (events are on), each job is also read at each
planned change, on the environment's timer thread, and a read replays every change passed since
the previous one: the listener hears of each status in order, when it is reached.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aws_batch_emulator import resources
from aws_batch_emulator.errors import ClientException
from aws_batch_emulator.failures import MISCONFIGURATION, FailurePlan
from aws_batch_emulator.jobs import (
    DEPENDENCY_FAILED,
    ESSENTIAL_CONTAINER_EXITED,
    FAILED,
    KILLED_EXIT_CODE,
    RUNNABLE,
    RUNNING,
    STARTING,
    SUCCEEDED,
    TIMEOUT_REASON,
    AttemptOutcome,
    LocalJob,
    epoch_ms,
)

logger = logging.getLogger(__name__)

SIM_SECONDS_PARAMETER = "sim_seconds"
"""Job parameter: how long a simulated attempt stays RUNNING (seconds, float)."""
SIM_EXIT_CODE_PARAMETER = "sim_exit_code"
"""Job parameter: the exit code a simulated attempt ends with (int; default poller-sleep's own
``exit_code`` parameter, so a job means the same in both runtimes, else 0)."""
EXIT_CODE_PARAMETER = "exit_code"

_LOGS_LOCK = threading.Lock()
# How often a job waiting for its dependencies is read again for its events: the plan of its
# attempts only exists once they are done.
_DEPENDENCY_POLL = 0.1


@dataclass(frozen=True)
class PlannedAttempt:
    """When one simulated attempt enters each stage, and how it ends."""

    runnable_at: float
    starting_at: float
    running_at: float
    stopped_at: float
    outcome: AttemptOutcome
    stuck_until: float = 0.0
    """Until when RUNNABLE shows the MISCONFIGURATION reason (``sim_failure=stuck``)."""
    ran: bool = True
    """False for an attempt that never reached RUNNING (its running_at is its stopped_at)."""


def simulation_parameters(
    parameters: Mapping[str, str], default_seconds: float
) -> tuple[float, int]:
    """Read (sim_seconds, sim_exit_code) from job parameters; ClientException if malformed."""
    raw_seconds = parameters.get(SIM_SECONDS_PARAMETER, default_seconds)
    code_name = next(
        (n for n in (SIM_EXIT_CODE_PARAMETER, EXIT_CODE_PARAMETER) if n in parameters),
        SIM_EXIT_CODE_PARAMETER,
    )
    raw_code = parameters.get(code_name, 0)
    try:
        seconds = float(raw_seconds)
    except (TypeError, ValueError):
        raise ClientException(
            f"parameter {SIM_SECONDS_PARAMETER} must be a number, got {raw_seconds!r}"
        ) from None
    if not math.isfinite(seconds) or seconds < 0:
        raise ClientException(
            f"parameter {SIM_SECONDS_PARAMETER} must be >= 0, got {raw_seconds!r}"
        )
    try:
        code = int(raw_code)
    except (TypeError, ValueError):
        raise ClientException(
            f"parameter {code_name} must be an integer, got {raw_code!r}"
        ) from None
    return seconds, code


class SimulatedJob(LocalJob):
    """A job whose lifecycle is read off a precomputed timeline whenever it is looked at."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        default_seconds = self.compute.settings.sim_seconds
        self.sim_seconds, self.sim_exit_code = simulation_parameters(
            self.parameters, default_seconds
        )
        self.failures = FailurePlan.of(self, self.sim_seconds)
        self._plan: list[PlannedAttempt] | None = None
        self._replayed_to = 0.0  # the last change replayed for the listener (epoch seconds)

    def launch(self) -> None:
        """Have the job read at its first change when its changes are listened to."""
        if self.compute.listener is not None:
            self.compute.wake_at(self.created_s + self.stage_seconds, self._wake)

    def refresh(self) -> None:
        """Compute the status at the current time (replaying each change passed, for listeners)."""
        if self.is_final:
            return
        now = time.time()
        if self.compute.listener is not None:
            self._replay(now)
        self._evaluate(now)
        self.announce(now)

    def _evaluate(self, now: float) -> None:
        """Set the state the plan gives for time `now`."""
        if self._plan is None:
            self._plan = self._make_plan(now)
            if self._plan is None:
                return
        self._follow(self._plan, now)

    def _replay(self, now: float) -> None:
        """Set and report, in order, the state at each change after the last replayed, up to now.

        The state at a change is a function of the plan and that time, so it is the state that
        DescribeJobs showed (or would have) then.
        """
        for moment in self._moments():
            if moment <= self._replayed_to:
                continue
            if moment > now:
                return
            self._evaluate(moment)
            self._replayed_to = moment
            self.announce(moment)
            if self.is_final:
                return

    def _moments(self) -> list[float]:
        """When the status changes, in order, as far as known: the plan needs the dependencies."""
        stage = self.stage_seconds
        moments = [self.created_s + stage]  # SUBMITTED -> PENDING
        if self._plan is None:
            verdict, latest = self.dependency_state()
            if verdict == "failed":
                return [*moments, max(self.created_s + stage, latest)]
            if verdict == "ready":
                self._plan = self._attempts_from(max(self.created_s + 2 * stage, latest))
        for step in self._plan or []:
            moments += [step.runnable_at, step.starting_at, step.running_at, step.stopped_at]
        return sorted(moment for moment in moments if math.isfinite(moment))  # stuck for good

    def _wake(self) -> float | None:
        """Timer callback: bring the job up to date; return when to look again (None: done)."""
        with self.compute.lock:
            self.refresh()
            if self.is_final:
                return None
            now = time.time()
            later = next((moment for moment in self._moments() if moment > now), None)
            return now + _DEPENDENCY_POLL if later is None else later

    def terminate(self, reason: str) -> None:
        """TerminateJob: freeze the job FAILED now; a running attempt ends killed."""
        self.refresh()
        if self.is_final:
            return
        now = time.time()
        if self._status == RUNNING and self.latest_attempt is not None:
            outcome = AttemptOutcome(KILLED_EXIT_CODE, reason, reason, retryable=False)
            self.end_attempt(self.latest_attempt, now, outcome)
            self.finish(FAILED, reason, at=now, exit_code=KILLED_EXIT_CODE)
            return
        self.finish(FAILED, reason, at=now)

    def _make_plan(self, now: float) -> list[PlannedAttempt] | None:
        """Plan the attempts once dependencies allow; None while the job still waits."""
        verdict, latest = self.dependency_state()
        stage = self.stage_seconds
        if verdict == "failed":
            fail_at = max(self.created_s + stage, latest)
            if now >= fail_at:
                self.finish(FAILED, DEPENDENCY_FAILED, at=fail_at)
            else:
                self._status = self.stage_status(now)
            return None
        if verdict == "waiting":
            self._status = self.stage_status(now)
            return None
        return self._attempts_from(max(self.created_s + 2 * stage, latest))

    def _attempts_from(self, ready: float) -> list[PlannedAttempt]:
        stage, limit = self.stage_seconds, self._get_attempt_duration()
        plan: list[PlannedAttempt] = []
        begin = ready
        for number in range(1, self.max_attempts + 1):
            stuck_until = begin + self.failures.stuck_for(number)
            running_at = stuck_until + 2 * stage
            injected = self.failures.injected(number)
            run_for = self.sim_seconds if injected is None else injected.after or 0.0
            if injected is not None and injected.after is None:  # never reaches RUNNING
                outcome = injected.outcome
            elif limit is not None and limit < run_for:
                outcome = AttemptOutcome(
                    KILLED_EXIT_CODE, TIMEOUT_REASON, TIMEOUT_REASON, retryable=False
                )
                run_for = limit
            elif injected is not None:
                outcome = injected.outcome
            else:
                outcome = AttemptOutcome(self.sim_exit_code, ESSENTIAL_CONTAINER_EXITED)
            stopped_at = running_at + run_for
            starting_at = stuck_until + stage
            plan.append(
                PlannedAttempt(
                    begin,
                    starting_at,
                    running_at,
                    stopped_at,
                    outcome,
                    stuck_until,
                    ran=injected is None or injected.after is not None,
                )
            )
            if not math.isfinite(stuck_until) or not self.should_retry(number, outcome):
                break
            begin = stopped_at
        return plan

    def _follow(self, plan: list[PlannedAttempt], now: float) -> None:
        """Set status, attempts and timestamps for `now` from the plan."""
        if now < plan[0].runnable_at:
            self._status = self.stage_status(now)
            return
        self.attempts = []
        self.job_stopped_reason = None
        for step in plan:
            if now < step.starting_at:
                self._status = RUNNABLE
                if now < step.stuck_until:
                    self.job_stopped_reason = MISCONFIGURATION
                return
            if now < step.running_at:
                self._status = STARTING
                return
            if not step.ran:
                record = self.begin_attempt(None)
            else:
                record = self.begin_attempt(step.running_at)
            if now < step.stopped_at:
                self._status = RUNNING
                return
            self.end_attempt(record, step.stopped_at, step.outcome)
        self._log_finished_attempts(plan)
        last = plan[-1]
        status = SUCCEEDED if last.outcome.succeeded else FAILED
        self.finish(
            status, last.outcome.status_reason, at=last.stopped_at, exit_code=last.outcome.exit_code
        )

    def _log_finished_attempts(self, plan: list[PlannedAttempt]) -> None:
        """Leave one line per attempt in the job's log stream, so readers find the stream."""
        events = [
            {
                "timestamp": epoch_ms(step.running_at),
                "message": f"simulated attempt {number}: ran {step.stopped_at - step.running_at:.3f}s, "
                f"exit code {step.outcome.exit_code}",
            }
            for number, step in enumerate(plan, 1)
            if step.ran
        ]
        if not events:
            return
        try:
            with _LOGS_LOCK:
                self._log_backend.ensure_log_group(resources.LOG_GROUP)
                self._log_backend.ensure_log_stream(resources.LOG_GROUP, self._stream_name)
                self._log_backend.put_log_events(resources.LOG_GROUP, self._stream_name, events)
        except Exception:
            logger.debug("could not store the log of job %s", self.job_id, exc_info=True)
