"""The operators' overview on every backend: failures kept in history (a
retry, single or "Retry all failed", is a new attempt, not an erasure), the
oldest waiting job counted from when it became ready, and what each
registered worker enforces."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from contract_helpers import MakeProcessor, wait_until

import jobq
from jobq import admin

LEASE = 30.0  # seconds


@pytest.fixture
async def leased(make_queue: Any, clock: jobq.FakeClock) -> jobq.Queue:
    return await make_queue(clock=clock, lease=LEASE, worker_id="w1")


async def fail_for_good(queue: jobq.Queue, job_type: str) -> jobq.Job[Any]:
    job = await queue.enqueue(job_type, {"n": 1}, max_attempts=1)
    held = await queue.dequeue()
    assert held is not None and held.id == job.id
    await queue.fail(held, RuntimeError("provider down"))
    return job


async def complete_one(queue: jobq.Queue) -> None:
    held = await queue.dequeue()
    assert held is not None
    await queue.complete(held, "ok")


@pytest.mark.parametrize("how", ["single", "all"])
async def test_a_retried_failure_stays_in_the_overview(leased: jobq.Queue, clock: jobq.FakeClock, how: str) -> None:
    failed = [await fail_for_good(leased, "send") for _ in range(3)]
    await leased.enqueue("send", {"n": 2})
    await complete_one(leased)
    before = (await admin.overview(leased))["throughput"]
    assert (before["completed"], before["failed"]) == (1, 3)
    if how == "single":
        for job in failed:
            await leased.retry(job.id)
    else:
        report = await admin.retry_all_failed(leased)
        assert report.retried == 3 and report.not_retried == []
    clock.advance(1)
    after = await admin.overview(leased)
    assert after["counts"].get("failed", 0) == 0  # the jobs wait again...
    tp = after["throughput"]
    assert (tp["completed"], tp["failed"]) == (1, 3)  # ...and their failures are still counted
    assert tp["failure_rate"] == 0.75
    assert sum(row["failed"] for row in tp["series"]) == 3
    # `jobq stats` reads the same figures.
    assert (await admin.stats(leased))["throughput"]["failed"] == 3


async def test_every_failed_attempt_counts_in_the_throughput(leased: jobq.Queue, clock: jobq.FakeClock) -> None:
    await leased.enqueue("send", max_attempts=3)
    for _ in range(2):  # two attempts fail and are retried at once
        held = await leased.dequeue()
        assert held is not None
        await leased.fail(held, "boom", jobq.RetryDirective(True, 0))
    await complete_one(leased)
    rows = await leased.throughput(minutes=5)
    assert (sum(r.completed for r in rows), sum(r.failed for r in rows)) == (1, 2)
    clock.advance(6 * 60)
    assert all((r.completed, r.failed) == (0, 0) for r in await leased.throughput(minutes=5))


async def test_oldest_waiting_counts_from_when_the_job_became_ready(
    leased: jobq.Queue, clock: jobq.FakeClock
) -> None:
    old = await fail_for_good(leased, "old")
    clock.advance(300)  # created five minutes ago
    fresh = await leased.enqueue("fresh", queue="mail")
    clock.advance(60)  # waiting for a minute
    await leased.retry(old.id)  # ready again from now
    clock.advance(2)
    oldest = await leased.oldest_ready()
    assert oldest is not None and oldest.id == fresh.id
    overview = (await admin.overview(leased))["oldest_waiting"]
    assert overview["id"] == fresh.id and overview["waiting_seconds"] == pytest.approx(62, abs=0.01)
    retried = await leased.oldest_ready("default")
    assert retried is not None and retried.id == old.id
    now = datetime.fromtimestamp(clock.now(), UTC)
    assert admin.waited(retried, now) == pytest.approx(2)  # seconds, not the six minutes since it was created
    assert admin.waited(retried, now - timedelta(seconds=10)) == 0.0  # never negative
    await leased.enqueue("later", queue="mail", delay=3600)
    assert (await leased.oldest_ready("mail")).id == fresh.id  # type: ignore[union-attr]
    assert await leased.oldest_ready("nowhere") is None


async def test_a_worker_registers_the_limits_it_enforces(queue: jobq.Queue, make_processor: MakeProcessor) -> None:
    processor = make_processor(
        queues={"mail": 2, "sms": 3},
        rate_limit=jobq.RateLimit(10, 1.0),
        circuit_breaker=jobq.CircuitBreaker(failure_threshold=4, timeout=5.0, reset_timeout=30.0),
        limits=[jobq.KeyLimit(key="provider", concurrency=2)],
        job_timeout=60.0,
    )
    await processor.start()

    async def registered() -> bool:
        return bool(await queue.workers())

    await wait_until(registered)
    (worker,) = await queue.workers()
    assert worker.limits == {
        "queues": {"mail": 2, "sms": 3},
        "rate_limit": {"max_requests": 10, "window_seconds": 1.0},
        "circuit_breaker": {"failure_threshold": 4, "timeout": 5.0, "reset_timeout": 30.0},
        "key_limits": [{"key": "provider", "type": None, "rate": None, "per": 1.0, "concurrency": 2}],
        "job_timeout": 60.0,
    }
    assert worker.to_dict()["limits"] == worker.limits
    await processor.stop()


async def test_a_worker_without_limits_registers_none(queue: jobq.Queue, make_processor: MakeProcessor) -> None:
    processor = make_processor(concurrency=2)
    await processor.start()

    async def registered() -> bool:
        return bool(await queue.workers())

    await wait_until(registered)
    (worker,) = await queue.workers()
    assert worker.limits == {}
    await processor.stop()
