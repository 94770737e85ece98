"""Options of the local Batch runtime: plain data, shared by the server and the job models."""

from __future__ import annotations

from dataclasses import dataclass

from aws_batch_emulator.resources import RUNTIMES


@dataclass(frozen=True)
class RuntimeSettings:
    """Options of the local Batch runtime."""

    runtime: str = "process"
    """``process`` (run commands) or ``simulated`` (computed from parameters and the clock)."""
    concurrency: int = 4
    """Jobs of the process runtime that may be STARTING/RUNNING at once."""
    stage_seconds: float = 0.2
    """Length of each stage before RUNNING (SUBMITTED, PENDING, RUNNABLE, STARTING)."""
    sim_seconds: float = 1.0
    """Default RUNNING time of simulated jobs (job parameter ``sim_seconds`` overrides it)."""

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {RUNTIMES}, got {self.runtime!r}")
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.stage_seconds < 0 or self.sim_seconds < 0:
            raise ValueError("stage_seconds and sim_seconds must be >= 0")
