"""``complete_many``: several completions in one transaction, each judged alone."""

from __future__ import annotations

import jobq
from jobq import JobStatus


async def test_completes_each_claimed_job_with_its_result(queue: jobq.Queue) -> None:
    for n in range(5):
        await queue.enqueue("t", n)
    claimed = await queue.claim(5)
    outcomes = await queue.complete_many([(job, {"n": job.data}) for job in claimed])
    assert outcomes == [None] * 5
    for job in claimed:
        stored = await queue.get_job(job.id)
        assert stored is not None
        assert stored.status is JobStatus.COMPLETED and stored.result == {"n": job.data}
        assert stored.completed_at is not None and stored.lease_token is None


async def test_a_lost_claim_fails_only_its_own_item(queue: jobq.Queue, clock: jobq.FakeClock) -> None:
    first = await queue.enqueue("t", 1, priority=1)
    await queue.enqueue("t", 2)
    held, lost = await queue.claim(2)
    assert held.id == first.id
    await queue.complete(lost.id)  # an operator finished it by id: that claim is gone
    outcomes = await queue.complete_many([(held, "ok"), (lost, "late"), ("no-such-id", None)])
    assert outcomes[0] is None
    assert isinstance(outcomes[1], jobq.LeaseLost)
    assert isinstance(outcomes[2], jobq.JobNotFound)
    late = await queue.get_job(lost.id)
    assert late is not None and late.result is None  # the late result was not written


async def test_by_id_items_act_whatever_holds_the_job(queue: jobq.Queue) -> None:
    waiting = await queue.enqueue("t", 1)
    assert await queue.complete_many([(waiting.id, 7)]) == [None]
    stored = await queue.get_job(waiting.id)
    assert stored is not None and stored.status is JobStatus.COMPLETED and stored.result == 7


async def test_empty_batch(queue: jobq.Queue) -> None:
    assert await queue.complete_many([]) == []
