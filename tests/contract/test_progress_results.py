"""Progress and results: a handler reports progress and its return value is
kept, both read through get_job; finished jobs are pruned by age, waiting and
running jobs never."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

import jobq
from jobq import JobStatus


async def test_set_progress_fenced_and_visible(queue: jobq.Queue) -> None:
    job = await queue.enqueue("t")
    assert job.progress is None and job.progress_message is None
    claimed = await queue.dequeue()
    assert claimed is not None
    await queue.set_progress(claimed, 0.25, "a quarter")
    stored = await queue.get_job(job.id)
    assert stored is not None and stored.progress == 0.25 and stored.progress_message == "a quarter"
    await queue.set_progress(job.id, 50)  # by id: unfenced
    stored = await queue.get_job(job.id)
    assert stored is not None and stored.progress == 50 and stored.progress_message is None
    await queue.complete(claimed, {"sent": 3})
    with pytest.raises(jobq.LeaseLost):
        await queue.set_progress(claimed, 1.0)
    with pytest.raises(jobq.JobNotFound):
        await queue.set_progress("nope", 1.0)
    for bad in (math.nan, "x", True):
        with pytest.raises(jobq.InvalidOption):
            await queue.set_progress(job.id, bad)  # type: ignore[arg-type]


async def test_report_progress_outside_a_handler() -> None:
    with pytest.raises(jobq.NoCurrentJob):
        await jobq.report_progress(0.5)
    with pytest.raises(jobq.NoCurrentJob):
        jobq.report_progress_sync(0.5)


async def test_handlers_report_progress_and_results(make_queue: Any) -> None:
    queue: jobq.Queue = await make_queue()
    processor = jobq.JobProcessor(queue, poll_interval=0.05)
    seen: list[float | None] = []

    @processor.handler("async")
    async def run_async(job: jobq.Job[Any]) -> dict[str, Any]:
        await jobq.report_progress(0.5, "half way")
        seen.append((await queue.get_job(job.id)).progress)  # type: ignore[union-attr]
        return {"sent_to": job.data["to"]}

    @processor.handler("sync")
    def run_sync(job: jobq.Job[Any]) -> list[int]:
        jobq.report_progress_sync(0.75, "sync")
        assert jobq.current_job() is not None and jobq.current_job().id == job.id  # type: ignore[union-attr]
        return [1, 2]

    a = await queue.enqueue("async", {"to": "+82"})
    b = await queue.enqueue("sync")
    await processor.start()
    try:
        for _ in range(500):
            counts = await queue.counts()
            if counts[JobStatus.COMPLETED] == 2:
                break
            await asyncio.sleep(0.01)
    finally:
        await processor.stop()
    done_a, done_b = await queue.get_job(a.id), await queue.get_job(b.id)
    assert done_a is not None and done_a.status is JobStatus.COMPLETED
    assert done_a.result == {"sent_to": "+82"} and done_a.progress == 0.5 and done_a.progress_message == "half way"
    assert done_b is not None and done_b.result == [1, 2] and done_b.progress == 0.75
    assert seen == [0.5]


async def test_prune_by_age_never_touches_unfinished(queue: jobq.Queue, clock: jobq.FakeClock) -> None:
    async def finish(how: str) -> str:
        job = await queue.enqueue("t", max_attempts=1)
        if how == "cancel":
            await queue.cancel(job.id)
            return job.id
        claimed = await queue.dequeue()
        assert claimed is not None
        if how == "complete":
            await queue.complete(claimed)
        else:
            await queue.fail(claimed, "boom")
        return claimed.id

    completed, failed, cancelled = await finish("complete"), await finish("fail"), await finish("cancel")
    waiting = await queue.enqueue("t", delay=30 * 86400)
    await queue.enqueue("t")
    running = await queue.dequeue()
    assert running is not None
    clock.advance(86400 + 1)  # a day: completed jobs go
    assert await queue.prune() == 1
    assert await queue.get_job(completed) is None
    assert await queue.get_job(failed) is not None and await queue.get_job(cancelled) is not None
    clock.advance(6 * 86400)  # a week: failed and cancelled go too
    assert await queue.prune() == 2
    clock.advance(365 * 86400)
    assert await queue.prune(completed_after=0, failed_after=0, cancelled_after=0) == 0
    assert await queue.get_job(waiting.id) is not None
    assert (await queue.get_job(running.id)).status is JobStatus.PROCESSING  # type: ignore[union-attr]


async def test_prune_dry_run_counts_and_deletes_nothing(queue: jobq.Queue, clock: jobq.FakeClock) -> None:
    for how in ("complete", "fail", "fail"):
        await queue.enqueue("t", max_attempts=1)
        claimed = await queue.dequeue()
        assert claimed is not None
        await (queue.complete(claimed) if how == "complete" else queue.fail(claimed, "boom"))
    await queue.enqueue("t")
    clock.advance(86400 + 1)
    assert await queue.prune(dry_run=True) == 1  # completed ones, after a day
    assert await queue.prune(older_than=0, dry_run=True) == 3
    assert await queue.prune(older_than=0, statuses=["failed"], dry_run=True) == 2
    assert await queue.prune(older_than=2 * 86400, dry_run=True) == 0
    assert sum((await queue.counts()).values()) == 4  # nothing deleted
    assert await queue.prune(older_than=0, statuses=["failed"]) == 2
    assert await queue.prune(older_than=0, dry_run=True) == 1


async def test_prune_ages_are_configurable(queue: jobq.Queue, clock: jobq.FakeClock) -> None:
    job = await queue.enqueue("t")
    claimed = await queue.dequeue()
    assert claimed is not None
    await queue.complete(claimed)
    clock.advance(61)
    assert await queue.prune(completed_after=120) == 0
    assert await queue.prune(completed_after=None) == 0
    assert await queue.prune(completed_after=60) == 1
    assert await queue.get_job(job.id) is None


async def test_prune_checks_every_argument_before_deleting(queue: jobq.Queue, clock: jobq.FakeClock) -> None:
    job = await queue.enqueue("t")
    claimed = await queue.dequeue()
    assert claimed is not None
    await queue.complete(claimed)
    clock.advance(10 * 86400)
    for status in ("pending", "delayed", "processing"):
        with pytest.raises(jobq.InvalidOption, match="finished jobs only"):
            await queue.prune(statuses=["completed", status], older_than=0)
    with pytest.raises(jobq.InvalidOption, match="prune: 'nope'"):
        await queue.prune(statuses=["nope"])
    with pytest.raises(jobq.InvalidJob, match="failed_after"):
        await queue.prune(completed_after=0, failed_after=-1)
    assert await queue.get_job(job.id) is not None  # nothing was deleted by a refused call
    assert await queue.prune(statuses=["completed"], older_than=0) == 1


async def test_processor_prunes_periodically(make_queue: Any, clock: jobq.FakeClock) -> None:
    queue: jobq.Queue = await make_queue(clock=clock)
    job = await queue.enqueue("t")
    claimed = await queue.dequeue()
    assert claimed is not None
    await queue.complete(claimed)
    clock.advance(2)
    processor = jobq.JobProcessor(
        queue, prune_interval=0.05, retention=jobq.Retention(completed_after=1), poll_interval=0.05
    )
    await processor.start()
    try:
        for _ in range(300):
            if await queue.get_job(job.id) is None:
                break
            await asyncio.sleep(0.01)
    finally:
        await processor.stop()
    assert await queue.get_job(job.id) is None
