"""Benchmark: Redis failovers under a working fleet, drill after drill.

Run with ``.venv/bin/python bench/failover.py --drills 10``.

Each drill starts a fresh replication group (a primary, two replicas, three Sentinels, all
embedded servers on 127.0.0.1), the local Batch endpoint (simulated runtime) and three worker
processes, with the broker, the results and the records on the group's Sentinel URLs. It submits
``--jobs`` jobs of 2-8 s and kills the primary (SIGKILL) ``--kills`` times at random moments
while they run, each time waiting until the Sentinels promote a replica (``--freeze S``: one
worker is also frozen, SIGSTOP, for S seconds from the first kill), then waits for every job's
result. Printed per drill and in total: jobs lost (no result within the deadline), Batch
jobs doubled (SubmitJob calls beyond one per job), jobs whose ``job_succeeded`` receiver ran
other than once (a signal sent again with the same event id counts once, as receivers
de-duplicate), signals sent again, and how long each failover stalled the fleet (from the kill
until the next job reached a terminal status).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aws_batch_emulator import LocalBatch
from aws_batch_emulator.resources import JOB_QUEUE, SLEEP_JOB_DEFINITION
from rich.console import Console
from rich.table import Table

from poller import JobHandle, WaitTimeout, submit_job
from poller.store import JobStore
from poller.testing.sentinel_group import SentinelGroup
from poller.testing.stack import configure_process, sentinel_stack_env
from poller.testing.worker import Worker
from tests.faults.conftest import FAULT_SETTINGS

console = Console()
RECORD_KEY = "test:signals"  # tests/integration/signal_recorder.py's list of signals received


def drill(
    number: int, jobs: int, kills: int, workers: int, rng: random.Random, freeze: float = 0.0
) -> dict[str, float]:
    """One drill: a fresh group, endpoint and fleet; ``kills`` failovers while ``jobs`` run,
    and (``freeze`` > 0) one worker frozen (SIGSTOP) that long from the first kill."""
    with (
        SentinelGroup() as group,
        LocalBatch(runtime="simulated", stage_seconds=0.1, sim_seconds=1.0) as batch,
    ):
        # The fault suite's tight settings: quick redelivery and reconciling
        env = {
            **sentinel_stack_env(group, batch, initial_delay=0.5, max_delay=2.0),
            **FAULT_SETTINGS,
        }
        configure_process(env)
        store = JobStore.from_url(env["POLLER_REDIS_URL"], sentinel_master=group.master_name)
        fleet = [
            Worker(env, includes=["tests.integration.signal_recorder"], concurrency=8)
            for _ in range(workers)
        ]
        for worker in fleet:
            worker.start()
        try:
            ids = []
            for i in range(jobs):
                duration = f"{rng.uniform(2.0, 8.0):.2f}"
                params = {"sim_seconds": duration, "seconds": duration}
                ids.append(
                    submit_job.delay(
                        f"drill{number}-{i}", JOB_QUEUE, SLEEP_JOB_DEFINITION, parameters=params
                    ).id
                )
            frozen = threading.Thread(target=_freeze, args=(fleet[-1], freeze), daemon=True)
            if freeze > 0:
                frozen.start()
            stalls = _failovers(group, store, ids, kills, rng)
            lost = 0
            for tracking_id in ids:
                try:
                    JobHandle(tracking_id).wait(timeout=180)
                except WaitTimeout:
                    lost += 1
            if freeze > 0:  # the frozen worker woke, and went on with what it held
                frozen.join()
                broker = JobStore.from_url(
                    env["POLLER_BROKER_URL"], sentinel_master=group.master_name
                )
                deadline = time.monotonic() + 120
                while broker.redis.hlen("poller:unacked") and time.monotonic() < deadline:
                    time.sleep(0.5)
            signals = [json.loads(raw) for raw in store.redis.lrange(store.key(RECORD_KEY), 0, -1)]
            succeeded = {
                (e["tracking_id"], e["event_id"]) for e in signals if e["signal"] == "job_succeeded"
            }
            per_job = Counter(tracking_id for tracking_id, _ in succeeded)
            by_id = Counter(e["event_id"] for e in signals)
            alive = sum(1 for worker in fleet if worker.is_running)
        finally:
            for worker in fleet:
                worker.stop()
        return {
            "jobs": jobs,
            "lost": lost,
            "doubled": batch.calls("SubmitJob") - jobs,
            "receiver_not_once": sum(1 for i in ids if per_job[i] != 1),
            "sent_again": sum(count - 1 for count in by_id.values()),
            "stall_max_s": max(stalls, default=0.0),
            "stall_mean_s": sum(stalls) / len(stalls) if stalls else 0.0,
            "workers_alive": alive,
            "workers": workers,
        }


def _failovers(
    group: SentinelGroup, store: JobStore, ids: list[str], kills: int, rng: random.Random
) -> list[float]:
    """Kill the primary ``kills`` times at random moments; return each failover's stall: the
    seconds from the kill until one more job ended."""
    stalls = []
    for _ in range(kills):
        time.sleep(rng.uniform(1.0, 6.0))  # a random moment of the run: the drill's point
        ended_before = _ended(store, ids)
        old = group.kill_primary()
        killed = time.monotonic()
        group.wait_for_failover(old)
        deadline = killed + 120
        while time.monotonic() < deadline:
            ended = _ended(store, ids)
            if ended is not None and ended_before is not None and ended > ended_before:
                break
            if ended is not None and ended == len(ids):
                break
            time.sleep(0.1)
        stalls.append(time.monotonic() - killed)
        _restart_as_replica(group, old)
    return stalls


def _freeze(worker: Worker, seconds: float) -> None:
    """Freeze the worker's process (a VM pause) for ``seconds``, then let it go on."""
    assert worker.pid is not None
    os.kill(worker.pid, signal.SIGSTOP)
    time.sleep(seconds)
    os.kill(worker.pid, signal.SIGCONT)


def _ended(store: JobStore, ids: list[str]) -> int | None:
    """How many of the jobs have ended now (None while Redis cannot answer)."""
    try:
        return sum(1 for record in store.records(ids) if record.is_terminal)
    except Exception:  # the failover under way: no answer yet
        return None


def _restart_as_replica(group: SentinelGroup, old_port: int) -> None:
    """Bring the killed server back: the Sentinels make it a replica of the new primary, so the
    next kill still finds one to promote."""
    server = group.server_on(old_port)
    threading.Thread(target=server.start, daemon=True).start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--drills", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=60)
    parser.add_argument("--kills", type=int, default=2, help="failovers per drill")
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--freeze", type=float, default=0.0,
        help="seconds one worker is frozen (SIGSTOP) from the first kill (0: none)",
    )  # fmt: skip
    args = parser.parse_args()
    rng = random.Random(args.seed)
    table = Table(title=f"{args.drills} failover drills, {args.kills} per drill")
    columns = ("jobs", "lost", "doubled", "receiver_not_once", "sent_again", "stall_max_s",
               "stall_mean_s", "workers_alive")  # fmt: skip
    table.add_column("drill")
    for column in columns:
        table.add_column(column, justify="right")
    totals: Counter[str] = Counter()
    worst_stall = 0.0
    for number in range(1, args.drills + 1):
        figures = drill(number, args.jobs, args.kills, args.workers, rng, args.freeze)
        table.add_row(
            str(number),
            *(
                f"{figures[c]:.1f}" if c.startswith("stall") else f"{int(figures[c])}"
                for c in columns
            ),
        )
        for name in ("jobs", "lost", "doubled", "receiver_not_once", "sent_again"):
            totals[name] += int(figures[name])
        worst_stall = max(worst_stall, figures["stall_max_s"])
        console.print(f"drill {number}: {figures}", highlight=False)
    console.print(table)
    console.print(
        f"total over {args.drills} drills ({args.drills * args.kills} failovers): "
        f"{totals['jobs']} jobs, {totals['lost']} lost, {totals['doubled']} Batch jobs doubled, "
        f"{totals['receiver_not_once']} receivers not run once, {totals['sent_again']} signals "
        f"sent again, worst stall {worst_stall:.1f}s",
        highlight=False,
    )


if __name__ == "__main__":
    main()
