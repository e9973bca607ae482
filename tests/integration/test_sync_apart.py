"""A SQLite worker at durability "full" writes finished jobs with its next
claim, commits without a sync and syncs the WAL apart (see
``docs/sqlite.md``): its outcomes are reported only once synced, at most
``MAX_UNSYNCED`` batches wait for their sync, and a failed sync is logged
while the committed outcomes are reported."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest

import jobq
from jobq.errors import StoreUnavailable
from jobq.processor.completer import MAX_UNSYNCED


def counting(processor: jobq.JobProcessor) -> dict[str, int]:
    seen = {"job_started": 0, "job_completed": 0}
    for name in seen:
        processor.on(name, lambda event, name=name: seen.__setitem__(name, seen[name] + 1))
    return seen


async def settles(condition: Any, timeout: float = 30.0) -> None:
    """Waits until ``condition()`` holds and stays so for a moment."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if condition():
            await asyncio.sleep(0.3)
            if condition():
                return
        await asyncio.sleep(0.02)
    raise AssertionError("the condition never held")


async def test_outcomes_wait_for_their_sync_and_few_batches_wait_at_once(tmp_path: Path) -> None:
    async with jobq.SQLiteQueue(tmp_path / "jobs.db") as queue:
        assert queue.store.syncs_apart
        await queue.enqueue_many([jobq.NewJob("t", {"n": n}) for n in range(20)])
        gate = asyncio.Event()
        sync = queue.store.sync

        async def held_sync() -> None:
            await gate.wait()
            await sync()

        queue.store.sync = held_sync  # type: ignore[method-assign]
        processor = jobq.JobProcessor(queue, concurrency=1)
        processor.handle("t", lambda job: None)
        seen = counting(processor)
        await processor.start()
        try:
            # One job at a time: each claim after the first carries the
            # previous job's completion, unreported while its sync waits;
            # with MAX_UNSYNCED of them waiting, the claim loop waits too.
            await settles(lambda: seen["job_started"] == MAX_UNSYNCED + 1)
            assert seen["job_completed"] == 0
            gate.set()
            await settles(lambda: seen["job_completed"] == 20)
        finally:
            gate.set()
            await processor.stop()
        counts = await queue.counts()
        assert counts[jobq.JobStatus.COMPLETED] == 20


async def test_a_failed_sync_is_logged_and_the_committed_outcomes_reported(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with jobq.SQLiteQueue(tmp_path / "jobs.db") as queue:
        await queue.enqueue_many([jobq.NewJob("t", {"n": n}) for n in range(5)])
        sync = queue.store.sync
        failures = [StoreUnavailable("the disk said no")]

        async def failing_sync() -> None:
            if failures:
                raise failures.pop()
            await sync()

        queue.store.sync = failing_sync  # type: ignore[method-assign]
        processor = jobq.JobProcessor(queue, concurrency=1)
        processor.handle("t", lambda job: None)
        seen = counting(processor)
        with caplog.at_level(logging.ERROR, logger="jobq"):
            await processor.start()
            try:
                await settles(lambda: seen["job_completed"] == 5)
            finally:
                await processor.stop()
        assert not failures  # the failing sync was met
        assert any("syncing the database failed" in r.getMessage() for r in caplog.records), caplog.text
        assert (await queue.counts())[jobq.JobStatus.COMPLETED] == 5


async def test_a_retry_is_reported_before_its_job_runs_again(tmp_path: Path) -> None:
    # A retry due at once, among many quick jobs that keep the claim loop
    # busy: its report (job_retry) must still come before the next attempt
    # starts, so it is never left to a sync that runs apart.
    async with jobq.SQLiteQueue(tmp_path / "jobs.db") as queue:
        await queue.enqueue("retried", {}, max_attempts=5)
        await queue.enqueue_many([jobq.NewJob("quick", {"n": n}) for n in range(2_000)])
        order: list[str] = []
        processor = jobq.JobProcessor(queue, concurrency=8, retry_delays=[0.0])

        async def retried(job: jobq.Job[Any]) -> None:
            order.append(f"start {job.attempts}")
            if job.attempts < 3:
                raise RuntimeError("again")

        processor.handle("retried", retried)
        processor.handle("quick", lambda job: None)
        processor.on("job_retry", lambda event: order.append("retry reported") if event.job.type == "retried" else None)
        done = asyncio.Event()
        processor.on("job_completed", lambda event: done.set() if event.job.type == "retried" else None)
        await processor.start()
        try:
            await asyncio.wait_for(done.wait(), 60)
        finally:
            await processor.stop()
        expected = ["start 0", "retry reported", "start 1", "retry reported", "start 2", "retry reported", "start 3"]
        assert order == expected, order
