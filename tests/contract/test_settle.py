"""``settle``: transitions decided by their caller, written under their fence.

A batch may mix every kind of outcome; each store writes a batch with a
statement built for what its transitions have in common, so mixed and
uniform batches must land the same, each judged alone.
"""

from __future__ import annotations

import jobq
from jobq import JobStatus, transitions


async def _claimed(queue: jobq.Queue, count: int) -> list[jobq.Job]:
    for n in range(count):
        await queue.enqueue("t", n, max_attempts=2)
    jobs = await queue.claim(count)
    assert len(jobs) == count
    return jobs


async def test_a_mixed_batch_writes_each_transition(queue: jobq.Queue) -> None:
    done, retried, failed, released, cancelled = await _claimed(queue, 5)
    errors = await queue.settle(
        [
            transitions.completed(done.id, done.lease_token, '{"ok": 1}'),
            transitions.failed_attempt(
                retried.id, token=retried.lease_token, attempts=0, max_attempts=2, error="boom",
                retry_delay_ms=60_000,
            ),
            transitions.failed_attempt(
                failed.id, token=failed.lease_token, attempts=1, max_attempts=2, error="gone",
                retry_delay_ms=0,
            ),
            transitions.released(released.id, released.lease_token or "", None),
            transitions.cancelled(cancelled.id, cancelled.lease_token or "", "stop"),
        ]
    )  # fmt: skip
    assert errors == [None] * 5
    by_id = {job.id: await queue.get_job(job.id) for job in (done, retried, failed, released, cancelled)}
    stored = by_id[done.id]
    assert stored is not None and stored.status is JobStatus.COMPLETED and stored.result == {"ok": 1}
    stored = by_id[retried.id]
    assert stored is not None and stored.status is JobStatus.DELAYED
    assert stored.attempts == 1 and stored.error == "boom" and stored.failed_at is None
    stored = by_id[failed.id]
    assert stored is not None and stored.status is JobStatus.FAILED
    assert stored.attempts == 2 and stored.error == "gone" and stored.failed_at is not None
    stored = by_id[released.id]
    assert stored is not None and stored.status is JobStatus.PENDING and stored.attempts == 0
    stored = by_id[cancelled.id]
    assert stored is not None and stored.status is JobStatus.CANCELLED and stored.error == "stop"
    for job in by_id.values():
        assert job is not None and job.lease_token is None and job.lease_owner is None


async def test_a_uniform_batch_with_one_lost_claim(queue: jobq.Queue) -> None:
    held, lost, other = await _claimed(queue, 3)
    await queue.complete(lost.id)  # finished by an operator: that claim is gone
    errors = await queue.settle(
        [transitions.completed(job.id, job.lease_token, None) for job in (held, lost, other)]
        + [transitions.completed("no-such-id", "token", None)]
    )
    assert errors[0] is None and errors[2] is None
    assert isinstance(errors[1], jobq.LeaseLost) and isinstance(errors[3], jobq.JobNotFound)


async def test_a_compare_and_set_misses_when_the_row_changed(queue: jobq.Queue) -> None:
    (job,) = await _claimed(queue, 1)
    stale = transitions.failed_attempt(
        job.id, token=None, attempts=job.attempts + 1, max_attempts=job.max_attempts, error="x",
        retry_delay_ms=None, expect_status="processing",
    )  # fmt: skip
    (error,) = await queue.settle([stale])
    assert isinstance(error, jobq.LeaseLost)
    fresh = stale._replace(expect_attempts=job.attempts)
    assert await queue.settle([fresh]) == [None]
    stored = await queue.get_job(job.id)
    assert stored is not None and stored.status is JobStatus.FAILED
