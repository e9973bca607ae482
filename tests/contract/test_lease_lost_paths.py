"""Races around a lease, decided by the fences (see ``jobq.transitions``):
a rescue decided on a read that went stale changes nothing; a renewal or an
outcome under an old claim token reports the lease lost and leaves the new
holder alone; a lease ends exactly at its end; one sweep rescues every
expired job, batch after batch; and a processor whose lease was lost
under a running handler records nothing over the new holder."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from contract_helpers import DEADLINE, stored

import jobq
from jobq import JobStatus, transitions
from jobq import rescue as rescue_module
from jobq.job import JobRecord

LEASE = 10.0  # seconds


@pytest.fixture
async def leased(make_queue: Any, clock: jobq.FakeClock) -> jobq.Queue:
    return await make_queue(clock=clock, lease=LEASE, worker_id="w1")


async def claim(queue: jobq.Queue) -> jobq.Job[Any]:
    (job,) = await queue.claim(1, rescue=False)
    return job


async def stale_rescue(queue: jobq.Queue) -> list[transitions.Transition]:
    """What a rescuer decides from its read of the expired leases now."""
    records = await queue.store.expired(now_ms=queue.now_ms(), limit=100, foreign_timeout_ms=3_600_000)
    assert records
    return [transitions.rescued(r, max_lost=queue.max_lost_leases, foreign_timeout_ms=3_600_000) for r in records]


async def test_a_rescue_decided_before_the_holder_renewed_changes_nothing(
    leased: jobq.Queue, clock: jobq.FakeClock
) -> None:
    job = await leased.enqueue("t", 1)
    held = await claim(leased)
    clock.advance(LEASE + 1)
    decided = await stale_rescue(leased)
    assert await leased.extend_leases([held]) == set()  # the holder renews first
    settled = await leased.store.settle(decided, now_ms=leased.now_ms(), returning=True)
    assert not isinstance(settled[0], JobRecord)  # refused: no row written
    again = await stored(leased, job.id)
    assert again.status is JobStatus.PROCESSING and again.lease_owner == "w1"
    assert (again.attempts, again.lost_count) == (0, 0)
    await leased.complete(held, "done")  # still the holder's
    assert (await stored(leased, job.id)).status is JobStatus.COMPLETED


async def test_a_rescue_decided_before_another_rescue_and_claim_changes_nothing(
    leased: jobq.Queue, clock: jobq.FakeClock
) -> None:
    """Rescuer A reads the expired lease; rescuer B rescues it, a worker
    claims it again and that lease runs out too; A's stale decision (the
    same status, an expired lease) is refused on the attempts it read."""
    job = await leased.enqueue("t", 1, max_attempts=5)
    await claim(leased)
    clock.advance(LEASE + 1)
    decided = await stale_rescue(leased)
    assert [j.id for j in await leased.rescue_expired()] == [job.id]
    await claim(leased)
    clock.advance(LEASE + 1)
    await leased.store.settle(decided, now_ms=leased.now_ms(), returning=True)
    again = await stored(leased, job.id)
    assert again.status is JobStatus.PROCESSING  # still the second claim's
    assert (again.attempts, again.lost_count) == (1, 1)


async def test_an_old_claim_cannot_renew_or_settle_a_job_claimed_again(
    leased: jobq.Queue, clock: jobq.FakeClock
) -> None:
    job = await leased.enqueue("t", 1, max_attempts=5)
    first = await claim(leased)
    clock.advance(LEASE + 1)
    await leased.rescue_expired()
    second = await claim(leased)
    assert second.lease_token != first.lease_token
    clock.advance(1)
    assert await leased.extend_leases([first], lease=100) == {job.id}
    for late in (leased.release(first), leased.cancel_running(first), leased.complete(first, "late")):
        with pytest.raises(jobq.LeaseLost):
            await late
    again = await stored(leased, job.id)
    assert again.status is JobStatus.PROCESSING and again.lease_expires_at == second.lease_expires_at
    assert await leased.extend_leases([second]) == set()


async def test_a_lease_runs_out_exactly_at_its_end(leased: jobq.Queue, clock: jobq.FakeClock) -> None:
    job = await leased.enqueue("t", 1)
    await claim(leased)
    clock.advance(LEASE - 0.001)
    # The store's read of expired claims agrees with the fence its writes check.
    assert await leased.store.expired(now_ms=leased.now_ms(), limit=10, foreign_timeout_ms=3_600_000) == []
    assert await leased.rescue_expired() == []
    assert (await stored(leased, job.id)).status is JobStatus.PROCESSING
    clock.advance(0.001)
    found = await leased.store.expired(now_ms=leased.now_ms(), limit=10, foreign_timeout_ms=3_600_000)
    assert [r.id for r in found] == [job.id]
    assert [j.id for j in await leased.rescue_expired()] == [job.id]


async def test_one_sweep_rescues_every_batch(
    leased: jobq.Queue, clock: jobq.FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rescue_module, "RESCUE_BATCH", 2)
    jobs = await leased.enqueue_many([jobq.NewJob("t", i) for i in range(5)])
    assert len(await leased.claim(5, rescue=False)) == 5
    clock.advance(LEASE + 1)
    assert sorted(j.id for j in await leased.rescue_expired()) == sorted(j.id for j in jobs)
    assert await leased.size() == 5


# -- a processor whose lease was lost while its handler ran -------------------------


async def take_over(queue: jobq.Queue, clock: jobq.FakeClock, job_id: str) -> jobq.Job[Any]:
    """The job's lease runs out under its handler: rescued, and claimed by another holder."""
    clock.advance(31)
    assert [j.id for j in await queue.rescue_expired()] == [job_id]
    (other,) = await queue.claim(1, rescue=False, owner="other")
    assert other.id == job_id
    return other


@pytest.mark.parametrize("ending", ["snooze", "cancel_job", "cancel_request"])
async def test_a_lost_lease_records_no_snooze_or_cancellation(
    queue: jobq.Queue,
    clock: jobq.FakeClock,
    make_processor: Any,
    caplog: pytest.LogCaptureFixture,
    ending: str,
) -> None:
    """The handler ends (snoozes, raises CancelJob, or is stopped by a cancel
    request) after its lease was lost: nothing is written over the new
    holder's claim, no event claims it was, and a warning says so."""
    # Renewals and the processor's own sweeps far apart: the test decides when the lease is lost.
    processor = make_processor(concurrency=1, heartbeat_interval=20, rescue_interval=60, cancel_check_interval=0.05)
    started, go = asyncio.Event(), asyncio.Event()

    @processor.handler("t")
    async def handle(job: jobq.Job[Any]) -> None:
        started.set()
        await go.wait()
        if ending == "snooze":
            raise jobq.SnoozeJob(5)
        if ending == "cancel_job":
            raise jobq.CancelJob("no longer wanted")
        await asyncio.sleep(3600)  # until the cancel request stops it

    events: list[str] = []
    for name in ("job_snoozed", "job_cancelled", "job_completed", "job_failed"):
        processor.on(name, lambda e: events.append(e.name))
    job_id = await processor.add("t", None)
    with caplog.at_level(logging.WARNING, logger="jobq"):
        await processor.start()
        await asyncio.wait_for(started.wait(), DEADLINE)
        other = await take_over(queue, clock, job_id)
        if ending == "cancel_request":
            await queue.cancel(job_id)  # running: a request its handler is stopped for
        go.set()
        what = "snooze" if ending == "snooze" else "cancellation"
        deadline = asyncio.get_running_loop().time() + DEADLINE
        while not any(f"its {what} was not recorded" in r.getMessage() for r in caplog.records):
            assert asyncio.get_running_loop().time() < deadline, [r.getMessage() for r in caplog.records]
            await asyncio.sleep(0.02)
        await processor.stop()
    row = await stored(queue, job_id)
    assert row.status is JobStatus.PROCESSING and row.lease_owner == "other", row
    assert row.lease_expires_at == other.lease_expires_at and (row.attempts, row.lost_count) == (1, 1)
    assert events == []
