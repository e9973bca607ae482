"""Leases, rescue of lost workers, release, and fenced complete/fail."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from contract_helpers import stored

import jobq
from jobq import JobStatus, RetryDirective

LEASE = 10.0  # seconds


def at(clock: jobq.FakeClock, offset: float = 0.0) -> datetime:
    return datetime.fromtimestamp(clock.now() + offset, tz=UTC)


@pytest.fixture
async def leased(make_queue: Any, clock: jobq.FakeClock) -> jobq.Queue:
    """A queue whose claims last ``LEASE`` seconds, owned by worker ``w1``."""
    return await make_queue(clock=clock, lease=LEASE, worker_id="w1")




async def claim(queue: jobq.Queue) -> jobq.Job[Any]:
    job = await queue.dequeue()
    assert job is not None
    return job


# -- leases ----------------------------------------------------------------------


async def test_dequeue_sets_the_lease(leased: jobq.Queue, clock: jobq.FakeClock) -> None:
    job = await leased.enqueue("t", 1)
    claimed = await claim(leased)
    assert claimed.lease_owner == "w1"
    assert claimed.lease_expires_at == at(clock, LEASE)
    assert claimed.process_at == job.process_at
    again = await stored(leased, job.id)
    assert again.lease_owner == "w1"
    assert again.lease_expires_at == at(clock, LEASE)
    assert again.process_at == job.process_at


async def test_default_lease_is_thirty_seconds(queue: jobq.Queue, clock: jobq.FakeClock) -> None:
    await queue.enqueue("t", 1)
    claimed = await claim(queue)
    assert claimed.lease_expires_at == at(clock, 30)


async def test_extend_leases(leased: jobq.Queue, clock: jobq.FakeClock) -> None:
    await leased.enqueue("t", 1)
    job = await claim(leased)
    clock.advance(8)
    assert await leased.extend_leases([job], lease=20) == set()
    assert (await stored(leased, job.id)).lease_expires_at == at(clock, 20)
    clock.advance(15)  # past the first lease, inside the renewed one
    assert await leased.rescue_expired() == []
    assert await leased.dequeue() is None
    await leased.complete(job, "ok")
    assert (await stored(leased, job.id)).status is JobStatus.COMPLETED


async def test_extend_leases_default_length(leased: jobq.Queue, clock: jobq.FakeClock) -> None:
    await leased.enqueue("t", 1)
    job = await claim(leased)
    clock.advance(5)
    assert await leased.extend_leases([job]) == set()
    assert (await stored(leased, job.id)).lease_expires_at == at(clock, LEASE)


async def test_extend_leases_reports_lost_claims(leased: jobq.Queue, clock: jobq.FakeClock) -> None:
    await leased.enqueue("t", 1)
    await leased.enqueue("t", 2)
    lost = await claim(leased)
    kept = await claim(leased)
    await leased.complete(lost.id)
    assert await leased.extend_leases([lost, kept]) == {lost.id}
    assert (await stored(leased, lost.id)).status is JobStatus.COMPLETED


async def test_rescue_returns_an_expired_job_to_waiting(leased: jobq.Queue, clock: jobq.FakeClock) -> None:
    job = await leased.enqueue("t", 1)
    await claim(leased)
    clock.advance(LEASE - 1)
    assert await leased.rescue_expired() == []
    clock.advance(1)
    rescued = await leased.rescue_expired()
    assert [r.id for r in rescued] == [job.id]
    after = await stored(leased, job.id)
    assert after.status is JobStatus.PENDING
    assert after.attempts == 1
    assert after.lost_count == 1
    assert after.error is not None and "lost" in after.error and "w1" in after.error
    assert after.failed_at is None
    assert after.lease_owner is None and after.lease_expires_at is None
    assert rescued[0] == after
    again = await claim(leased)
    assert again.id == job.id and again.attempts == 1


async def test_dequeue_rescues_expired_leases_itself(leased: jobq.Queue, clock: jobq.FakeClock) -> None:
    job = await leased.enqueue("t", 1)
    await claim(leased)
    clock.advance(LEASE + 1)
    again = await claim(leased)
    assert again.id == job.id and again.attempts == 1 and again.lost_count == 1


async def test_rescue_fails_for_good_after_three_lost_leases(
    leased: jobq.Queue, clock: jobq.FakeClock
) -> None:
    job = await leased.enqueue("t", 1, max_attempts=10)
    for lost in (1, 2):
        await claim(leased)
        clock.advance(LEASE)
        await leased.rescue_expired()
        after = await stored(leased, job.id)
        assert after.status is JobStatus.PENDING and after.lost_count == lost
    await claim(leased)
    clock.advance(LEASE)
    rescued = await leased.rescue_expired()
    assert len(rescued) == 1
    failed = await stored(leased, job.id)
    assert failed.status is JobStatus.FAILED
    assert failed.lost_count == 3 and failed.attempts == 3
    assert failed.failed_at == at(clock)
    assert failed.error is not None and "lost" in failed.error
    assert await leased.dequeue() is None


async def test_rescue_fails_a_job_out_of_attempts(leased: jobq.Queue, clock: jobq.FakeClock) -> None:
    job = await leased.enqueue("t", 1, max_attempts=1)
    await claim(leased)
    clock.advance(LEASE)
    await leased.rescue_expired()
    failed = await stored(leased, job.id)
    assert failed.status is JobStatus.FAILED
    assert failed.attempts == 1 and failed.lost_count == 1
    assert failed.failed_at is not None


async def test_rescue_counts_earlier_failed_attempts(leased: jobq.Queue, clock: jobq.FakeClock) -> None:
    job = await leased.enqueue("t", 1, max_attempts=2)
    await leased.fail(await claim(leased), "first", RetryDirective(True, 0))
    await claim(leased)
    clock.advance(LEASE)
    await leased.rescue_expired()
    failed = await stored(leased, job.id)
    assert failed.status is JobStatus.FAILED and failed.attempts == 2


async def test_rescue_leaves_other_jobs_alone(leased: jobq.Queue, clock: jobq.FakeClock) -> None:
    pending = await leased.enqueue("t", "pending")
    delayed = await leased.enqueue("t", "delayed", delay=100)
    done = await leased.enqueue("t", "done", priority=5)
    await leased.complete(await claim(leased))
    clock.advance(50)
    assert await leased.rescue_expired() == []
    assert (await stored(leased, pending.id)).attempts == 0
    assert (await stored(leased, delayed.id)).status is JobStatus.DELAYED
    assert (await stored(leased, done.id)).status is JobStatus.COMPLETED


# -- release -----------------------------------------------------------------------


async def test_release_puts_a_job_back_without_an_attempt(leased: jobq.Queue) -> None:
    job = await leased.enqueue("t", 1)
    claimed = await claim(leased)
    await leased.release(claimed)
    back = await stored(leased, job.id)
    assert back.status is JobStatus.PENDING
    assert back.attempts == 0
    assert back.process_at == job.process_at
    assert back.lease_owner is None
    again = await claim(leased)
    assert again.id == job.id and again.attempts == 0


async def test_release_with_a_delay(leased: jobq.Queue, clock: jobq.FakeClock) -> None:
    job = await leased.enqueue("t", 1)
    claimed = await claim(leased)
    await leased.release(claimed, delay=5)
    back = await stored(leased, job.id)
    assert back.status is JobStatus.DELAYED
    assert back.attempts == 0
    assert back.process_at == at(clock, 5)
    assert await leased.dequeue() is None
    clock.advance(5)
    assert (await claim(leased)).id == job.id


async def test_release_needs_the_claim(leased: jobq.Queue, clock: jobq.FakeClock) -> None:
    await leased.enqueue("t", 1)
    claimed = await claim(leased)
    with pytest.raises(TypeError):
        await leased.release(claimed.id)  # type: ignore[arg-type]
    clock.advance(LEASE)
    await leased.rescue_expired()
    with pytest.raises(jobq.LeaseLost):
        await leased.release(claimed)


# -- fencing -------------------------------------------------------------------------


async def test_late_complete_after_reclaim_raises_lease_lost(
    leased: jobq.Queue, clock: jobq.FakeClock
) -> None:
    job = await leased.enqueue("t", 1)
    first = await claim(leased)
    clock.advance(LEASE + 1)
    await leased.rescue_expired()
    second = await claim(leased)
    assert second.id == first.id
    before = await stored(leased, job.id)
    with pytest.raises(jobq.LeaseLost) as info:
        await leased.complete(first, "stale")
    assert isinstance(info.value, jobq.JobqError)
    with pytest.raises(jobq.LeaseLost):
        await leased.fail(first, "stale")
    with pytest.raises(jobq.LeaseLost):
        await leased.fail(first, "stale", RetryDirective(True, 0))
    after = await stored(leased, job.id)
    assert after == before
    assert after.status is JobStatus.PROCESSING and after.result is None and after.attempts == 1
    await leased.complete(second, "fresh")
    done = await stored(leased, job.id)
    assert done.status is JobStatus.COMPLETED and done.result == "fresh"


async def test_late_complete_after_rescue_raises_lease_lost(
    leased: jobq.Queue, clock: jobq.FakeClock
) -> None:
    job = await leased.enqueue("t", 1)
    first = await claim(leased)
    clock.advance(LEASE)
    await leased.rescue_expired()
    before = await stored(leased, job.id)
    with pytest.raises(jobq.LeaseLost):
        await leased.complete(first)
    with pytest.raises(jobq.LeaseLost):
        await leased.fail(first, "stale")
    assert await stored(leased, job.id) == before


async def test_fenced_calls_after_completion_by_id_raise_lease_lost(
    leased: jobq.Queue, clock: jobq.FakeClock
) -> None:
    job = await leased.enqueue("t", 1)
    claimed = await claim(leased)
    clock.advance(1)
    await leased.complete(job.id, "operator")
    before = await stored(leased, job.id)
    with pytest.raises(jobq.LeaseLost):
        await leased.complete(claimed, "worker")
    with pytest.raises(jobq.LeaseLost):
        await leased.fail(claimed, "worker", RetryDirective(True, 0))
    after = await stored(leased, job.id)
    assert after == before
    assert after.status is JobStatus.COMPLETED and after.result == "operator" and after.attempts == 0


async def test_fenced_calls_after_failure_by_id_raise_lease_lost(leased: jobq.Queue) -> None:
    job = await leased.enqueue("t", 1)
    claimed = await claim(leased)
    await leased.fail(job.id, "operator")
    before = await stored(leased, job.id)
    with pytest.raises(jobq.LeaseLost):
        await leased.complete(claimed)
    with pytest.raises(jobq.LeaseLost):
        await leased.fail(claimed, "worker")
    assert await stored(leased, job.id) == before


async def test_expired_but_unclaimed_lease_still_completes(
    leased: jobq.Queue, clock: jobq.FakeClock
) -> None:
    job = await leased.enqueue("t", 1)
    claimed = await claim(leased)
    clock.advance(LEASE * 3)  # nobody rescued it yet
    await leased.complete(claimed, "late but fine")
    done = await stored(leased, job.id)
    assert done.status is JobStatus.COMPLETED and done.result == "late but fine"


async def test_fenced_complete_of_a_removed_job_raises_job_not_found(leased: jobq.Queue) -> None:
    job = await leased.enqueue("t", 1)
    claimed = await claim(leased)
    await leased.remove(job.id)
    with pytest.raises(jobq.JobNotFound):
        await leased.complete(claimed)
    with pytest.raises(jobq.JobNotFound):
        await leased.fail(claimed, "x")


async def test_unfenced_fail_leaves_a_completed_job_completed(leased: jobq.Queue) -> None:
    job = await leased.enqueue("t", 1)
    await leased.complete(job.id, "done")
    await leased.fail(job.id, "too late")
    after = await stored(leased, job.id)
    assert after.status is JobStatus.COMPLETED and after.result == "done" and after.attempts == 0


async def test_two_sqlite_queues_on_one_file_never_share_a_job(tmp_path: Any, clock: jobq.FakeClock) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    async with jobq.connect(url, clock=clock) as a, jobq.connect(url, clock=clock) as b:
        for i in range(20):
            await a.enqueue("t", i)
        seen: list[str] = []
        for _ in range(10):
            for q in (a, b):
                job = await q.dequeue()
                assert job is not None
                seen.append(job.id)
        assert len(set(seen)) == 20
        assert await a.dequeue() is None and await b.dequeue() is None


async def test_a_claim_that_reaches_a_blocked_loop_after_its_lease_ran_out_does_not_start(
    queue: jobq.Queue, clock: jobq.FakeClock, make_processor: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A claim commits, but the worker's event loop is blocked (a synchronous
    call in an ``async`` handler) until past the lease, so the claimed job is
    not yet held and not renewed; meanwhile another worker rescues it and
    claims it. When the claim reaches the loop the job does not start here:
    it runs once, elsewhere."""
    job = await queue.enqueue("t", 1)
    ran: list[str] = []
    elsewhere: list[jobq.Job[Any]] = []
    real = queue.settle_and_claim

    async def claim_then_block(*args: Any, **kwargs: Any) -> Any:
        errors, jobs = await real(*args, **kwargs)
        if jobs and not elsewhere:
            clock.advance(queue.lease + 1)  # the loop stayed blocked past the lease
            assert [j.id for j in await queue.rescue_expired()] == [job.id]  # another worker's rescuer
            elsewhere.extend(await queue.claim(1))  # and its claim
        return errors, jobs

    queue.settle_and_claim = claim_then_block  # type: ignore[method-assign]
    processor = make_processor()

    @processor.handler("t")
    async def handle(claimed: jobq.Job[Any]) -> None:
        ran.append(claimed.id)

    with caplog.at_level(logging.WARNING, logger="jobq"):
        await processor.start()
        deadline = time.monotonic() + 30
        while "is not started here" not in caplog.text and not ran:
            assert time.monotonic() < deadline, caplog.text
            await asyncio.sleep(0.01)
        await processor.stop(timeout=1)
    assert ran == []
    assert [j.id for j in elsewhere] == [job.id]
    now = await stored(queue, job.id)
    assert now.status is JobStatus.PROCESSING and now.lease_token == elsewhere[0].lease_token
    await queue.complete(elsewhere[0], "done")  # the other worker's claim stands (no LeaseLost)
