"""Clock jumps: the injected clock jumps an hour forward, then ten minutes
back, under a running processor. No healthy job may be rescued, no job may
start before its ``process_at`` on the clock as it reads now, and cron
enqueues each slot once.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from inproc_harness import DEADLINE, Harness, MovableClock

import jobq
from jobq import JobStatus

# Only the cron test needs the cron extra (croniter); the lease, rescue and
# claim tests run without it.
try:
    import croniter  # noqa: F401
except ImportError:
    HAS_CRONITER = False
else:
    HAS_CRONITER = True

HOUR = 3600.0
TEN_MINUTES = 600.0
WATCH = 1.5  # real seconds to let the rescuer sweep (every 0.1 s) after a jump
EVERY_5_MIN = "*/5 * * * *"
START = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC


async def until(predicate: Any, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not await predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def get(queue: jobq.Queue, job_id: str) -> jobq.Job[Any]:
    job = await queue.get_job(job_id)
    assert job is not None
    return job


def test_no_job_starts_before_its_time_when_the_clock_jumps(harness: Harness) -> None:
    clock = MovableClock(START)
    queue = harness.open(clock=clock)

    async def scenario() -> None:
        started: dict[str, float] = {}
        processor = jobq.JobProcessor(queue, concurrency=4, poll_interval=0.05)

        @processor.handler("t")
        async def handler(job: jobq.Job[Any]) -> None:
            started[job.id] = clock.now()

        due_later = await queue.enqueue("t", 1, delay=HOUR + 60)  # one minute after the jump
        due_in_jump = await queue.enqueue("t", 2, delay=HOUR - 60)
        await processor.start()
        try:
            await asyncio.sleep(0.3)
            assert started == {}
            clock.jump(HOUR)

            async def ran() -> bool:
                return due_in_jump.id in started

            await until(ran, "the job that came due in the jump")
            # Back ten minutes: a job due between then and the latest time
            # seen must wait for the clock to reach it again.
            clock.jump(-TEN_MINUTES)
            back = clock.now()
            after_back = await queue.enqueue("t", 3, delay=TEN_MINUTES - 60)  # due 1 minute before the peak
            await asyncio.sleep(WATCH)
            assert due_later.id not in started and after_back.id not in started, started
            assert (await get(queue, due_later.id)).status is JobStatus.DELAYED
            clock.set(back + TEN_MINUTES - 60)

            async def ran_back() -> bool:
                return after_back.id in started

            await until(ran_back, "the job enqueued after the jump back")
            await asyncio.sleep(0.3)
            assert due_later.id not in started
            clock.set(START + HOUR + 60)

            async def ran_later() -> bool:
                return due_later.id in started

            await until(ran_later, "the job due a minute after the jump")
        finally:
            await processor.stop(timeout=5)
        for job_id, at in started.items():
            job = await get(queue, job_id)
            assert at >= job.process_at.timestamp(), (job_id, at, job.process_at)
            assert job.status is JobStatus.COMPLETED and job.attempts == 0

    harness.run(scenario())


def test_a_healthy_job_is_not_rescued_when_the_clock_jumps(harness: Harness) -> None:
    """A job whose worker is alive and renewing its lease keeps running when
    the clock jumps an hour ahead (past its lease) and ten minutes back.

    Regression: the processor's rescuer (every ``rescue_interval``) found the
    lease expired before its heartbeat (every ``heartbeat_interval``) renewed
    it, and took the job from its own, healthy worker (``job_lost``, an
    attempt and a lost worker counted, the job ran twice); it now renews its
    own leases before each sweep. The heartbeat interval here (20 s) makes
    the old order certain rather than likely."""
    clock = MovableClock(START)
    queue = harness.open(clock=clock)  # leases of 30 s
    run_healthy_job_through_jumps(queue, clock, harness)


def run_healthy_job_through_jumps(queue: jobq.Queue, clock: MovableClock, harness: Harness) -> None:
    async def scenario() -> None:
        release = asyncio.Event()
        runs: list[str] = []
        lost: list[jobq.Event] = []
        processor = jobq.JobProcessor(
            queue, concurrency=2, poll_interval=0.05, heartbeat_interval=20.0, rescue_interval=0.1
        )
        processor.on("job_lost", lost.append)

        @processor.handler("long")
        async def long(job: jobq.Job[Any]) -> str:
            runs.append(job.id)
            await release.wait()
            return "done"

        job = await queue.enqueue("long", {})
        await processor.start()
        try:
            async def running() -> bool:
                return bool(runs)

            await until(running, "the long job to start")
            clock.jump(HOUR)
            await asyncio.sleep(WATCH)
            clock.jump(-TEN_MINUTES)
            await asyncio.sleep(WATCH)
            now = await get(queue, job.id)
            assert lost == [] and now.lost_count == 0, (now.error, lost)
            assert now.status is JobStatus.PROCESSING and now.attempts == 0
            release.set()

            async def finished() -> bool:
                return (await get(queue, job.id)).status is JobStatus.COMPLETED

            await until(finished, "the long job to complete")
        finally:
            release.set()
            await processor.stop(timeout=5)
        done = await get(queue, job.id)
        assert done.result == "done" and done.attempts == 0 and done.lost_count == 0
        assert runs == [job.id]  # it ran once

    harness.run(scenario())


@pytest.mark.skipif(not HAS_CRONITER, reason="croniter is not installed (the cron extra; the test extra has it)")
def test_cron_enqueues_each_slot_once_when_the_clock_jumps(harness: Harness) -> None:
    clock = MovableClock(START)
    queue = harness.open(clock=clock)

    async def scenario() -> None:
        processor = jobq.JobProcessor(queue, concurrency=2, poll_interval=0.05)
        processor.cron(EVERY_5_MIN, "tick", {})
        processor.handle("tick", lambda job: None)
        enqueued: list[int] = []
        processor.on("cron_enqueued", lambda e: enqueued.append(e.job.metadata["jobq.cron_slot"]))
        await processor.start()
        try:
            async def settled() -> bool:
                return all(s.last_seen_ms >= 0 for s in processor.cron_schedules.values())

            await until(settled, "the schedule to settle its first slot")
            await asyncio.sleep(0.3)
            assert enqueued == []  # the slot due at start-up is recorded, not run
            clock.jump(HOUR)

            async def caught_up() -> bool:
                return len(enqueued) >= 1

            await until(caught_up, "the missed slot")
            await asyncio.sleep(0.5)
            assert len(enqueued) == 1  # twelve slots were missed: the latest runs, once
            peak = clock.now()
            clock.jump(-TEN_MINUTES)
            await asyncio.sleep(0.5)
            # Walk forward through the slots already run, and one more.
            while clock.now() < peak + 300:
                clock.jump(60)
                await asyncio.sleep(0.05)

            async def next_slot() -> bool:
                return len(enqueued) >= 2

            await until(next_slot, "the first new slot after the jump back")
            await asyncio.sleep(0.5)
        finally:
            await processor.stop(timeout=5)
        assert len(enqueued) == len(set(enqueued)) == 2, enqueued
        page = await queue.list_jobs(type="tick")
        slots = [j.metadata["jobq.cron_slot"] for j in page.jobs]
        assert sorted(slots) == sorted(enqueued)

    harness.run(scenario())


@pytest.mark.parametrize("backend", ["memory"])
def test_regression_memory_claims_a_job_early_after_the_clock_goes_back(harness: Harness) -> None:
    """The memory store keeps a job it once found due in its ready heap: after
    the clock goes back before the job's ``process_at``, ``size()`` says 0
    but ``claim`` still takes it (SQLite and PostgreSQL do not)."""
    clock = MovableClock(START)
    queue = harness.open(clock=clock)
    job = harness.run(queue.enqueue("t", 1))
    clock.jump(-1)
    assert harness.run(queue.size()) == 0
    assert harness.run(queue.claim(1)) == []
    assert (harness.run(queue.get_job(job.id))).status is JobStatus.DELAYED  # type: ignore[union-attr]
