"""jobq.testing: the inline harness drives the real processor on a fake clock."""

from __future__ import annotations

import time
from typing import Any

import pytest

import jobq
import jobq.testing
from jobq import JobStatus
from jobq.testing import ANY, assert_enqueued, assert_not_enqueued, enqueued_jobs


def make_processor(queue: jobq.Queue) -> jobq.JobProcessor:
    """An app's factory, as `jobq worker` would call it."""
    processor = jobq.JobProcessor(queue, retry_delays=[5, 30])

    @processor.handler("signup")
    async def signup(job: jobq.Job[Any]) -> str:
        await queue.enqueue("send_email", {"to": job.data["email"]}, priority=3)
        return "welcomed"

    processor.handle("send_email", lambda job: f"sent to {job.data['to']}")
    return processor


async def test_drain_runs_jobs_and_those_they_enqueue() -> None:
    async with jobq.testing.inline(make_processor) as jobs:
        await jobs.queue.enqueue("signup", {"email": "kim@example.com"})
        assert_enqueued(jobs.queue, "signup", {"email": "kim@example.com"}, count=1)
        assert_not_enqueued(jobs.queue, "send_email")
        assert await jobs.drain() == 2
        (email,) = assert_enqueued(jobs.queue, "send_email", {"to": "kim@example.com"}, priority=3)
        assert email.status is JobStatus.COMPLETED and email.result == "sent to kim@example.com"
        assert [j.type for j in enqueued_jobs(jobs.queue)] == ["signup", "send_email"]
        assert await jobs.drain() == 0


async def test_eager_mode_runs_at_enqueue() -> None:
    async with jobq.testing.inline(make_processor, eager=True) as jobs:
        await jobs.queue.enqueue("signup", {"email": "lee@example.com"})
        done = enqueued_jobs(jobs.queue, status="completed")
        assert [j.type for j in done] == ["signup", "send_email"]


async def test_advance_runs_retries_and_delays_without_sleeping() -> None:
    async with jobq.testing.inline() as jobs:
        calls: list[float] = []

        @jobs.processor.handler("flaky")
        async def flaky(job: jobq.Job[Any]) -> str:
            calls.append(jobs.clock.now())
            if len(calls) < 3:
                raise RuntimeError("provider down")
            return "ok"

        jobs.processor.handle("later", lambda job: "later ran")
        start = jobs.clock.now()
        flaky_id = await jobs.processor.add("flaky", None)
        later = await jobs.queue.enqueue("later", None, delay=3600)
        began = time.monotonic()
        assert await jobs.drain() == 1  # the first attempt only; its retry waits 1 s
        await jobs.advance(7200)
        assert time.monotonic() - began < 5
        # The retry policy is the processor's: 1 s, then 5 s (FixedDelays([1, 5, ...]))
        assert [t - start for t in calls] == [0, 1, 6]
        job = await jobs.queue.get_job(flaky_id)
        assert job is not None and job.status is JobStatus.COMPLETED and job.attempts == 2
        stored = await jobs.queue.get_job(later.id)
        assert stored is not None and stored.result == "later ran"
        assert jobs.clock.now() == start + 7200


async def test_advance_goes_through_cron_slots() -> None:
    pytest.importorskip("croniter")
    processor = jobq.JobProcessor(jobq.MemoryQueue())
    ticks: list[Any] = []
    processor.cron("*/10 * * * *", "tick", {"n": 1})
    processor.handle("tick", lambda job: ticks.append(job.metadata["jobq.cron_slot"]))
    async with jobq.testing.inline(processor) as jobs:
        await jobs.drain()  # the schedule starts from the slot due now
        await jobs.advance(3600)
        assert len(ticks) == 6
        assert_enqueued(jobs.queue, "tick", {"n": 1}, count=6)


async def test_steering_and_timeouts_go_through_the_processor() -> None:
    async with jobq.testing.inline() as jobs:

        @jobs.processor.handler("wait")
        async def wait(job: jobq.Job[Any]) -> None:
            raise jobq.SnoozeJob(60)

        job = await jobs.queue.enqueue("wait", None)
        await jobs.drain()
        snoozed = await jobs.queue.get_job(job.id)
        assert snoozed is not None and snoozed.status is JobStatus.DELAYED and snoozed.attempts == 0
        assert await jobs.advance(120) == 2


def test_assertion_messages_say_what_was_enqueued() -> None:
    queue = jobq.MemoryQueue()

    async def fill() -> None:
        await queue.enqueue("a", {"x": 1})

    import asyncio

    asyncio.run(fill())
    with pytest.raises(AssertionError, match=r"expected a 'b' job; enqueued: a\(\{'x': 1\}, pending\)"):
        assert_enqueued(queue, "b")
    with pytest.raises(AssertionError, match="expected 2 x"):
        assert_enqueued(queue, "a", ANY, count=2)
    with pytest.raises(AssertionError, match="expected no 'a' job"):
        assert_not_enqueued(queue, "a")
    assert_not_enqueued(queue, "a", {"x": 2})


async def test_non_memory_queues_are_refused(tmp_path: Any) -> None:
    async with jobq.SQLiteQueue(tmp_path / "q.db") as queue:
        with pytest.raises(TypeError):
            enqueued_jobs(queue)
