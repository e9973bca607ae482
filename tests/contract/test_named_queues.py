"""Named queues: jobs go to the queue they name, and a processor takes only
the queues it is given, with a concurrency per queue when given a mapping."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import jobq


async def test_enqueue_defaults_to_the_default_queue(queue: jobq.Queue) -> None:
    job = await queue.enqueue("t")
    assert job.queue == "default"
    assert (await queue.get_job(job.id)).queue == "default"  # type: ignore[union-attr]


async def test_dequeue_takes_only_the_queues_asked_for(queue: jobq.Queue) -> None:
    email = await queue.enqueue("send", 1, queue="emails", priority=1)
    await queue.enqueue("send", 2, queue="sms", priority=9)
    assert await queue.size(queues=["emails"]) == 1
    claimed = await queue.dequeue(queues=["emails"])
    assert claimed is not None and claimed.id == email.id and claimed.queue == "emails"
    assert await queue.dequeue(queues=["emails"]) is None
    other = await queue.dequeue()
    assert other is not None and other.queue == "sms"


async def test_processor_consumes_only_its_queues(make_queue: Any) -> None:
    queue: jobq.Queue = await make_queue()
    processor = jobq.JobProcessor(queue, queues=["emails"], poll_interval=0.05)
    ran: list[str] = []

    @processor.handler("send")
    async def send(job: jobq.Job[Any]) -> None:
        ran.append(job.queue)

    await queue.enqueue("send", queue="emails")
    other = await queue.enqueue("send", queue="sms")
    await processor.start()
    try:
        for _ in range(200):
            if ran:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
    finally:
        await processor.stop()
    assert ran == ["emails"]
    assert (await queue.get_job(other.id)).status is jobq.JobStatus.PENDING  # type: ignore[union-attr]


async def test_concurrency_per_queue(make_queue: Any) -> None:
    """With {"emails": 1, "default": 3}, at most 1 emails job and 3 default
    jobs run at once, and a backlog in one queue does not take the other's slots."""
    queue: jobq.Queue = await make_queue()
    processor = jobq.JobProcessor(queue, queues={"emails": 1, "default": 3}, poll_interval=0.05)
    assert processor.concurrency == 4
    running: dict[str, int] = {"emails": 0, "default": 0}
    peak: dict[str, int] = {"emails": 0, "default": 0}
    release = asyncio.Event()

    @processor.handler("work")
    async def work(job: jobq.Job[Any]) -> None:
        running[job.queue] += 1
        peak[job.queue] = max(peak[job.queue], running[job.queue])
        await release.wait()
        running[job.queue] -= 1

    for _ in range(6):
        await queue.enqueue("work", queue="emails")
    for _ in range(6):
        await queue.enqueue("work", queue="default")
    await processor.start()
    try:
        for _ in range(300):
            if running["emails"] == 1 and running["default"] == 3:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        assert running == {"emails": 1, "default": 3}
        release.set()
        for _ in range(500):
            if (await queue.counts())[jobq.JobStatus.COMPLETED] == 12:
                break
            await asyncio.sleep(0.01)
    finally:
        release.set()
        await processor.stop()
    assert peak == {"emails": 1, "default": 3}
    assert (await queue.counts())[jobq.JobStatus.COMPLETED] == 12


def test_queue_mapping_is_checked() -> None:
    queue = jobq.MemoryQueue()
    with pytest.raises(jobq.InvalidOption):
        jobq.JobProcessor(queue, queues={"emails": 0})
    with pytest.raises(jobq.InvalidOption):
        jobq.JobProcessor(queue, queues={})


async def test_a_claim_takes_only_the_queues_and_types_it_asks_for(queue: jobq.Queue) -> None:
    await queue.enqueue("t", 1, queue="c")
    await queue.enqueue("skip", 2, queue="a")
    assert await queue.claim(2, queues=["a", "b"], exclude_types=["skip"]) == []
    (in_c,) = await queue.claim(2, queues=["b", "c"])
    assert in_c.queue == "c"
    assert await queue.claim(2, exclude_types=["skip"]) == []
    (skipped,) = await queue.claim(2, queues=["a", "b"])
    assert skipped.type == "skip"
