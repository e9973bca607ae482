"""Cron schedules against every backend, on the fake clock: exactly one job
per slot however many processors race for it, and the missed-slot policy.

The multi-process race is in ``tests/acceptance/test_cron_processes.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from contract_helpers import DEADLINE, QUIET

import jobq
from jobq import JobStatus

pytest.importorskip("croniter")

EVERY_5_MIN = "*/5 * * * *"
# The fake clock starts at 2023-11-14 22:13:20 UTC: the last slot of
# EVERY_5_MIN is 22:10, the next 22:15.
FIRST = datetime(2023, 11, 14, 22, 15, tzinfo=UTC).timestamp()


@pytest.fixture
async def processors(
    backend: str, queue: jobq.Queue, make_queue: Any, clock: jobq.FakeClock
) -> AsyncIterator[Callable[..., Any]]:
    """Makes processors that share the test's store, each on a queue object
    of its own (SQLite and PostgreSQL: its own connections), and stops them."""
    made: list[jobq.JobProcessor] = []

    async def make(**options: Any) -> jobq.JobProcessor:
        own = queue if backend == "memory" else await make_queue(clock=clock)
        options.setdefault("poll_interval", 0.05)
        processor = jobq.JobProcessor(own, **options)
        made.append(processor)
        return processor

    yield make
    for processor in made:
        await processor.stop(timeout=1)


async def wait_until(predicate: Callable[[], Any], what: str) -> None:
    async def poll() -> None:
        while not (await predicate()):
            await asyncio.sleep(0.01)

    try:
        await asyncio.wait_for(poll(), DEADLINE)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def track(processor: jobq.JobProcessor) -> list[jobq.Event]:
    events: list[jobq.Event] = []

    processor.on("cron_enqueued", events.append)
    return events


async def started(processors: list[jobq.JobProcessor]) -> None:
    """Starts them and waits until each has settled the slot due now."""
    for processor in processors:
        await processor.start()

    async def settled() -> bool:
        return all(s.last_seen_ms >= 0 for p in processors for s in p.cron_schedules.values())

    await wait_until(settled, "the schedules to settle their first slot")


async def test_one_job_per_slot_with_racing_processors(
    queue: jobq.Queue, clock: jobq.FakeClock, processors: Callable[..., Any]
) -> None:
    ran: list[Any] = []
    made = [await processors() for _ in range(4)]
    for processor in made:
        processor.cron(EVERY_5_MIN, "report", {"kind": "daily"})
        processor.handle("report", lambda job: ran.append(job.data) or "ok")
    recorded = [track(p) for p in made]
    await started(made)
    await asyncio.sleep(QUIET)
    assert sum(len(r) for r in recorded) == 0  # the first slot seen is not run
    clock.set(FIRST - 1)
    for n in range(1, 5):
        clock.advance(300 if n > 1 else 1)

        async def enqueued(n: int = n) -> bool:
            return sum(len(r) for r in recorded) >= n

        await wait_until(enqueued, f"the job of slot {n}")
    await asyncio.sleep(QUIET)
    events = [e for r in recorded for e in r]
    assert len(events) == 4
    slots = sorted(e.job.metadata["jobq.cron_slot"] for e in events if e.job is not None)
    assert slots == [int((FIRST + 300 * i) * 1000) for i in range(4)]

    async def all_ran() -> bool:
        return len(ran) == 4

    await wait_until(all_ran, "the cron jobs to run")
    assert ran == [{"kind": "daily"}] * 4
    for event in events:
        assert event.job is not None
        job = await queue.get_job(event.job.id)
        assert job is not None and job.status is JobStatus.COMPLETED
        assert job.type == "report" and job.priority == 5
        assert job.metadata["jobq.cron"] == f"report {EVERY_5_MIN}"


async def test_a_missed_slot_runs_once_at_start_up(
    queue: jobq.Queue, clock: jobq.FakeClock, processors: Callable[..., Any]
) -> None:
    first = await processors()
    first.cron(EVERY_5_MIN, "tick", name="ticker")
    recorded = track(first)
    await started([first])
    clock.set(FIRST)

    async def one() -> bool:
        return len(recorded) >= 1

    await wait_until(one, "the first slot's job")
    await first.stop()
    # Every worker is down for 30 minutes: six slots pass.
    clock.advance(1800)
    second = await processors()
    second.cron(EVERY_5_MIN, "tick", name="ticker")
    later = track(second)
    await second.start()

    async def caught_up() -> bool:
        return len(later) >= 1

    await wait_until(caught_up, "the missed slot's job")
    await asyncio.sleep(QUIET)
    assert len(later) == 1  # once, not once per missed slot
    job = later[0].job
    assert job is not None and job.metadata["jobq.cron_slot"] == int((FIRST + 1800) * 1000)
    stored = await queue.get_job(job.id)
    assert stored is not None and stored.type == "tick"
    # The schedule goes on from there.
    clock.advance(300)

    async def next_one() -> bool:
        return len(later) >= 2

    await wait_until(next_one, "the following slot's job")


async def test_cron_decorator_registers_the_handler(
    queue: jobq.Queue, clock: jobq.FakeClock, processors: Callable[..., Any]
) -> None:
    processor = await processors()
    done = asyncio.Event()
    results: list[Any] = []

    @processor.cron("0 * * * *", "hourly", {"n": 1}, priority=9, metadata={"team": "ops"})
    async def hourly(job: jobq.Job[Any]) -> str:
        results.append((job.data, job.priority, job.metadata["team"]))
        done.set()
        return "ran"

    await started([processor])
    clock.advance(3600)
    await asyncio.wait_for(done.wait(), DEADLINE)
    assert results == [({"n": 1}, 9, "ops")]


async def test_bad_schedules_are_rejected(processors: Callable[..., Any]) -> None:
    processor = await processors()
    with pytest.raises(jobq.InvalidOption):
        processor.cron("every five minutes", "t")
    with pytest.raises(jobq.InvalidOption):
        processor.cron(EVERY_5_MIN, "t", timezone="Mars/Olympus")
    with pytest.raises(jobq.InvalidJob):
        processor.cron(EVERY_5_MIN, "t", {"not json": {1, 2}})
    processor.cron(EVERY_5_MIN, "t")
    with pytest.raises(jobq.InvalidOption):
        processor.cron(EVERY_5_MIN, "t")  # same name twice
    processor.cron(EVERY_5_MIN, "t", name="another")


async def test_store_claim_cron_slot_is_a_compare_and_set(queue: jobq.Queue) -> None:
    store = queue.store

    def record(n: int) -> Any:
        return queue._record(jobq.NewJob("t", n), queue.now_ms())

    assert await store.claim_cron_slot("s", 1000, record(0)) is False  # new: recorded only
    assert await queue.size() == 0
    assert await store.claim_cron_slot("s", 1000, record(1)) is False  # same slot
    assert await store.claim_cron_slot("s", 900, record(2)) is False  # older slot
    assert await store.claim_cron_slot("s", 2000, record(3)) is True
    assert await store.claim_cron_slot("s", 2000, record(4)) is False
    assert await store.claim_cron_slot("other", 2000, record(5)) is False
    assert await queue.size() == 1
    job = await queue.dequeue()
    assert job is not None and job.data == 3
