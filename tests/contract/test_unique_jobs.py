"""Unique jobs: while a job holding a unique key is unfinished, enqueueing the
key again returns that job (``deduplicated``) instead of adding one. The
database enforces it: 64 producers in 8 processes leave exactly one job."""

from __future__ import annotations

import asyncio
import multiprocessing
from typing import Any

import pytest

import jobq
from jobq import JobStatus


async def test_same_key_returns_the_existing_job(queue: jobq.Queue) -> None:
    first = await queue.enqueue("report", {"n": 1}, unique_key="daily-report")
    again = await queue.enqueue("report", {"n": 2}, unique_key="daily-report")
    assert first.deduplicated is False
    assert again.deduplicated is True
    assert again.id == first.id and again.data == {"n": 1}
    assert sum((await queue.counts()).values()) == 1


async def test_other_keys_and_no_key_are_independent(queue: jobq.Queue) -> None:
    a = await queue.enqueue("t", unique_key="a")
    b = await queue.enqueue("t", unique_key="b")
    c = await queue.enqueue("t")
    d = await queue.enqueue("t")
    assert len({a.id, b.id, c.id, d.id}) == 4
    assert not any(j.deduplicated for j in (a, b, c, d))


async def test_key_is_held_while_running(queue: jobq.Queue) -> None:
    first = await queue.enqueue("t", unique_key="k")
    claimed = await queue.dequeue()
    assert claimed is not None and claimed.id == first.id
    again = await queue.enqueue("t", unique_key="k")
    assert again.deduplicated and again.id == first.id and again.status is JobStatus.PROCESSING


@pytest.mark.parametrize("finish", ["complete", "fail", "cancel"])
async def test_key_is_free_once_finished(queue: jobq.Queue, finish: str) -> None:
    first = await queue.enqueue("t", unique_key="k", max_attempts=1)
    if finish == "cancel":
        assert await queue.cancel(first.id)
    else:
        claimed = await queue.dequeue()
        assert claimed is not None
        if finish == "complete":
            await queue.complete(claimed)
        else:
            await queue.fail(claimed, "boom")
    second = await queue.enqueue("t", unique_key="k")
    assert second.id != first.id and not second.deduplicated


async def test_enqueue_many_deduplicates_within_and_across(queue: jobq.Queue) -> None:
    held = await queue.enqueue("t", 0, unique_key="x")
    jobs = await queue.enqueue_many(
        [jobq.NewJob("t", 1, unique_key="x"), jobq.NewJob("t", 2, unique_key="y"), jobq.NewJob("t", 3, unique_key="y")]
    )
    assert [j.deduplicated for j in jobs] == [True, False, True]
    assert jobs[0].id == held.id and jobs[2].id == jobs[1].id
    assert sum((await queue.counts()).values()) == 2


async def test_retry_refuses_while_another_job_holds_the_key(queue: jobq.Queue) -> None:
    first = await queue.enqueue("t", unique_key="k")
    await queue.cancel(first.id)
    await queue.enqueue("t", unique_key="k")
    with pytest.raises(jobq.NotRetryable):
        await queue.retry(first.id)


async def test_bad_unique_key_is_rejected(queue: jobq.Queue) -> None:
    for bad in ("", 5, "x" * 300):
        with pytest.raises(jobq.InvalidJob):
            await queue.enqueue("t", unique_key=bad)  # type: ignore[arg-type]


async def test_concurrent_producers_in_one_process(make_queue: Any, backend: str) -> None:
    # Four connections to one store (one object for memory, which is per object).
    queues = [await make_queue() for _ in range(1 if backend == "memory" else 4)] * (4 if backend == "memory" else 1)
    jobs = await asyncio.gather(
        *(queues[i % 4].enqueue("t", i, unique_key="one") for i in range(32))
    )
    assert len({j.id for j in jobs}) == 1
    assert sum(not j.deduplicated for j in jobs) == 1
    assert sum((await queues[0].counts()).values()) == 1


PROCESSES = 8
TASKS = 8  # per process: 64 concurrent producers in all


def _produce(url: str, start: Any, results: Any) -> None:
    async def main() -> list[tuple[str, bool]]:
        queue = await jobq.connect(url)
        try:
            start.wait()
            jobs = await asyncio.gather(*(queue.enqueue("t", i, unique_key="one-key") for i in range(TASKS)))
            return [(j.id, j.deduplicated) for j in jobs]
        finally:
            await queue.close()

    results.put(asyncio.run(main()))


@pytest.mark.shared_store
async def test_64_producers_in_8_processes_leave_one_job(backend: str, queue_url: str) -> None:
    queue = await jobq.connect(queue_url)  # creates the schema before the race
    try:
        ctx = multiprocessing.get_context("spawn")
        start, results = ctx.Event(), ctx.Queue()
        procs = [ctx.Process(target=_produce, args=(queue_url, start, results)) for _ in range(PROCESSES)]
        for proc in procs:
            proc.start()
        await asyncio.sleep(0.5)
        start.set()
        outcomes: list[tuple[str, bool]] = []
        for _ in procs:
            outcomes += await asyncio.to_thread(results.get, True, 60)
        for proc in procs:
            await asyncio.to_thread(proc.join, 30)
            assert proc.exitcode == 0
        assert len(outcomes) == PROCESSES * TASKS
        assert len({job_id for job_id, _ in outcomes}) == 1
        assert sum(not dedup for _, dedup in outcomes) == 1
        assert sum((await queue.counts()).values()) == 1
    finally:
        await queue.close()
