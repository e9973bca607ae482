"""The dashboard's figures on every backend, aggregated by the store: attempt
outcomes per minute or hour from the attempt history (a retry keeps the
failures before it), run time and queue age per job type, cron schedules'
last slots."""

from __future__ import annotations

from typing import Any

import pytest

import jobq
from jobq.errors import InvalidOption


@pytest.fixture
async def leased(make_queue: Any, clock: jobq.FakeClock) -> jobq.Queue:
    return await make_queue(clock=clock, lease=30.0, worker_id="w1")


async def run(
    queue: jobq.Queue, clock: jobq.FakeClock, *, seconds: float, error: bool = False, retry: bool = False
) -> None:
    held = await queue.dequeue()
    assert held is not None
    clock.advance(seconds)
    if error:
        await queue.fail(held, RuntimeError("boom"), jobq.RetryDirective(retry, 0))
    else:
        await queue.complete(held, "ok")


def totals(rows: list[Any]) -> tuple[int, int]:
    return sum(r.completed for r in rows), sum(r.failed for r in rows)


async def test_a_retried_failure_stays_counted(leased: jobq.Queue, clock: jobq.FakeClock) -> None:
    job = await leased.enqueue("t", 1, max_attempts=1)
    await run(leased, clock, seconds=1, error=True)
    await leased.retry(job.id)
    clock.advance(61)
    await run(leased, clock, seconds=1)
    rows = await leased.outcomes("hour")
    assert len(rows) == 60  # one row per minute, zeros included
    assert totals(rows) == (1, 1)
    assert [(r.completed, r.failed) for r in rows if r.completed or r.failed] == [(0, 1), (1, 0)]
    assert rows[-1].minute.timestamp() == clock.now() // 60 * 60  # the current, partial minute last


async def test_retries_count_as_failures_and_the_day_window_is_hourly(
    leased: jobq.Queue, clock: jobq.FakeClock
) -> None:
    await leased.enqueue("t", 1, max_attempts=3)
    await run(leased, clock, seconds=1, error=True, retry=True)  # retried: a failed attempt all the same
    (job,) = (await leased.list_jobs()).jobs
    assert job.status == jobq.JobStatus.PENDING
    await run(leased, clock, seconds=1)
    day = await leased.outcomes("day")
    assert len(day) == 24 and totals(day) == (1, 1)
    assert all(r.minute.minute == 0 and r.minute.second == 0 for r in day)


async def test_outcomes_of_one_queue(leased: jobq.Queue, clock: jobq.FakeClock) -> None:
    await leased.enqueue("t", 1, queue="mail")
    await run(leased, clock, seconds=1)
    await leased.enqueue("t", 2, queue="other", max_attempts=1)
    await run(leased, clock, seconds=1, error=True)
    assert totals(await leased.outcomes(queue="mail")) == (1, 0)
    assert totals(await leased.outcomes(queue="other")) == (0, 1)
    assert totals(await leased.outcomes(queue="nowhere")) == (0, 0)
    assert totals(await leased.outcomes()) == (1, 1)


async def test_old_attempts_fall_out_of_the_window(leased: jobq.Queue, clock: jobq.FakeClock) -> None:
    await leased.enqueue("t", 1)
    await run(leased, clock, seconds=1)
    clock.advance(3600 + 60)
    assert totals(await leased.outcomes("hour")) == (0, 0)
    assert totals(await leased.outcomes("day")) == (1, 0)


async def test_run_time_and_queue_age_percentiles_per_type(leased: jobq.Queue, clock: jobq.FakeClock) -> None:
    for _ in range(19):
        await leased.enqueue("fast", 1)
        await run(leased, clock, seconds=0.004)  # 4 ms: the 5 ms bucket
    await leased.enqueue("fast", 1)
    clock.advance(3)  # waits 3 s: the 5 s bucket
    await run(leased, clock, seconds=40)  # 40 s: the 60 s bucket
    await leased.enqueue("slow", 1)
    await run(leased, clock, seconds=1.5)
    figures = await leased.durations("hour")
    assert set(figures) == {"fast", "slow"}
    fast = figures["fast"]
    assert fast["run"] == {"p50": 5, "p95": 5, "count": 20}
    assert (await leased.durations("hour"))["fast"]["run"]["count"] == 20
    assert fast["wait"]["count"] == 20 and fast["wait"]["p50"] == 1 and fast["wait"]["p95"] == 1
    assert figures["slow"]["run"] == {"p50": 2000, "p95": 2000, "count": 1}
    assert (await leased.durations(queue="nowhere")) == {}


async def test_the_slowest_twentieth_moves_p95(leased: jobq.Queue, clock: jobq.FakeClock) -> None:
    for seconds in [0.004] * 18 + [40, 40]:
        await leased.enqueue("t", 1)
        await run(leased, clock, seconds=seconds)
    run_time = (await leased.durations())["t"]["run"]
    assert (run_time["p50"], run_time["p95"]) == (5, 60_000)


async def test_no_schedule_yet_and_bad_windows(leased: jobq.Queue) -> None:
    assert await leased.cron_slots() == {}
    assert await leased.durations() == {}
    for bad in ("week", None, 3):
        with pytest.raises(InvalidOption):
            await leased.outcomes(bad)  # type: ignore[arg-type]


async def test_cron_slots_as_claimed(leased: jobq.Queue, clock: jobq.FakeClock) -> None:
    from jobq.job import JobRecord

    store = leased.store
    now = int(clock.now() * 1000)

    def record(job_id: str) -> JobRecord:
        return JobRecord(job_id, "tick", "null", "pending", 0, 0, 1, 0, now, now, None, None, None, None)

    assert not await store.claim_cron_slot("tick */5", now, record("c1"))  # first seen: stores the slot
    assert await store.claim_cron_slot("tick */5", now + 300_000, record("c2"))
    slots = await leased.cron_slots()
    assert list(slots) == ["tick */5"] and slots["tick */5"].timestamp() * 1000 == now + 300_000


async def test_the_jobs_each_schedule_made(leased: jobq.Queue) -> None:
    made = [
        await leased.enqueue("tick", i, metadata={"jobq.cron": "tick */5", "jobq.cron_slot": i}) for i in range(3)
    ]
    await leased.enqueue("tick", 9, metadata={"jobq.cron": "other"})
    await leased.enqueue("tick", 10, metadata={"unrelated": "tick */5"})
    await leased.enqueue("tick", 11)
    found = await leased.cron_jobs("tick */5")
    assert {j.id for j in found} == {j.id for j in made}
    assert sorted(j.metadata["jobq.cron_slot"] for j in found) == [0, 1, 2]
    assert len(await leased.cron_jobs("tick */5", limit=2)) == 2
    assert await leased.cron_jobs("nothing") == []
    with pytest.raises(InvalidOption):
        await leased.cron_jobs("tick */5", limit=0)
