"""The local compute environment jobs run in: its lock, its slots and the ARNs it reports.

Job models need these from the backend that owns them; keeping them here, below both, lets
`aws_batch_emulator.jobs` depend on this small class instead of on the backend (which imports
the job models).
"""

from __future__ import annotations

import threading
from collections import deque

from aws_batch_emulator import resources
from aws_batch_emulator.changes import ChangeListener
from aws_batch_emulator.settings import RuntimeSettings
from aws_batch_emulator.wakeups import WakeUp, WakeUps


class LocalCompute:
    """Shared state of one backend's jobs. Hold `lock` (or `changed`) to read or change it."""

    def __init__(
        self,
        settings: RuntimeSettings,
        region_name: str,
        account_id: str,
        listener: ChangeListener | None = None,
    ) -> None:
        self.settings = settings
        self.region_name = region_name
        """Region of the backend's jobs."""
        self.account_id = account_id
        """Account of the backend's jobs."""
        self.listener = listener
        """Told of every job status change after SUBMITTED; None (the default) when nobody is."""
        self.lock = threading.RLock()
        """Guards every job of the backend; API calls and lifecycle threads take it."""
        self.changed = threading.Condition(self.lock)
        """Notified whenever a job finishes or a slot frees up."""
        self.slot_queue: deque[object] = deque()
        """Process jobs waiting in RUNNABLE for a slot, first come first served."""
        self.slots_in_use = 0
        """Process jobs holding a slot (STARTING or RUNNING)."""
        self._arn_prefix = f"arn:aws:ecs:{region_name}:{account_id}"
        self._wakeups: WakeUps | None = None

    @property
    def container_instance_arn(self) -> str:
        """ARN reported as the container instance of every attempt."""
        return f"{self._arn_prefix}:container-instance/local"

    def task_arn(self, task_id: str) -> str:
        """ARN reported as the ECS task of a job's attempts."""
        return f"{self._arn_prefix}:task/{resources.COMPUTE_ENVIRONMENT}/{task_id}"

    def release_slot(self) -> None:
        """Give back a slot taken by a process job."""
        with self.changed:
            self.slots_in_use -= 1
            self.changed.notify_all()

    def wake_at(self, when: float, callback: WakeUp) -> None:
        """Call `callback` at epoch time `when` on the environment's timer thread (started on
        first use: only simulated jobs whose changes are listened to need it)."""
        with self.lock:
            if self._wakeups is None:
                self._wakeups = WakeUps(f"batch-wakeups-{self.region_name}")
            wakeups = self._wakeups
        wakeups.at(when, callback)

    def close(self) -> None:
        """Stop the timer thread, if any."""
        with self.lock:
            wakeups, self._wakeups = self._wakeups, None
        if wakeups is not None:
            wakeups.stop()
