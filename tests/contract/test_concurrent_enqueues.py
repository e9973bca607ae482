"""Concurrent enqueues of one process: the SQL stores commit them together
(jobq.store.group), and each must still behave as if alone: stored when it
returns, failing alone, all or nothing within one call."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

import jobq
from jobq.job import JobRecord


async def _records(queue: jobq.Queue, n: int) -> tuple[JobRecord, list[JobRecord]]:
    """A stored job's record, and ``n`` records of new jobs like it."""
    first = await queue.enqueue("t", "first")
    stored = await queue.store.get(first.id)
    assert stored is not None
    return stored, [dataclasses.replace(stored, id=f"{first.id}-{i}", data=f'"new {i}"') for i in range(n)]


async def test_concurrent_enqueues_are_all_stored(queue: jobq.Queue) -> None:
    jobs = await asyncio.gather(*(queue.enqueue("t", i, priority=i % 3) for i in range(40)))
    assert len({job.id for job in jobs}) == 40
    for job in jobs:
        got = await queue.get_job(job.id)
        assert got is not None and got.data == job.data and got.priority == job.priority
    assert await queue.size() == 40


async def test_a_failing_insert_among_concurrent_ones_fails_alone(queue: jobq.Queue) -> None:
    stored, fresh = await _records(queue, 6)
    # The third insert reuses the stored job's id: the store refuses it.
    batches = [[r] for r in fresh[:2]] + [[stored]] + [[r] for r in fresh[2:4]] + [fresh[4:6]]
    results = await asyncio.gather(*(queue.store.insert(b) for b in batches), return_exceptions=True)
    assert [isinstance(r, BaseException) for r in results] == [False, False, True, False, False, False]
    for record in fresh:
        assert await queue.get_job(record.id) is not None
    again = await queue.get_job(stored.id)
    assert again is not None and again.data == "first"


async def test_one_call_is_all_or_nothing_beside_others(queue: jobq.Queue) -> None:
    stored, fresh = await _records(queue, 4)
    results = await asyncio.gather(
        queue.store.insert([fresh[0]]),
        queue.store.insert([fresh[1], stored, fresh[2]]),  # refused whole
        queue.store.insert([fresh[3]]),
        return_exceptions=True,
    )
    assert [isinstance(r, BaseException) for r in results] == [False, True, False]
    assert [await queue.get_job(r.id) is not None for r in fresh] == [True, False, False, True]


@pytest.mark.shared_store
async def test_each_enqueue_is_committed_when_it_returns(queue: jobq.Queue, make_queue: object) -> None:
    """Another connection to the store sees each job as soon as its enqueue
    returned, however many enqueues share the commit."""
    reader = await make_queue()  # type: ignore[operator]
    seen: list[bool] = []

    async def enqueue_and_look(i: int) -> None:
        job = await queue.enqueue("t", i)
        seen.append(await reader.get_job(job.id) is not None)

    await asyncio.gather(*(enqueue_and_look(i) for i in range(24)))
    assert seen == [True] * 24


async def test_a_cancelled_enqueue_leaves_the_others_alone(queue: jobq.Queue) -> None:
    tasks = [asyncio.create_task(queue.enqueue("t", i)) for i in range(10)]
    await asyncio.sleep(0)
    tasks[4].cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    ok = [job for job in done if isinstance(job, jobq.Job)]
    assert len(ok) >= 9
    for job in ok:
        assert await queue.get_job(job.id) is not None
    assert await queue.enqueue("t", "after") is not None
