"""Benchmark: what waiting for jobs costs the waiting process, in an event loop and in a thread.

Run with ``.venv/bin/python bench/async_waits.py --jobs 1000`` (also in ``make bench``).

The stack is the real one (embedded Redis, the local Batch endpoint with its simulated runtime
and Batch events, two poller workers); jobs sleep 5-20 s on Batch. The bench's own process
submits every job (``submit_job.delay``, blocking calls) *before* it starts the waiting
process, which does nothing but wait: its loop's lag and its CPU are the waiting alone, never
the submission's.

- **async**: ``--jobs`` jobs awaited in one event loop (``JobHandle.wait_async``, all at once
  with ``asyncio.gather``; the process's store made first, as a service has it from its start).
  Printed: jobs SUCCEEDED; the loop's worst lag (a coroutine that sleeps 10 ms and notes how
  late it wakes), when it was, the loop thread's CPU during that tick and its wait for a core
  (other processes running: the stack's, the machine's), and the worst lag less those waits
  (what the loop's own work delayed a tick); the ticks late by more than 20 ms; how long the waits took and how often the process woke (voluntary
  context switches); the waiting process's CPU, in all and per job. The lag probe is in that
  process too, and each of its ticks wakes it (~0.15 ms of CPU a tick on this VM, ~100 ticks a
  second): its CPU, measured on the idle loop before the waits, is printed, and the CPU per
  job without it. ``--profile FILE``: the waits run under cProfile, stats in FILE (the figures
  are then cProfile's). With ``--mode threads``: the same jobs awaited as an event loop had to
  before ``wait_async``, each ``JobHandle.wait`` in a thread of a pool as large as the jobs
  (``run_in_executor``).
- **sync**: one job (60 s) awaited by ``JobHandle.wait`` in a thread, first alone, then while
  ``--jobs`` other jobs go through their lives: the waiting thread's CPU (``time.thread_time``)
  in each case. It must not grow with the others' events.

Threads hold a pub/sub connection each: redis-py's pool allows 100 connections by default, so
``--mode threads`` cannot wait for more than about 90 jobs (``--others`` keeps the sync case at
1,000).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import cProfile
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

LAG_TICK = 0.01  # the lag probe's sleep (s)
PROBE_CALIBRATION = 2.0  # seconds the probe runs alone first, to measure its own CPU
DURATIONS = [5, 10, 15, 20]  # seconds the jobs sleep on Batch, in turn
SYNC_JOB_SECONDS = 60  # the sync waiter's own job: it outlasts the others' submission and lives
WAIT_TIMEOUT = 900.0
PROFILE_ENV = "POLLER_BENCH_PROFILE"  # the event loop's waits run under cProfile: its stats there


def submit(count: int, seconds: Sequence[float], name: str) -> list[str]:
    """Submit ``count`` sleeping jobs (durations cycling through ``seconds``); their ids."""
    from aws_batch_emulator.resources import JOB_QUEUE, SLEEP_JOB_DEFINITION

    from poller import submit_job

    ids = []
    for n in range(count):
        parameters = {"sim_seconds": str(seconds[n % len(seconds)])}
        result = submit_job.delay(
            f"{name}-{n}", JOB_QUEUE, SLEEP_JOB_DEFINITION, parameters=parameters
        )
        ids.append(result.id)
    return ids


def start_waiter(mode: str, ids: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """Start the waiting process (this script with ``--wait``)."""
    return subprocess.Popen(
        [sys.executable, __file__, "--wait", mode, *ids], env={**os.environ, **env},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def figures_of(waiter: subprocess.Popen[str]) -> dict[str, Any]:
    """What the waiting process printed, once it ended."""
    out, err = waiter.communicate(timeout=WAIT_TIMEOUT + 60)
    if waiter.returncode != 0:
        raise SystemExit(f"a waiter failed:\n{err[-3000:]}")
    return dict(json.loads(out.strip().splitlines()[-1]))


# --- the waiting process ----------------------------------------------------------------------


def cpu_seconds() -> float:
    """This process's CPU time so far (user and system)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def sleeps() -> int:
    """How often this process has slept so far (voluntary context switches): each wake costs
    it far more CPU than a few lines of Python."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_nvcsw


def core_waits() -> Callable[[], float]:
    """A clock of the time (s) the calling thread has spent runnable but not running (waiting
    for a core: Linux's /proc/thread-self/schedstat); one that stays at 0 where there is none."""
    try:
        fd = os.open("/proc/thread-self/schedstat", os.O_RDONLY)
    except OSError:
        return lambda: 0.0
    return lambda: int(os.pread(fd, 128, 0).split()[1]) / 1e9


async def worst_lag(stop: asyncio.Event) -> dict[str, float]:
    """The loop's worst lateness waking a coroutine that sleeps LAG_TICK, until ``stop``: how
    late (ms), when (s after the probe started), the loop thread's CPU (ms) during that tick
    and its wait for a core (ms: other processes ran); the worst lateness less the tick's wait
    for a core (what the loop's own work delayed it); how many ticks were late by more than
    20 ms, and how many ticks there were."""
    loop = asyncio.get_running_loop()
    waits = core_waits()
    start = loop.time()
    worst, when, busy, waited, own, late, ticks = 0.0, 0.0, 0.0, 0.0, 0.0, 0, 0
    while not stop.is_set():
        before, cpu_before, waits_before = loop.time(), time.thread_time(), waits()
        await asyncio.sleep(LAG_TICK)
        lag = loop.time() - before - LAG_TICK
        ticks += 1
        late += lag > 0.02
        if lag > worst or lag > own:
            wait = waits() - waits_before
            own = max(own, lag - wait)
            if lag > worst:
                worst, when, busy, waited = (
                    lag,
                    before - start,
                    time.thread_time() - cpu_before,
                    wait,
                )
    return {
        "worst lag (ms)": worst * 1000,
        "worst lag at (s)": when,
        "worst lag's loop CPU (ms)": busy * 1000,
        "worst lag's wait for a core (ms)": waited * 1000,
        "worst lag less waits for a core (ms)": own * 1000,
        "ticks late > 20 ms": late,
        "probe ticks": ticks,
    }


async def probe_cost() -> float:
    """The lag probe's own CPU per tick (s), measured on the idle loop before the waits: each
    tick wakes the process, which costs more than the probe's few lines (on this VM, about
    0.2 ms), and the waiting process pays it for as long as the jobs run."""
    stop = asyncio.Event()
    probe = asyncio.create_task(worst_lag(stop))
    before = cpu_seconds()
    await asyncio.sleep(PROBE_CALIBRATION)
    stop.set()
    ticks = (await probe)["probe ticks"]
    return (cpu_seconds() - before) / max(ticks, 1)


async def await_all(mode: str, ids: list[str]) -> dict[str, Any]:
    """Await every job in one loop (``async``: wait_async; ``threads``: wait in threads)."""
    from poller import JobHandle, runtime

    # The process's store (its settings read, its connection pool made) before the waits, as
    # a service has it from its start: reading the settings costs the loop ~25 ms, once
    runtime.get_store()
    per_tick = await probe_cost()
    stop = asyncio.Event()
    probe = asyncio.create_task(worst_lag(stop))
    loop = asyncio.get_running_loop()
    profiler = cProfile.Profile() if os.environ.get(PROFILE_ENV) else None
    if profiler is not None:
        profiler.enable()
    started, before, slept = time.monotonic(), cpu_seconds(), sleeps()
    if mode == "async":
        results = await asyncio.gather(*(JobHandle(t).wait_async(WAIT_TIMEOUT) for t in ids))
    else:
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(ids)) as pool:
            waits = [loop.run_in_executor(pool, JobHandle(t).wait, WAIT_TIMEOUT) for t in ids]
            results = await asyncio.gather(*waits)
    cpu, waited, slept = cpu_seconds() - before, time.monotonic() - started, sleeps() - slept
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(os.environ[PROFILE_ENV])
    stop.set()
    lags = await probe
    probe_cpu = lags["probe ticks"] * per_tick
    return {
        "jobs": len(ids),
        "succeeded": sum(1 for r in results if r["status"] == "SUCCEEDED"),
        **lags,
        "waited (s)": waited,
        "wakes": slept,
        "CPU per job (ms)": cpu * 1000 / len(ids),
        "CPU (s)": cpu,
        "probe's CPU (s, estimated)": probe_cpu,
        "CPU per job without the probe (ms)": (cpu - probe_cpu) * 1000 / len(ids),
    }


def wait_one(tracking_id: str) -> dict[str, Any]:
    """Wait for one job with JobHandle.wait; the waiting thread's CPU."""
    from poller import JobHandle

    before = time.thread_time()
    result = JobHandle(tracking_id).wait(timeout=WAIT_TIMEOUT)
    return {"status": result["status"], "CPU (ms)": (time.thread_time() - before) * 1000}


def waiter_main(mode: str, ids: list[str]) -> None:
    figures = wait_one(ids[0]) if mode == "sync" else asyncio.run(await_all(mode, ids))
    print(json.dumps(figures))


# --- the bench ----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--mode", choices=("async", "threads"), default="async")
    parser.add_argument("--others", type=int, help="other jobs beside the sync waiter's (--jobs)")
    parser.add_argument("--skip-sync", action="store_true", help="only the event loop's figures")
    parser.add_argument(
        "--profile", type=Path, help="the event loop's waits run under cProfile: its stats here"
    )
    parser.add_argument("--wait", nargs="+", help=argparse.SUPPRESS)  # the waiting process
    args = parser.parse_args()
    if args.wait:
        waiter_main(args.wait[0], args.wait[1:])
        return

    from aws_batch_emulator import LocalBatch

    from poller.testing.redis_server import EmbeddedRedis
    from poller.testing.stack import configure_process, stack_env
    from poller.testing.worker import Worker

    printed: dict[str, Any] = {}
    with EmbeddedRedis() as server, LocalBatch(runtime="simulated", events=True) as batch:
        env = stack_env(server, batch, initial_delay=5, max_delay=30)
        env["POLLER_EVENTS_QUEUE_URL"] = batch.events_queue_url
        configure_process(env)
        if args.profile:
            env[PROFILE_ENV] = str(args.profile.resolve())
        workers = [Worker(env, concurrency=2, pool="threads") for _ in range(2)]
        try:
            for worker in workers:
                worker.start()
            ids = submit(args.jobs, DURATIONS, "wait")
            printed[args.mode] = figures_of(start_waiter(args.mode, ids, env))
            print(f"{args.mode}: {printed[args.mode]}", flush=True)
            if not args.skip_sync:
                alone = start_waiter("sync", submit(1, [SYNC_JOB_SECONDS], "alone"), env)
                printed["sync, alone"] = figures_of(alone)
                print(f"sync, alone: {printed['sync, alone']}", flush=True)
                # The waiter starts before the others are submitted: it waits through them all
                own = start_waiter("sync", submit(1, [SYNC_JOB_SECONDS], "own"), env)
                others = args.jobs if args.others is None else args.others
                submit(others, DURATIONS, "others")
                printed["sync, with others"] = figures_of(own)
                print(f"sync, with {others} others: {printed['sync, with others']}", flush=True)
        finally:
            for worker in workers:
                worker.stop(timeout=60)
    print(json.dumps(printed))


if __name__ == "__main__":
    main()
