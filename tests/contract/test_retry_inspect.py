"""Retry and inspection: failed or cancelled jobs go back to waiting; jobs are
listed by status, type and queue with paging; counts and throughput."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

import jobq
from jobq import JobStatus


async def test_retry_failed_job(queue: jobq.Queue) -> None:
    job = await queue.enqueue("t", max_attempts=2)
    for _ in range(2):
        claimed = await queue.dequeue()
        assert claimed is not None
        await queue.fail(claimed, "boom", jobq.RetryDirective(True, 0))
    failed = await queue.get_job(job.id)
    assert failed is not None and failed.status is JobStatus.FAILED and failed.attempts == 2
    again = await queue.retry(job.id)
    assert again.status is JobStatus.PENDING and again.attempts == 0
    assert again.error == "boom" and again.failed_at is None
    claimed = await queue.dequeue()
    assert claimed is not None and claimed.id == job.id


async def test_retry_cancelled_job(queue: jobq.Queue) -> None:
    job = await queue.enqueue("t", delay=100)
    await queue.cancel(job.id)
    again = await queue.retry(job.id)
    assert again.status is JobStatus.PENDING and again.cancelled_at is None
    assert await queue.size() == 1


async def test_retry_refuses_other_statuses(queue: jobq.Queue) -> None:
    job = await queue.enqueue("t")
    with pytest.raises(jobq.NotRetryable) as caught:
        await queue.retry(job.id)
    assert isinstance(caught.value, ValueError) and "pending" in str(caught.value)
    claimed = await queue.dequeue()
    assert claimed is not None
    with pytest.raises(jobq.NotRetryable):
        await queue.retry(job.id)
    await queue.complete(claimed)
    with pytest.raises(jobq.NotRetryable):
        await queue.retry(job.id)
    with pytest.raises(jobq.JobNotFound):
        await queue.retry("nope")


async def test_list_jobs_filters_and_pages(queue: jobq.Queue, clock: jobq.FakeClock) -> None:
    ids = []
    for i in range(5):
        ids.append((await queue.enqueue("email", i, queue="emails")).id)
        clock.advance(1)
    sms = await queue.enqueue("sms", queue="default")
    clock.advance(1)
    delayed = await queue.enqueue("sms", delay=60)
    page = await queue.list_jobs(type="email", limit=2)
    assert page.total == 5 and page.limit == 2 and page.offset == 0
    assert [j.id for j in page.jobs] == [ids[4], ids[3]]
    page = await queue.list_jobs(type="email", limit=2, offset=4)
    assert [j.id for j in page.jobs] == [ids[0]]
    oldest = await queue.list_jobs(limit=3, order="oldest")
    assert [j.id for j in oldest.jobs] == ids[:3] and oldest.total == 7
    assert [j.id for j in (await queue.list_jobs(status=JobStatus.DELAYED)).jobs] == [delayed.id]
    pending = await queue.list_jobs(status=JobStatus.PENDING, queue="default")
    assert [j.id for j in pending.jobs] == [sms.id]
    both = await queue.list_jobs(status=[JobStatus.PENDING, JobStatus.DELAYED], type=["sms"])
    assert {j.id for j in both.jobs} == {sms.id, delayed.id}
    assert (await queue.list_jobs(queue="emails", status="failed")).total == 0
    with pytest.raises(jobq.InvalidOption):
        await queue.list_jobs(order="sideways")
    with pytest.raises(jobq.InvalidOption):
        await queue.list_jobs(status="lost")


async def test_summary_and_throughput(queue: jobq.Queue, clock: jobq.FakeClock) -> None:
    await queue.enqueue("email", queue="emails")
    await queue.enqueue("email", queue="emails")
    await queue.enqueue("sms", delay=60)
    for outcome in ("complete", "fail"):
        await queue.enqueue("push", max_attempts=1, priority=10)
        claimed = await queue.dequeue()
        assert claimed is not None
        if outcome == "complete":
            await queue.complete(claimed)
        else:
            await queue.fail(claimed, "boom")
    rows = {(r.queue, r.type, r.status): r.count for r in await queue.summary()}
    assert rows == {
        ("emails", "email", JobStatus.PENDING): 2,
        ("default", "sms", JobStatus.DELAYED): 1,
        ("default", "push", JobStatus.COMPLETED): 1,
        ("default", "push", JobStatus.FAILED): 1,
    }
    rows_tp = await queue.throughput(minutes=3)
    assert len(rows_tp) == 3
    now = datetime.fromtimestamp(clock.now(), tz=UTC)
    assert rows_tp[-1].minute == now.replace(second=0, microsecond=0)
    assert (rows_tp[-1].completed, rows_tp[-1].failed) == (1, 1)
    assert all((r.completed, r.failed) == (0, 0) for r in rows_tp[:-1])
    clock.advance(600)
    assert all((r.completed, r.failed) == (0, 0) for r in await queue.throughput(minutes=5))
