"""A late fenced complete: once a claim expired and another queue claimed the
job again, the first claimant's ``complete``/``fail``/``release`` raise
``jobq.LeaseLost`` and change nothing; the job stays with its new holder."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from proc import Children, rows, touch

import jobq

pytestmark = pytest.mark.slow


async def assert_late_calls_raise(late: jobq.Queue, job: jobq.Job[object]) -> None:
    with pytest.raises(jobq.LeaseLost):
        await late.complete(job, {"by": "late"})
    with pytest.raises(jobq.LeaseLost):
        await late.fail(job, "late failure", jobq.RetryDirective(True, 0))
    with pytest.raises(jobq.LeaseLost):
        await late.fail(job, "late failure")
    with pytest.raises(jobq.LeaseLost):
        await late.release(job)
    assert await late.extend_leases([job]) == {job.id}


async def async_wait_until(predicate, what: str, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what}"
        await asyncio.sleep(0.02)
    return value


async def test_late_complete_from_another_process_raises_lease_lost(
    db: Path, workdir: Path, children: Children
) -> None:
    async with jobq.SQLiteQueue(db, lease=0.5, worker_id="A") as a:
        enqueued = await a.enqueue("t", {"k": 1})
        job_a = await a.dequeue()
        assert job_a is not None and job_a.id == enqueued.id and job_a.lease_expires_at is not None
        expires = job_a.lease_expires_at.timestamp()
        await async_wait_until(lambda: time.time() > expires + 0.05, "A's lease to expire")

        b = children.spawn("claim_hold", {"db": str(db)}, "B")
        claim_file = workdir / "claim-B.json"
        await async_wait_until(
            lambda: claim_file.exists() or not b.alive(), "process B to rescue and claim the job"
        )
        assert b.alive(), b.describe()
        claim = json.loads(claim_file.read_text())
        assert claim == {
            "rescued": [job_a.id],
            "id": job_a.id,
            "lease_owner": "B",
            "attempts": 1,
            "lost_count": 1,
        }

        await assert_late_calls_raise(a, job_a)

        row = rows(db)[job_a.id]
        assert row["status"] == "processing" and row["lease_owner"] == "B", row
        assert row["attempts"] == 1 and row["lost_count"] == 1, row
        assert row["result"] is None and row["completed_at"] is None and row["failed_at"] is None, row
        assert row["process_at"] > time.time() * 1000 + 10_000, "B's 30 s lease was cut short"
        held = await a.get_job(job_a.id)
        assert held is not None and held.status is jobq.JobStatus.PROCESSING and held.lease_owner == "B"

        touch(workdir / "go")
        assert b.wait(60) == 0, b.describe()
        done = await a.get_job(job_a.id)
        assert done is not None and done.status is jobq.JobStatus.COMPLETED
        assert done.result == {"by": "B"} and done.attempts == 1 and done.lost_count == 1
        assert b.stderr() == "", b.describe()


async def test_late_complete_with_two_queues_on_one_file_raises_lease_lost(db: Path) -> None:
    clock = jobq.FakeClock(time.time())
    async with (
        jobq.SQLiteQueue(db, clock=clock, lease=1.0, worker_id="A") as a,
        jobq.SQLiteQueue(db, clock=clock, lease=30.0, worker_id="B") as b,
    ):
        first = await a.enqueue("t", {"k": 1})
        other = await a.enqueue("t", {"k": 2}, priority=-1)
        job_a = await a.dequeue()
        assert job_a is not None and job_a.id == first.id

        clock.advance(1.5)  # A's lease is over; B's dequeue rescues and claims it
        job_b = await b.dequeue()
        assert job_b is not None and job_b.id == first.id
        assert job_b.lease_owner == "B" and job_b.attempts == 1 and job_b.lost_count == 1

        await assert_late_calls_raise(a, job_a)
        held = await b.get_job(first.id)
        assert held is not None and held.status is jobq.JobStatus.PROCESSING
        assert held.lease_owner == "B" and held.attempts == 1 and held.result is None

        # A's own, live claims are unaffected; B finishes what it holds.
        job_a2 = await a.dequeue()
        assert job_a2 is not None and job_a2.id == other.id
        await a.complete(job_a2, "a-done")
        await b.complete(job_b, "b-done")
        done = await a.get_job(first.id)
        assert done is not None and done.status is jobq.JobStatus.COMPLETED and done.result == "b-done"
        assert (await b.get_job(other.id)).result == "a-done"  # type: ignore[union-attr]
        assert await a.dequeue() is None
