"""The lease keeper: renews the leases it holds, fenced by each claim's
token; lets go of a job once its outcome is written; and renews from its own
thread while the event loop is blocked, naming the job that blocks it."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import pytest

import jobq
from jobq.processor.executor import Running
from jobq.processor.leases import LOOP_BLOCKED_AFTER, LeaseKeeper


async def test_renewals_are_fenced_and_stop_once_a_job_is_let_go() -> None:
    clock = jobq.FakeClock()
    async with jobq.MemoryQueue(clock=clock, lease=10) as queue:
        await queue.enqueue("t", 1)
        await queue.enqueue("t", 2)
        held, done = await queue.claim(2)
        keeper = LeaseKeeper(queue, 1.0, {})
        keeper.hold(held)
        keeper.hold(done)
        clock.advance(5)
        await queue.complete(done)  # its outcome is written: the claim is gone
        await keeper.renew(queue)
        assert keeper.lease_end(held) == clock.now() + 10
        assert keeper.lease_end(done) == 0  # found gone: not renewed again
        assert (await queue.get_job(done.id)).status is jobq.JobStatus.COMPLETED  # type: ignore[union-attr]
        keeper.release(held)
        clock.advance(5)
        await keeper.renew(queue)  # nothing held: nothing renewed
        job = await queue.get_job(held.id)
        assert job is not None and job.lease_expires_at is not None
        assert job.lease_expires_at.timestamp() == clock.now() - 5 + 10


async def test_a_later_claim_of_the_same_job_is_another_lease() -> None:
    async with jobq.MemoryQueue(lease=10) as queue:
        await queue.enqueue("t", 1)
        (first,) = await queue.claim(1)
        keeper = LeaseKeeper(queue, 1.0, {})
        keeper.hold(first)
        await queue.release(first)
        (second,) = await queue.claim(1)
        keeper.hold(second)
        keeper.release(first)  # the old claim's outcome, reported late
        assert keeper.held == {second.id: second}


async def test_the_keeper_renews_while_the_loop_is_blocked_and_names_the_blocker(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with jobq.MemoryQueue(lease=1.0) as queue:
        await queue.enqueue("t", 1)
        (job,) = await queue.claim(1)
        running: dict[str, Running] = {}
        keeper = LeaseKeeper(queue, 0.2, running)

        async def blocking() -> None:
            time.sleep(LOOP_BLOCKED_AFTER + 1.5)  # noqa: ASYNC251 - longer than the lease

        task = asyncio.ensure_future(blocking())
        running[job.id] = Running(job, task)
        keeper.hold(job)
        keeper.start()
        try:
            with caplog.at_level(logging.WARNING, logger="jobq"):
                await task
                await asyncio.sleep(0.3)  # the loop runs again: said so
        finally:
            await keeper.stop()
        assert await queue.rescue_expired() == []  # renewed all along
        stored: Any = await queue.get_job(job.id)
        assert stored.status is jobq.JobStatus.PROCESSING and stored.lease_expires_at.timestamp() > time.time()
        messages = [r.getMessage() for r in caplog.records]
        assert any(f"job {job.id} (type t) is blocking it" in m for m in messages), messages
        assert any("the event loop ran again after" in m for m in messages), messages


async def test_a_lease_found_gone_is_not_renewed_again(caplog: pytest.LogCaptureFixture) -> None:
    """A renewal that finds a running job's lease lost warns once; later
    renewals leave that claim out (the store is not asked again)."""
    clock = jobq.FakeClock()
    async with jobq.MemoryQueue(clock=clock, lease=10) as queue:
        await queue.enqueue("t", 1)
        await queue.enqueue("t", 2)
        lost, kept = await queue.claim(2)
        task = asyncio.ensure_future(asyncio.sleep(3600))
        keeper = LeaseKeeper(queue, 1.0, {lost.id: Running(lost, task)})
        keeper.hold(lost)
        keeper.hold(kept)
        asked: list[set[str]] = []
        extend = queue.store.extend_leases

        async def spy(leases: Any, *, until_ms: int) -> set[str]:
            asked.append({job_id for job_id, _ in leases})
            return await extend(leases, until_ms=until_ms)

        queue.store.extend_leases = spy  # type: ignore[method-assign]
        clock.advance(5)
        assert await queue.extend_leases([kept]) == set()
        clock.advance(6)
        assert [j.id for j in await queue.rescue_expired()] == [lost.id]
        asked.clear()
        with caplog.at_level(logging.WARNING, logger="jobq"):
            await keeper.renew(queue)
            await keeper.renew(queue)
        task.cancel()
        assert asked == [{lost.id, kept.id}, {kept.id}]
        assert keeper.lease_end(lost) == 0
        warnings = [r.getMessage() for r in caplog.records if "lost the lease" in r.getMessage()]
        assert warnings == [f"lost the lease on job {lost.id}; its outcome will not be recorded"]
