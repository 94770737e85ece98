"""The ``process`` runtime: each job's container command runs as a local subprocess.

One thread per job walks the lifecycle SUBMITTED -> PENDING -> RUNNABLE -> STARTING -> RUNNING
-> SUCCEEDED/FAILED. Each pre-RUNNING stage lasts ``stage_seconds``; PENDING also waits for the
job's dependencies and RUNNABLE for a free slot of the compute environment (``concurrency``).
The command's output (stdout and stderr merged, as the awslogs driver does) goes to moto's
CloudWatch Logs backend, stream ``<definition>/default/<task id>`` of ``/aws/batch/job`` (the
task id is the job id, or a hex id for an array child: see `LocalJob.task_id`).
AWS's own failures asked for with job parameters (`aws_batch_emulator.failures`) stop an attempt
before its command runs (image pull), kill its process group midway (host or Spot loss, out of
memory), or hold the job in RUNNABLE (stuck).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import subprocess
import threading
import time
from typing import IO, Any

from aws_batch_emulator import resources
from aws_batch_emulator.failures import (
    MISCONFIGURATION,
    FailurePlan,
    Injected,
    compute_environment_name,
    expected_run_seconds,
)
from aws_batch_emulator.jobs import (
    DEPENDENCY_FAILED,
    ESSENTIAL_CONTAINER_EXITED,
    FAILED,
    KILLED_EXIT_CODE,
    PENDING,
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

_LOGS_LOCK = threading.Lock()  # moto's logs backend is not thread-safe for writers
_SAFETY_WAIT = 0.5  # re-check conditions at least this often, should a notify be missed


def _kill_group(pid: int) -> None:
    """SIGKILL the job's process group (the command and anything it spawned)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):  # already gone
        os.killpg(pid, signal.SIGKILL)


class ProcessJob(LocalJob):
    """A job whose container command runs as a subprocess, driven by its own thread."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._proc: subprocess.Popen[bytes] | None = None
        self._kill_reason: str | None = None
        self._interruption: AttemptOutcome | None = None  # an injected failure stopped the attempt
        run_seconds = expected_run_seconds(self.parameters, self.compute.settings.sim_seconds)
        self.failures = FailurePlan.of(self, run_seconds)

    @property
    def _cond(self) -> threading.Condition:
        return self.compute.changed

    def launch(self) -> None:
        """Start the job's thread."""
        self.start()

    def terminate(self, reason: str) -> None:
        """TerminateJob: kill the running command, or fail the job if it is not running yet."""
        if self.is_final:
            return
        if self._proc is not None:
            self._kill_reason = reason
            _kill_group(self._proc.pid)
            return  # the job's thread records the attempt and fails the job
        self.finish(FAILED, reason)

    def shutdown(self) -> None:
        """Kill the running command (the server is stopping)."""
        if self._proc is not None:
            self._kill_reason = "Local Batch endpoint stopped"
            _kill_group(self._proc.pid)

    def run(self) -> None:
        """Thread body: walk the lifecycle; never leave the job hanging on a bug."""
        try:
            self._lifecycle()
        except Exception:
            logger.exception("local runtime failed while running job %s", self.job_id)
            with self._cond:
                if not self.is_final:
                    self.finish(FAILED, "Local runtime error (see the endpoint's log)")

    def _lifecycle(self) -> None:
        if not (self._pause(self.stage_seconds) and self._move(PENDING)):
            return
        if not (self._pause(self.stage_seconds) and self._await_dependencies()):
            return
        number = 1
        while self._runnable(number):
            if not self._attempt_with_slot(number):
                return
            number += 1

    def _attempt_with_slot(self, number: int) -> bool:
        """Run one attempt in a compute-environment slot; True if another attempt follows."""
        if not self._acquire_slot():
            return False
        try:
            if not self._pause(self.stage_seconds):
                return False
            ended = self._run_attempt(number)
            if ended is None:
                return False
            outcome, stopped = ended
            # Settle the job before the slot frees: the next job must not start while this
            # one still reads RUNNING.
            if self.should_retry(number, outcome):
                return self._move(RUNNABLE)
            self._conclude(outcome, stopped)
            return False
        finally:
            self.compute.release_slot()

    def _conclude(self, outcome: AttemptOutcome, stopped: float) -> None:
        """End the job at the instant its last attempt stopped (one clock reading for both)."""
        with self._cond:
            if not self.is_final:
                status = SUCCEEDED if outcome.succeeded else FAILED
                self.finish(status, outcome.status_reason, at=stopped, exit_code=outcome.exit_code)

    def _runnable(self, number: int) -> bool:
        """RUNNABLE for a stage, after being stuck there first if the job asks to be."""
        stuck = self.failures.stuck_for(number)
        if stuck:
            with self._cond:
                if not self.is_final:
                    self.job_stopped_reason = MISCONFIGURATION
        if not (self._move(RUNNABLE) and self._pause(None if math.isinf(stuck) else stuck)):
            return False
        with self._cond:
            if stuck and not self.is_final:
                self.job_stopped_reason = None  # the compute environment "scaled up"
        return self._pause(self.stage_seconds)

    def _pause(self, seconds: float | None) -> bool:
        """Wait `seconds` (None: for good) unless the job is finished meanwhile; False if it was."""
        with self._cond:
            self._cond.wait_for(lambda: self.is_final, timeout=seconds)
            return not self.is_final

    def _move(self, status: str) -> bool:
        with self._cond:
            if self.is_final:
                return False
            self._status = status
            self.announce()
            return True

    def _await_dependencies(self) -> bool:
        with self._cond:
            while not self.is_final:
                verdict, _ = self.dependency_state()
                if verdict == "ready":
                    return True
                if verdict == "failed":
                    self.finish(FAILED, DEPENDENCY_FAILED)
                    return False
                self._cond.wait(_SAFETY_WAIT)
            return False

    def _acquire_slot(self) -> bool:
        """Wait in RUNNABLE, first come first served, for a free slot; then STARTING."""
        compute = self.compute
        with self._cond:
            compute.slot_queue.append(self)
            try:
                while not self.is_final:
                    if (
                        compute.slot_queue[0] is self
                        and compute.slots_in_use < compute.settings.concurrency
                    ):
                        compute.slot_queue.popleft()
                        compute.slots_in_use += 1
                        self._status = STARTING
                        self.announce()
                        return True
                    self._cond.wait(_SAFETY_WAIT)
                return False
            finally:
                if self in compute.slot_queue:
                    compute.slot_queue.remove(self)
                    self._cond.notify_all()

    def _run_attempt(self, number: int) -> tuple[AttemptOutcome, float] | None:
        """Run one attempt; its outcome and the instant it stopped, or None if the job ended."""
        injected = self.failures.injected(number)
        with self._cond:
            if self.is_final:
                return None
            if injected is not None and injected.after is None:  # never reaches RUNNING
                record = self.begin_attempt(None)
                stopped = time.time()
                self.end_attempt(record, stopped, injected.outcome)
                return injected.outcome, stopped
            self._status = RUNNING
            started = time.time()
            record = self.begin_attempt(started)
            self._ensure_log_stream()
            try:
                proc = self._spawn(number)
            except (OSError, ValueError, IndexError) as err:
                outcome = AttemptOutcome(None, f"CannotStartContainerError: {err}")
                stopped = time.time()
                self.end_attempt(record, stopped, outcome)
                self.announce(started)  # RUNNING, as DescribeJobs shows it until the job settles
                return outcome, stopped
            self._proc = proc
            self.announce(started)
        timed_out = self._supervise(proc, injected)
        with self._cond:
            self._proc = None
            outcome = self._outcome(proc.returncode, timed_out)
            stopped = time.time()
            self.end_attempt(record, stopped, outcome)
            self._kill_reason = self._interruption = None
            return outcome, stopped

    def _spawn(self, number: int) -> subprocess.Popen[bytes]:
        command = self.command()
        if not command:
            raise ValueError("the job has no command to run")
        env = {**os.environ, **self.environment()}
        env["AWS_BATCH_JOB_ATTEMPT"] = str(number)
        env["AWS_BATCH_JQ_NAME"] = self.job_queue.name
        env["AWS_BATCH_CE_NAME"] = compute_environment_name(self.job_queue)
        if self.array_index is not None:
            env["AWS_BATCH_JOB_ARRAY_INDEX"] = str(self.array_index)
        logger.debug("job %s attempt %d runs %s", self.job_id, number, command)
        # A session of its own, so killing the group also kills what `sh -c` started.
        return subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _supervise(self, proc: subprocess.Popen[bytes], injected: Injected | None) -> bool:
        """Pump output and wait for exit; kill on timeout or on an injected failure (which
        comes first). True if the attempt timed out."""
        assert proc.stdout is not None
        pump = threading.Thread(target=self._pump_logs, args=(proc.stdout,), daemon=True)
        pump.start()
        limit = self._get_attempt_duration()
        after = None if injected is None else injected.after
        interrupts = after is not None and (limit is None or after <= limit)
        timed_out = False
        try:
            proc.wait(timeout=after if interrupts else limit)
        except subprocess.TimeoutExpired:
            with self._cond:
                if interrupts and injected is not None:
                    self._interruption = injected.outcome
                else:
                    timed_out = True
                    self._kill_reason = self._kill_reason or TIMEOUT_REASON
            _kill_group(proc.pid)
            proc.wait()
        # AWS stops the whole task when the essential container exits: reap leftovers too.
        _kill_group(proc.pid)
        pump.join(timeout=5)
        return timed_out

    def _outcome(self, returncode: int, timed_out: bool) -> AttemptOutcome:
        exit_code = 128 - returncode if returncode < 0 else returncode
        if self._kill_reason is not None:
            return AttemptOutcome(
                exit_code or KILLED_EXIT_CODE, self._kill_reason, self._kill_reason, retryable=False
            )
        if self._interruption is not None:
            return self._interruption
        if timed_out:
            return AttemptOutcome(exit_code, TIMEOUT_REASON, TIMEOUT_REASON, retryable=False)
        return AttemptOutcome(exit_code, ESSENTIAL_CONTAINER_EXITED)

    def _ensure_log_stream(self) -> None:
        with _LOGS_LOCK:
            self._log_backend.ensure_log_group(resources.LOG_GROUP)
            self._log_backend.ensure_log_stream(resources.LOG_GROUP, self._stream_name)

    def _pump_logs(self, stream: IO[bytes]) -> None:
        """Copy each output line to CloudWatch Logs as it arrives."""
        with stream:
            for raw in iter(stream.readline, b""):
                message = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                event = {"timestamp": epoch_ms(time.time()), "message": message}
                try:
                    with _LOGS_LOCK:
                        self._log_backend.put_log_events(
                            resources.LOG_GROUP, self._stream_name, [event]
                        )
                except Exception:  # a deleted group/stream must not kill the job
                    logger.debug("could not store a log line of job %s", self.job_id, exc_info=True)
