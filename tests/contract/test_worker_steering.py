"""Handler steering (RetryJob, SnoozeJob, CancelJob), timeouts per type and
per job, and poison-job quarantine, against every backend.

Delays run on the fake clock; waits are on events with a generous deadline.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from contract_helpers import DEADLINE, QUIET, MakeProcessor, Recorder, stored

import jobq
from jobq import JobStatus

# -- steering ------------------------------------------------------------------


def test_steering_exceptions_derive_from_jobq_error() -> None:
    for cls in (jobq.RetryJob, jobq.SnoozeJob, jobq.CancelJob):
        assert issubclass(cls, jobq.JobqError)
    assert jobq.RetryJob(delay=3).delay == 3
    assert jobq.SnoozeJob(4).delay == 4
    assert jobq.CancelJob("gone").reason == "gone"
    with pytest.raises(jobq.InvalidOption):
        jobq.SnoozeJob(-1)
    with pytest.raises(jobq.InvalidOption):
        jobq.RetryJob(delay=float("nan"))


async def test_retry_job_spends_an_attempt_and_waits_its_delay(
    queue: jobq.Queue, clock: jobq.FakeClock, make_processor: MakeProcessor
) -> None:
    processor = make_processor(retry_delays=[1000])
    calls: list[int] = []

    @processor.handler("poll")
    async def poll(job: jobq.Job[Any]) -> str:
        calls.append(job.attempts)
        if len(calls) == 1:
            raise jobq.RetryJob(delay=7)
        return "ready"

    retries = Recorder(processor, "job_retry")
    completed = Recorder(processor, "job_completed")
    job_id = await processor.add("poll", None)
    await processor.start()
    (event,) = await retries.wait_for(1)
    assert event.retry_delay == 7
    waiting = await stored(queue, job_id)
    assert waiting.status is JobStatus.DELAYED and waiting.attempts == 1
    assert waiting.process_at.timestamp() == pytest.approx(clock.now() + 7)
    clock.advance(7)
    await completed.wait_for(1)
    assert calls == [0, 1]
    assert (await stored(queue, job_id)).status is JobStatus.COMPLETED


async def test_retry_job_out_of_attempts_fails_for_good(
    queue: jobq.Queue, make_processor: MakeProcessor
) -> None:
    processor = make_processor()

    @processor.handler("poll")
    async def poll(job: jobq.Job[Any]) -> None:
        raise jobq.RetryJob(delay=5, message="still not ready")

    failed = Recorder(processor, "job_failed")
    job_id = await processor.add("poll", None, max_attempts=1)
    await processor.start()
    (event,) = await failed.wait_for(1)
    assert event.error == "still not ready"
    job = await stored(queue, job_id)
    assert job.status is JobStatus.FAILED and job.attempts == 1


async def test_snooze_job_spends_no_attempt(
    queue: jobq.Queue, clock: jobq.FakeClock, make_processor: MakeProcessor
) -> None:
    processor = make_processor()
    calls: list[int] = []

    @processor.handler("wait")
    def wait(job: jobq.Job[Any]) -> str:  # a sync handler steers the same way
        calls.append(job.attempts)
        if len(calls) < 3:
            raise jobq.SnoozeJob(delay=30)
        return "done"

    snoozed = Recorder(processor, "job_snoozed")
    completed = Recorder(processor, "job_completed")
    retries = Recorder(processor, "job_retry")
    job_id = await processor.add("wait", None, max_attempts=1)
    await processor.start()
    (event,) = await snoozed.wait_for(1)
    assert event.retry_delay == 30
    waiting = await stored(queue, job_id)
    assert waiting.status is JobStatus.DELAYED and waiting.attempts == 0
    assert waiting.process_at.timestamp() == pytest.approx(clock.now() + 30)
    clock.advance(30)
    await snoozed.wait_for(2)
    clock.advance(30)
    await completed.wait_for(1)
    job = await stored(queue, job_id)
    assert job.status is JobStatus.COMPLETED and job.attempts == 0
    assert calls == [0, 0, 0] and retries.events == []
    assert processor.get_metrics().snoozed == 2


async def test_cancel_job_ends_the_job_cancelled(queue: jobq.Queue, make_processor: MakeProcessor) -> None:
    processor = make_processor()

    @processor.handler("send")
    async def send(job: jobq.Job[Any]) -> None:
        raise jobq.CancelJob("the recipient unsubscribed")

    cancelled = Recorder(processor, "job_cancelled")
    failed = Recorder(processor, "job_failed")
    job_id = await processor.add("send", None)
    await processor.start()
    (event,) = await cancelled.wait_for(1)
    assert event.error == "the recipient unsubscribed"
    job = await stored(queue, job_id)
    assert job.status is JobStatus.CANCELLED
    assert job.error is not None and "the recipient unsubscribed" in job.error
    await asyncio.sleep(QUIET)
    assert failed.events == []
    assert (await stored(queue, job_id)).status is JobStatus.CANCELLED


# -- timeouts ------------------------------------------------------------------


async def test_type_timeout_cancels_the_handler(queue: jobq.Queue, make_processor: MakeProcessor) -> None:
    processor = make_processor()
    cancelled = asyncio.Event()

    async def slow(job: jobq.Job[Any]) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    processor.handle("slow", slow, timeout=0.1)
    failed = Recorder(processor, "job_failed")
    job_id = await processor.add("slow", None, max_attempts=1)
    await processor.start()
    (event,) = await failed.wait_for(1)
    assert cancelled.is_set()
    assert event.error is not None and "timeout" in event.error
    job = await stored(queue, job_id)
    assert job.status is JobStatus.FAILED and "0.1 s timeout" in (job.error or "")


async def test_job_timeout_overrides_type_timeout_and_retries_as_usual(
    queue: jobq.Queue, clock: jobq.FakeClock, make_processor: MakeProcessor
) -> None:
    processor = make_processor(retry_delays=[5])

    @processor.handler("slow", timeout=60)
    async def slow(job: jobq.Job[Any]) -> str:
        if job.data == "hang":
            await asyncio.sleep(60)
        return "quick"

    retries = Recorder(processor, "job_retry")
    failed = Recorder(processor, "job_failed")
    completed = Recorder(processor, "job_completed")
    hang = await processor.add("slow", "hang", max_attempts=2, timeout=0.1)
    assert (await stored(queue, hang)).metadata == {"jobq.timeout": 0.1}
    quick = await processor.add("slow", "quick")
    await processor.start()
    (done,) = await completed.wait_for(1)
    assert done.job is not None and done.job.id == quick
    (retry,) = await retries.wait_for(1)
    assert retry.retry_delay == 5 and "timeout" in (retry.error or "")
    clock.advance(5)
    await failed.wait_for(1)
    job = await stored(queue, hang)
    assert job.status is JobStatus.FAILED and job.attempts == 2


async def test_abandoned_sync_handler_frees_its_slot_and_its_late_result_is_ignored(
    queue: jobq.Queue, make_processor: MakeProcessor
) -> None:
    processor = make_processor(concurrency=1)
    release = threading.Event()
    finished = threading.Event()

    def stuck(job: jobq.Job[Any]) -> str:
        release.wait(DEADLINE)  # cannot be interrupted
        finished.set()
        return "late result"

    processor.handle("stuck", stuck, timeout=0.2)
    processor.handle("next", lambda job: "next ran")
    failed = Recorder(processor, "job_failed")
    completed = Recorder(processor, "job_completed")
    stuck_id = await processor.add("stuck", None, max_attempts=1, priority=9)
    next_id = await processor.add("next", None, priority=1)
    await processor.start()
    (event,) = await failed.wait_for(1)
    assert event.job is not None and event.job.id == stuck_id
    # The one slot is free again while the abandoned thread still runs.
    (done,) = await completed.wait_for(1)
    assert done.job is not None and done.job.id == next_id
    assert not finished.is_set()
    release.set()
    await asyncio.to_thread(finished.wait, DEADLINE)
    await asyncio.sleep(QUIET)
    job = await stored(queue, stuck_id)
    assert job.status is JobStatus.FAILED and job.result is None
    assert "timeout" in (job.error or "")
    assert len(completed.events) == 1


async def test_bad_timeouts_are_rejected(make_processor: MakeProcessor) -> None:
    processor = make_processor()
    for bad in (0, -1, "5", True, float("inf")):
        with pytest.raises(jobq.InvalidOption):
            processor.handle("t", lambda job: None, timeout=bad)  # type: ignore[arg-type]
        with pytest.raises(jobq.InvalidOption):
            await processor.add("t", None, timeout=bad)  # type: ignore[arg-type]


# -- quarantine -------------------------------------------------------------------


async def test_a_job_lost_three_times_is_quarantined(
    queue: jobq.Queue, clock: jobq.FakeClock, make_processor: MakeProcessor
) -> None:
    # The processor only rescues: it takes jobs from another named queue.
    processor = make_processor(queues=["elsewhere"], rescue_interval=0.02)
    lost = Recorder(processor, "job_lost")
    quarantined = Recorder(processor, "job_quarantined")
    failed = Recorder(processor, "job_failed")
    job = await queue.enqueue("poison", None, max_attempts=10)
    await processor.start()
    for n in (1, 2, 3):
        (claimed,) = await queue.claim(1, owner=f"doomed-{n}", rescue=False)
        assert claimed.id == job.id
        clock.advance(queue.lease + 1)  # the worker died: its lease expires
        await lost.wait_for(n)
        if n < 3:
            assert (await stored(queue, job.id)).status is JobStatus.PENDING
    (event,) = await quarantined.wait_for(1)
    (failure,) = await failed.wait_for(1)
    after = await stored(queue, job.id)
    assert after.status is JobStatus.FAILED and after.lost_count == 3
    assert after.error is not None and "quarantined after 3 lost workers" in after.error
    assert "doomed-3" in after.error
    assert event.error == after.error == failure.error
    assert processor.get_metrics().quarantined == 1
