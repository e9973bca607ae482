"""The completer's two ways of writing completions: with the next claim
(deferred), or on its own at once."""

from __future__ import annotations

import asyncio
from typing import Any

import jobq
from jobq import JobStatus
from jobq.processor.completer import Completer, Completion


async def claimed(queue: jobq.Queue, n: int) -> list[jobq.Job[Any]]:
    for i in range(n):
        await queue.enqueue("t", i)
    return await queue.claim(n)


async def test_without_a_claim_coming_completions_are_written_at_once() -> None:
    async with jobq.connect("memory://") as queue:
        outcomes: list[tuple[str, BaseException | None]] = []
        completer = Completer(queue, lambda c, error: outcomes.append((c[0].id, error)))
        jobs = await claimed(queue, 3)
        for job in jobs:
            completer.hand_in(job, job.data, 0.0)
        await completer.drain()
        assert outcomes == [(job.id, None) for job in jobs]
        assert (await queue.counts())[JobStatus.COMPLETED] == 3


async def test_deferred_completions_wait_for_take_or_flush() -> None:
    async with jobq.connect("memory://") as queue:
        outcomes: list[tuple[str, BaseException | None]] = []
        completer = Completer(queue, lambda c, error: outcomes.append((c[0].id, error)))
        jobs = await claimed(queue, 4)
        completer.defer()
        for job in jobs:
            completer.hand_in(job, None, 0.0)
        await asyncio.sleep(0.01)
        assert outcomes == [] and len(completer) == 4  # held for the next claim
        batch: list[Completion] = completer.take()
        assert len(completer) == 0
        results, _ = await queue.complete_and_claim([(job, result) for job, result, _ in batch[:2]], 1)
        completer.settle(batch[:2], results)
        completer.give_back(batch[2:])  # as after a failed claim: written on their own
        await completer.drain()
        assert sorted(outcomes, key=str) == sorted([(job.id, None) for job in jobs], key=str)


async def test_a_lost_claim_is_reported_for_its_job_alone() -> None:
    async with jobq.connect("memory://") as queue:
        outcomes: dict[str, BaseException | None] = {}
        completer = Completer(queue, lambda c, error: outcomes.__setitem__(c[0].id, error))
        held, lost = await claimed(queue, 2)
        await queue.complete(lost.id)  # finished by id elsewhere: this claim is gone
        completer.hand_in(held, 1, 0.0)
        completer.hand_in(lost, 2, 0.0)
        await completer.drain()
        assert outcomes[held.id] is None
        assert isinstance(outcomes[lost.id], jobq.LeaseLost)
