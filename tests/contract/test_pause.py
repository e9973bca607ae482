"""Pausing a named queue: the verbs, and workers that stop claiming from it
(while jobs keep arriving and running ones finish) and start again on resume."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

import pytest
from contract_helpers import QUIET, MakeProcessor, stored, wait_until

import jobq


async def test_pause_resume_and_paused(queue: jobq.Queue, clock: jobq.FakeClock) -> None:
    assert await queue.paused() == {}
    assert await queue.pause("emails") is True
    assert await queue.pause("emails") is False  # already paused
    assert await queue.pause("sms") is True
    paused = await queue.paused()
    assert list(paused) == ["emails", "sms"]
    assert all(isinstance(at, datetime) and at.tzinfo is not None for at in paused.values())
    assert paused["emails"].timestamp() == pytest.approx(clock.now(), abs=0.001)
    assert await queue.resume("emails") is True
    assert await queue.resume("emails") is False  # no longer paused
    assert await queue.resume("never-paused") is False
    assert list(await queue.paused()) == ["sms"]


async def test_pausing_keeps_jobs_where_they_are(queue: jobq.Queue) -> None:
    job = await queue.enqueue("send", queue="emails")
    await queue.pause("emails")
    later = await queue.enqueue("send", queue="emails")  # jobs keep arriving
    for one in (job, later):
        assert (await stored(queue, one.id)).status is jobq.JobStatus.PENDING
    assert await queue.size(queues=["emails"]) == 2


@pytest.mark.parametrize("bad", ["", "  ", 5, None, "a\x00b", "x" * 256])
async def test_bad_queue_names_are_refused(queue: jobq.Queue, bad: Any) -> None:
    for verb in (queue.pause, queue.resume):
        with pytest.raises(jobq.InvalidOption) as caught:
            await verb(bad)
        assert isinstance(caught.value, ValueError)


async def test_paused_queues_are_shared_by_every_queue_object(make_queue: Any) -> None:
    first: jobq.Queue = await make_queue()
    await first.pause("emails")
    if first.store.name == "memory":
        return  # a memory store is its process's own: no other object sees it
    second: jobq.Queue = await make_queue()
    assert list(await second.paused()) == ["emails"]
    assert await second.resume("emails") is True
    assert await first.paused() == {}


async def test_a_worker_stops_claiming_from_a_paused_queue(
    queue: jobq.Queue, make_processor: MakeProcessor
) -> None:
    """Jobs keep arriving in the paused queue and stay waiting; the other
    queues keep running; a job already running when the pause came finishes;
    after resume, the waiting jobs run."""
    processor = make_processor(concurrency=4)
    ran: list[str] = []
    release = asyncio.Event()

    @processor.handler("slow")
    async def slow(job: jobq.Job[Any]) -> str:
        await release.wait()
        return "done"

    @processor.handler("send")
    async def send(job: jobq.Job[Any]) -> None:
        ran.append(job.id)

    running = await queue.enqueue("slow", queue="emails")
    await processor.start()
    await wait_until(lambda: running.id in processor._jobs)
    await queue.pause("emails")
    await wait_until(lambda: processor.paused_queues == {"emails"})
    held = [await queue.enqueue("send", i, queue="emails") for i in range(3)]
    other = await queue.enqueue("send", queue="sms")
    await wait_until(lambda: other.id in ran)
    release.set()
    await wait_until(lambda: running.id not in processor._jobs)
    assert (await stored(queue, running.id)).status is jobq.JobStatus.COMPLETED
    await asyncio.sleep(QUIET)
    assert not any(job.id in ran for job in held)
    for job in held:
        assert (await stored(queue, job.id)).status is jobq.JobStatus.PENDING

    await queue.resume("emails")
    await wait_until(lambda: all(job.id in ran for job in held))
    assert processor.paused_queues == frozenset()


@pytest.mark.parametrize("queues", [["emails", "sms"], {"emails": 1, "sms": 2}], ids=["list", "per-queue"])
async def test_a_worker_of_named_queues_skips_the_paused_one(
    queue: jobq.Queue, make_processor: MakeProcessor, queues: Any
) -> None:
    """A worker given its queues (or a concurrency per queue) claims from
    the others, and waits when every queue it serves is paused."""
    processor = make_processor(queues=queues)
    ran: list[str] = []

    @processor.handler("send")
    async def send(job: jobq.Job[Any]) -> None:
        ran.append(job.queue)

    await queue.pause("emails")
    await queue.pause("sms")
    await processor.start()
    await wait_until(lambda: processor.paused_queues == {"emails", "sms"})
    await queue.enqueue("send", queue="emails")
    await queue.enqueue("send", queue="sms")
    await asyncio.sleep(QUIET)
    assert ran == []
    await queue.resume("sms")
    await wait_until(lambda: ran == ["sms"])
    await asyncio.sleep(QUIET)
    assert ran == ["sms"]
    await queue.resume("emails")
    await wait_until(lambda: sorted(ran) == ["emails", "sms"])
