"""Jobs one lost worker away from quarantine (suspects) run alone, on every
backend: a claim can leave them out or take only them, and a processor with
jobs in flight never starts one beside them."""

from __future__ import annotations

import asyncio
from typing import Any

from contract_helpers import MakeProcessor, Recorder, stored

import jobq


async def lose(queue: jobq.Queue, clock: jobq.FakeClock, job_id: str, times: int) -> None:
    """Claims ``job_id`` and lets its lease run out, ``times`` times."""
    for _ in range(times):
        (job,) = await queue.claim(1, rescue=False)
        assert job.id == job_id
        clock.advance(queue.lease + 1)
        await queue.rescue_expired()


async def test_a_claim_can_leave_out_or_take_only_jobs_lost_often(
    queue: jobq.Queue, clock: jobq.FakeClock
) -> None:
    suspect = await queue.enqueue("t", "suspect", priority=9, max_attempts=9)
    await lose(queue, clock, suspect.id, 2)
    plain = [(await queue.enqueue("t", i)).id for i in range(3)]
    _, left_out = await queue.settle_and_claim([], 10, lost_below=2)
    assert sorted(j.id for j in left_out) == sorted(plain)
    await queue.complete_many([(j, None) for j in left_out])
    _, only = await queue.settle_and_claim([], 10, lost_from=2)
    assert [(j.id, j.lost_count) for j in only] == [(suspect.id, 2)]


async def test_a_suspect_never_starts_beside_jobs_in_flight(
    queue: jobq.Queue, clock: jobq.FakeClock, make_processor: MakeProcessor
) -> None:
    suspect = await queue.enqueue("t", "suspect", priority=2, max_attempts=9)
    await lose(queue, clock, suspect.id, 2)
    # One job a claim: the first (the worker empty) takes the slow job; the
    # next ones, beside it, leave the suspect out.
    processor = make_processor(concurrency=4, batch_size=1)
    running: set[str] = set()
    overlaps: list[tuple[str, set[str]]] = []
    release = asyncio.Event()

    @processor.handler("t")
    async def handle(job: jobq.Job[Any]) -> None:
        overlaps.append((job.id, set(running)))
        running.add(job.id)
        try:
            if job.data == "slow":
                await release.wait()
            await asyncio.sleep(0.01)
        finally:
            running.discard(job.id)

    done = Recorder(processor, "job_completed")
    slow = await queue.enqueue("t", "slow", priority=3)
    others = [(await queue.enqueue("t", i)).id for i in range(6)]
    await processor.start()
    await done.wait_for(6)  # the others ran beside the slow one; the suspect waited
    assert (await stored(queue, suspect.id)).status is jobq.JobStatus.PENDING
    release.set()
    await done.wait_for(8)
    beside = dict(overlaps)
    assert beside[suspect.id] == set()  # it ran alone
    assert all(suspect.id not in beside[i] for i in [slow.id, *others])
    assert (await stored(queue, suspect.id)).status is jobq.JobStatus.COMPLETED
