"""Cancellation: a waiting job never runs; a running async job is stopped
cooperatively; both end cancelled. A finished job is left alone (False)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import jobq
from jobq import JobStatus


async def wait_for(predicate: Any, timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if await predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


async def status_of(queue: jobq.Queue, job_id: str) -> JobStatus:
    job = await queue.get_job(job_id)
    assert job is not None
    return job.status


async def test_cancel_waiting_job(queue: jobq.Queue) -> None:
    job = await queue.enqueue("t")
    delayed = await queue.enqueue("t", delay=60)
    assert await queue.cancel(job.id) is True
    assert await queue.cancel(delayed.id) is True
    stored = await queue.get_job(job.id)
    assert stored is not None and stored.status is JobStatus.CANCELLED and stored.cancelled_at is not None
    assert await queue.dequeue() is None
    assert await queue.size() == 0


async def test_cancel_finished_job_is_a_no_op(queue: jobq.Queue) -> None:
    job = await queue.enqueue("t")
    claimed = await queue.dequeue()
    assert claimed is not None
    await queue.complete(claimed, 1)
    assert await queue.cancel(job.id) is False
    assert await status_of(queue, job.id) is JobStatus.COMPLETED
    cancelled = await queue.enqueue("t")
    await queue.cancel(cancelled.id)
    assert await queue.cancel(cancelled.id) is False


async def test_cancel_unknown_job(queue: jobq.Queue) -> None:
    with pytest.raises(jobq.JobNotFound):
        await queue.cancel("nope")


async def test_cancel_running_job_stores_a_request(queue: jobq.Queue) -> None:
    await queue.enqueue("t")
    claimed = await queue.dequeue()
    assert claimed is not None
    assert await queue.cancel(claimed.id) is True
    stored = await queue.get_job(claimed.id)
    assert stored is not None and stored.status is JobStatus.PROCESSING
    assert stored.cancel_requested_at is not None
    assert await queue.cancel_requests([claimed]) == {claimed.id}
    # The holder of the claim ends it as cancelled (fenced).
    done = await queue.cancel_running(claimed, "stopped")
    assert done.status is JobStatus.CANCELLED and done.error == "stopped"
    with pytest.raises(jobq.LeaseLost):
        await queue.cancel_running(claimed)


async def test_cancel_request_of_a_lost_worker_ends_cancelled(queue: jobq.Queue, clock: jobq.FakeClock) -> None:
    await queue.enqueue("t")
    claimed = await queue.dequeue()
    assert claimed is not None
    await queue.cancel(claimed.id)
    clock.advance(queue.lease + 1)
    await queue.rescue_expired()
    assert await status_of(queue, claimed.id) is JobStatus.CANCELLED


async def test_processor_never_runs_a_cancelled_waiting_job(make_queue: Any) -> None:
    queue: jobq.Queue = await make_queue()
    job = await queue.enqueue("t")
    await queue.cancel(job.id)
    ran: list[str] = []
    processor = jobq.JobProcessor(queue, poll_interval=0.05)
    processor.handle("t", lambda j: ran.append(j.id))
    other = await queue.enqueue("t")
    await processor.start()
    try:
        await wait_for(lambda: _is(queue, other.id, JobStatus.COMPLETED))
    finally:
        await processor.stop()
    assert ran == [other.id]
    assert await status_of(queue, job.id) is JobStatus.CANCELLED


async def _is(queue: jobq.Queue, job_id: str, status: JobStatus) -> bool:
    return await status_of(queue, job_id) is status


@pytest.mark.parametrize("same_object", [True, pytest.param(False, marks=pytest.mark.shared_store)])
async def test_processor_cancels_a_running_async_handler(make_queue: Any, backend: str, same_object: bool) -> None:
    """Through the processor's own queue object the handler is cancelled at
    once; through another connection, at the next periodic check."""
    queue: jobq.Queue = await make_queue()
    other: jobq.Queue = queue if same_object else await make_queue()
    started = asyncio.Event()
    cancelled = asyncio.Event()
    processor = jobq.JobProcessor(queue, poll_interval=0.05, cancel_check_interval=0.05)

    @processor.handler("long")
    async def long(job: jobq.Job[Any]) -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    seen: list[str] = []
    processor.on("job_cancelled", lambda event: seen.append(event.job.id))
    job = await queue.enqueue("long")
    await processor.start()
    try:
        await asyncio.wait_for(started.wait(), 5)
        if not same_object:
            await asyncio.sleep(0.01)
        assert await other.cancel(job.id) is True
        await asyncio.wait_for(cancelled.wait(), 5)
        await wait_for(lambda: _is(queue, job.id, JobStatus.CANCELLED))
    finally:
        await processor.stop()
    stored = await queue.get_job(job.id)
    assert stored is not None and stored.status is JobStatus.CANCELLED and stored.attempts == 0
    assert seen == [job.id]
