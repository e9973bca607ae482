"""Foreign claims: jobs another writer (k-msg's workers, a script) moved to
``processing`` without a lease. jobq never takes them while they are held,
leaves their outcome as that writer writes it, and takes back one abandoned
for ``foreign_claim_timeout`` seconds after a rescuer first saw it.

The writer is :class:`contract_helpers.ForeignWriter` (k-msg's statements);
on the in-memory store nothing outside the process can write, so it applies
the same effect to the record, and the store must agree all the same."""

from __future__ import annotations

from typing import Any

import pytest
from contract_helpers import ForeignWriter, stored

import jobq
from jobq import JobStatus
from jobq.transitions import ABANDONED_ERROR, ABANDONED_QUARANTINE_ERROR

TIMEOUT = 120.0  # seconds: the foreign claim timeout of these tests
LEASE = 10.0  # seconds: jobq's own leases, much shorter


@pytest.fixture
async def shared(make_queue: Any, clock: jobq.FakeClock) -> jobq.Queue:
    return await make_queue(clock=clock, lease=LEASE, foreign_claim_timeout=TIMEOUT, worker_id="w1")


def ms(clock: jobq.FakeClock) -> int:
    return jobq.clock.now_ms(clock)


async def foreign_job(queue: jobq.Queue, **options: Any) -> tuple[ForeignWriter, jobq.Job[Any]]:
    """A job enqueued by jobq and claimed by the foreign writer."""
    job = await queue.enqueue("send", {"to": "+82"}, **options)
    writer = ForeignWriter(queue)
    await writer.claim(job.id)
    return writer, job


async def test_a_foreign_claim_is_never_taken_while_its_timeout_runs(
    shared: jobq.Queue, clock: jobq.FakeClock
) -> None:
    _, job = await foreign_job(shared)
    other = await shared.enqueue("send", {"to": "other"})
    # A rescue first sees the claim; dequeue (which rescues first) takes the other job only.
    assert await shared.rescue_expired() == []
    got = await shared.dequeue()
    assert got is not None and got.id == other.id
    await shared.complete(got)
    seen_at = ms(clock)
    held = await stored(shared, job.id)
    assert held.status is JobStatus.PROCESSING
    assert held.lease_expires_at is None  # no lease: process_at is still the time it was due
    assert held.process_at == job.process_at
    assert held.started_at is not None and jobq.clock.to_ms(held.started_at.timestamp()) == seen_at
    # Long past any jobq lease, and up to a millisecond before the timeout: held.
    for step in (LEASE * 3, TIMEOUT - LEASE * 3 - 0.001):
        clock.advance(step)
        assert await shared.rescue_expired() == []
        assert await shared.dequeue() is None
        again = await stored(shared, job.id)
        assert (again.status, again.attempts, again.lost_count, again.error) == (JobStatus.PROCESSING, 0, 0, None)


async def test_an_abandoned_foreign_claim_is_taken_back_once_with_one_lost_attempt(
    shared: jobq.Queue, clock: jobq.FakeClock
) -> None:
    _, job = await foreign_job(shared)
    assert await shared.rescue_expired() == []
    clock.advance(TIMEOUT)
    rescued = await shared.rescue_expired()
    assert [j.id for j in rescued] == [job.id]
    assert await shared.rescue_expired() == []
    back = await stored(shared, job.id)
    assert back.status is JobStatus.PENDING
    assert (back.attempts, back.lost_count) == (1, 1)
    assert back.error == ABANDONED_ERROR.format(timeout=TIMEOUT)
    assert back.lease_owner is None
    claimed = await shared.dequeue()
    assert claimed is not None and claimed.id == job.id and claimed.attempts == 1
    await shared.complete(claimed, "sent")
    done = await stored(shared, job.id)
    assert (done.status, done.result, done.attempts) == (JobStatus.COMPLETED, "sent", 1)


async def test_the_timeout_runs_from_when_a_rescuer_first_sees_the_claim(
    shared: jobq.Queue, clock: jobq.FakeClock
) -> None:
    # Due long ago, and no rescuer looked for a while: the claim may be fresh.
    _, job = await foreign_job(shared)
    clock.advance(TIMEOUT * 5)
    assert await shared.rescue_expired() == []
    clock.advance(TIMEOUT - 1)
    assert await shared.rescue_expired() == []
    clock.advance(1)
    assert [j.id for j in await shared.rescue_expired()] == [job.id]


async def test_the_foreign_writers_outcomes_stand(shared: jobq.Queue, clock: jobq.FakeClock) -> None:
    writer, done = await foreign_job(shared)
    _, failing = await foreign_job(shared, max_attempts=2)
    assert await shared.rescue_expired() == []
    clock.advance(5)
    await writer.complete(done.id, ms(clock))
    await writer.fail(failing.id, "smtp down", retry=True, now_ms=ms(clock))
    retried = await stored(shared, failing.id)
    assert (retried.status, retried.attempts, retried.error) == (JobStatus.PENDING, 1, "smtp down")
    await writer.claim(failing.id)
    await writer.fail(failing.id, "smtp down again", retry=True, now_ms=ms(clock))
    clock.advance(TIMEOUT * 2)
    assert await shared.rescue_expired() == []
    completed = await stored(shared, done.id)
    assert (completed.status, completed.attempts, completed.error) == (JobStatus.COMPLETED, 0, None)
    assert completed.completed_at is not None and completed.lease_owner is None
    failed = await stored(shared, failing.id)
    assert (failed.status, failed.attempts, failed.error) == (JobStatus.FAILED, 2, "smtp down again")
    assert failed.lost_count == 0


async def test_a_claim_taken_again_after_the_writers_retry_is_a_new_claim(
    shared: jobq.Queue, clock: jobq.FakeClock
) -> None:
    writer, job = await foreign_job(shared)
    assert await shared.rescue_expired() == []  # seen at attempt 0
    clock.advance(TIMEOUT - 10)
    await writer.fail(job.id, "timeout talking to the provider", retry=True, now_ms=ms(clock))
    await writer.claim(job.id)  # attempt 1, moments later
    clock.advance(10)
    # The first claim's timeout has passed, not the second's.
    assert await shared.rescue_expired() == []
    clock.advance(TIMEOUT - 1)
    assert await shared.rescue_expired() == []
    clock.advance(1)
    assert [j.id for j in await shared.rescue_expired()] == [job.id]
    back = await stored(shared, job.id)
    assert (back.status, back.attempts, back.lost_count) == (JobStatus.PENDING, 2, 1)


async def test_an_operators_retry_forgets_a_foreign_claim_seen_before(
    shared: jobq.Queue, clock: jobq.FakeClock
) -> None:
    writer, job = await foreign_job(shared, max_attempts=1)
    assert await shared.rescue_expired() == []  # seen at attempt 0
    await writer.fail(job.id, "bad number", retry=False, now_ms=ms(clock))
    clock.advance(TIMEOUT * 2)
    await shared.retry(job.id)  # attempts back to 0
    await writer.claim(job.id)
    assert await shared.rescue_expired() == []  # a new claim, seen now
    clock.advance(TIMEOUT - 1)
    assert await shared.rescue_expired() == []
    clock.advance(1)
    assert [j.id for j in await shared.rescue_expired()] == [job.id]


async def test_jobq_leases_are_unchanged_beside_foreign_claims(shared: jobq.Queue, clock: jobq.FakeClock) -> None:
    _, foreign = await foreign_job(shared)
    own = await shared.enqueue("send", {"to": "own"})
    claimed = await shared.dequeue()
    assert claimed is not None and claimed.id == own.id and claimed.lease_owner == "w1"
    clock.advance(LEASE)
    assert [j.id for j in await shared.rescue_expired()] == [own.id]
    assert (await stored(shared, foreign.id)).status is JobStatus.PROCESSING


async def test_a_foreign_claim_abandoned_too_often_is_quarantined(make_queue: Any, clock: jobq.FakeClock) -> None:
    queue = await make_queue(clock=clock, foreign_claim_timeout=TIMEOUT, max_lost_leases=2)
    writer, job = await foreign_job(queue, max_attempts=5)
    for _ in range(2):
        assert await queue.rescue_expired() == []
        clock.advance(TIMEOUT)
        assert [j.id for j in await queue.rescue_expired()] == [job.id]
        await writer.claim(job.id)
    # The second rescue failed it for good: the claim after it found nothing waiting.
    last = await stored(queue, job.id)
    assert last.status is JobStatus.FAILED and last.lost_count == 2 and last.attempts == 2
    assert last.error == ABANDONED_QUARANTINE_ERROR.format(lost=2, timeout=TIMEOUT)


async def test_a_cancel_asked_of_a_foreign_claim_ends_it_when_abandoned(
    shared: jobq.Queue, clock: jobq.FakeClock
) -> None:
    _, job = await foreign_job(shared)
    assert await shared.cancel(job.id) is True
    assert await shared.rescue_expired() == []
    assert (await stored(shared, job.id)).status is JobStatus.PROCESSING
    clock.advance(TIMEOUT)
    assert await shared.rescue_expired() == []  # cancelled, not rescued
    assert (await stored(shared, job.id)).status is JobStatus.CANCELLED


async def test_the_foreign_claim_timeout_option(make_queue: Any, queue_url: str) -> None:
    for bad in (0, -1, float("inf"), float("nan"), True, "60"):
        with pytest.raises(jobq.InvalidOption, match="foreign_claim_timeout"):
            await make_queue(foreign_claim_timeout=bad)
    queue = await make_queue()
    assert queue.foreign_claim_timeout == 900.0
    sep = "&" if "?" in queue_url else "?"
    async with jobq.connect(f"{queue_url}{sep}foreign_claim_timeout=60") as from_url:
        assert from_url.foreign_claim_timeout == 60.0
    with pytest.raises(jobq.InvalidURL, match="foreign_claim_timeout"):
        await jobq.connect(f"{queue_url}{sep}foreign_claim_timeout=soon")
