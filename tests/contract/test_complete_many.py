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


async def test_complete_and_claim_finishes_one_batch_and_takes_the_next(queue: jobq.Queue) -> None:
    for n in range(6):
        await queue.enqueue("t", n, priority=10 - n)
    first = await queue.claim(3)
    outcomes, second = await queue.complete_and_claim([(job, job.data * 10) for job in first], 3)
    assert outcomes == [None] * 3
    assert [job.data for job in second] == [3, 4, 5]  # in dequeue order
    assert all(job.status is JobStatus.PROCESSING and job.lease_token for job in second)
    for job in first:
        stored = await queue.get_job(job.id)
        assert stored is not None and stored.status is JobStatus.COMPLETED and stored.result == job.data * 10
    # A claim with nothing to complete, and a completion with nothing left to claim.
    outcomes, none_left = await queue.complete_and_claim([(job, None) for job in second], 5)
    assert outcomes == [None] * 3 and none_left == []
    assert (await queue.counts())[JobStatus.COMPLETED] == 6


async def test_complete_and_claim_reports_a_lost_claim_and_still_claims(queue: jobq.Queue) -> None:
    a = await queue.enqueue("t", "a", priority=2)
    await queue.enqueue("t", "b", priority=1)
    await queue.enqueue("t", "c")
    held, lost = await queue.claim(2)
    assert held.id == a.id
    await queue.complete(lost.id)  # finished by id elsewhere: this claim is gone
    outcomes, claimed = await queue.complete_and_claim([(held, 1), (lost, 2)], 5)
    assert outcomes[0] is None and isinstance(outcomes[1], jobq.LeaseLost)
    assert [job.data for job in claimed] == ["c"]
    stored = await queue.get_job(held.id)
    assert stored is not None and stored.status is JobStatus.COMPLETED and stored.result == 1
