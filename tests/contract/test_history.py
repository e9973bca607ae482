"""The attempt history and the worker registry, on every backend: one row per
attempt for each outcome, written with the outcome (batches included),
pruned with its job; workers registered, heartbeating, shown dead, forgotten."""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any

import pytest
from contract_helpers import MakeProcessor, Recorder, wait_until

import jobq
from jobq.history import CUT_MARKER, TRACEBACK_CAP, WorkerRecord

LEASE = 30.0  # seconds


@pytest.fixture
async def leased(make_queue: Any, clock: jobq.FakeClock) -> jobq.Queue:
    return await make_queue(clock=clock, lease=LEASE, worker_id="w1")


async def claim(queue: jobq.Queue) -> jobq.Job[Any]:
    job = await queue.dequeue()
    assert job is not None
    return job


# -- outcomes through the queue's verbs ---------------------------------------------


async def test_a_completion_leaves_one_row(leased: jobq.Queue, clock: jobq.FakeClock) -> None:
    job = await leased.enqueue("t", 1)
    assert await leased.attempts(job.id) == []
    held = await claim(leased)
    clock.advance(2)
    await leased.complete(held, "ok")
    (row,) = await leased.attempts(job.id)
    assert (row.job_id, row.attempt, row.worker, row.outcome) == (job.id, 1, "w1", "completed")
    assert row.started_at == held.started_at and row.duration == 2.0
    assert row.error is None and row.error_type is None and row.traceback is None


async def test_retry_then_failure_keep_type_message_and_traceback(leased: jobq.Queue) -> None:
    job = await leased.enqueue("t", 1, max_attempts=2)
    for _ in range(2):
        held = await claim(leased)
        try:
            {}["missing_field"]
        except KeyError as exc:
            await leased.fail(held, exc, jobq.RetryDirective(True, 0))
    first, second = await leased.attempts(job.id)
    assert [first.attempt, second.attempt] == [1, 2]
    assert [first.outcome, second.outcome] == ["retry", "failed"]
    for row in (first, second):
        assert row.error_type == "KeyError" and row.error == "'missing_field'"
        assert row.traceback is not None and "missing_field" in row.traceback
        assert "test_retry_then_failure_keep_type_message_and_traceback" in row.traceback
    stored = await leased.get_job(job.id)
    assert stored is not None and stored.error == "'missing_field'"  # the job's error as before


async def test_an_exception_whose_str_raises_keeps_its_type(leased: jobq.Queue) -> None:
    class Unprintable(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no text")

    job = await leased.enqueue("t", 1, max_attempts=1)
    held = await claim(leased)
    try:
        raise Unprintable
    except Unprintable as exc:
        await leased.fail(held, exc)
    (row,) = await leased.attempts(job.id)
    assert row.outcome == "failed" and row.error_type == "Unprintable"
    assert row.traceback is not None and "Unprintable" in row.traceback


async def test_release_and_cancel_by_the_holder(leased: jobq.Queue) -> None:
    job = await leased.enqueue("t", 1)
    await leased.release(await claim(leased))
    await leased.cancel_running(await claim(leased), "not needed")
    released, cancelled = await leased.attempts(job.id)
    assert (released.outcome, released.attempt) == ("released", 1)
    assert (cancelled.outcome, cancelled.attempt, cancelled.error) == ("cancelled", 1, "not needed")


async def test_a_lost_lease_is_an_attempt(leased: jobq.Queue, clock: jobq.FakeClock) -> None:
    job = await leased.enqueue("t", 1)
    await claim(leased)
    clock.advance(LEASE)
    assert [j.id for j in await leased.rescue_expired()] == [job.id]
    (row,) = await leased.attempts(job.id)
    assert (row.outcome, row.attempt, row.worker) == ("lease_lost", 1, "w1")
    assert row.error is not None and "lost" in row.error


async def test_a_batch_of_completions_writes_a_row_each_and_none_for_a_lost_claim(
    leased: jobq.Queue, clock: jobq.FakeClock
) -> None:
    jobs = [await leased.enqueue("t", i) for i in range(4)]
    held = [await claim(leased) for _ in jobs]
    await leased.complete(held[3].id)  # unfenced: the claim of held[3] is gone
    errors = await leased.complete_many([(j, j.data) for j in held])
    assert [e is None for e in errors] == [True, True, True, False]
    for job in jobs[:3]:
        assert [a.outcome for a in await leased.attempts(job.id)] == ["completed"]
    # The unfenced completion knew no attempt; the lost claim's wrote nothing.
    assert await leased.attempts(jobs[3].id) == []


async def test_history_is_pruned_with_its_job(leased: jobq.Queue, clock: jobq.FakeClock) -> None:
    jobs = [await leased.enqueue("t", i) for i in range(3)]
    for _ in jobs:
        await leased.complete(await claim(leased))
    assert await leased.remove(jobs[0].id)
    assert await leased.store.attempts(jobs[0].id) == []
    with pytest.raises(jobq.JobNotFound):
        await leased.attempts(jobs[0].id)
    clock.advance(7200)
    assert await leased.prune(completed_after=3600) == 2
    for job in jobs[1:]:
        assert await leased.store.attempts(job.id) == []
    other = await leased.enqueue("t", 9)
    await leased.complete(await claim(leased))
    await leased.clear()
    assert await leased.store.attempts(other.id) == []


async def test_attempts_checks_its_argument(leased: jobq.Queue) -> None:
    with pytest.raises(TypeError):
        await leased.attempts(7)  # type: ignore[arg-type]
    with pytest.raises(jobq.JobNotFound):
        await leased.attempts("no-such-job")


# -- outcomes through a processor ----------------------------------------------------


async def test_every_outcome_of_a_processor_is_recorded(
    queue: jobq.Queue, make_processor: MakeProcessor
) -> None:
    processor = make_processor(retry_delays=[0], job_timeout=0.2)

    @processor.handler("flaky")
    async def flaky(job: jobq.Job[Any]) -> str:
        if job.attempts == 0:
            raise RuntimeError()
        return "done"

    @processor.handler("slow")
    async def slow(job: jobq.Job[Any]) -> None:
        await asyncio.sleep(30)

    @processor.handler("steer")
    async def steer(job: jobq.Job[Any]) -> None:
        if job.data == "snooze" and not job.metadata.get("snoozed"):
            raise jobq.SnoozeJob(0)
        raise jobq.CancelJob("no longer wanted")

    completed, failed, cancelled = (Recorder(processor, n) for n in ("job_completed", "job_failed", "job_cancelled"))
    flaky_id = await processor.add("flaky", None)
    slow_id = await processor.add("slow", None, max_attempts=1)
    cancel_id = await processor.add("steer", "cancel")
    await processor.start()
    await completed.wait_for(1)
    await failed.wait_for(1)
    await cancelled.wait_for(1)
    retry, done = await queue.attempts(flaky_id)
    assert (retry.outcome, retry.error_type, retry.error) == ("retry", "RuntimeError", "RuntimeError")
    assert retry.traceback is not None and "in flaky" in retry.traceback
    assert (done.outcome, done.attempt, done.worker) == ("completed", 2, processor.worker_id)
    (timed_out,) = await queue.attempts(slow_id)
    assert (timed_out.outcome, timed_out.error_type) == ("timed_out", "JobTimeout")
    (cancel,) = await queue.attempts(cancel_id)
    assert (cancel.outcome, cancel.error_type, cancel.error) == ("cancelled", "CancelJob", "no longer wanted")


async def test_snooze_and_release_at_stop(queue: jobq.Queue, make_processor: MakeProcessor) -> None:
    processor = make_processor()
    started = asyncio.Event()

    @processor.handler("snooze")
    async def snooze(job: jobq.Job[Any]) -> None:
        raise jobq.SnoozeJob(3600)

    @processor.handler("hang")
    async def hang(job: jobq.Job[Any]) -> None:
        started.set()
        await asyncio.sleep(30)

    snoozed = Recorder(processor, "job_snoozed")
    snooze_id = await processor.add("snooze", None)
    hang_id = await processor.add("hang", None)
    await processor.start()
    await snoozed.wait_for(1)
    await asyncio.wait_for(started.wait(), 10)
    await processor.stop(timeout=0)
    assert [a.outcome for a in await queue.attempts(snooze_id)] == ["snoozed"]
    assert [a.outcome for a in await queue.attempts(hang_id)] == ["released"]


async def test_a_long_traceback_is_cut_with_a_marker(queue: jobq.Queue, make_processor: MakeProcessor) -> None:
    processor = make_processor()

    @processor.handler("deep")
    async def deep(job: jobq.Job[Any]) -> None:
        def down(n: int) -> None:
            if n == 0:
                raise ValueError("x" * 20_000 + " the end")
            down(n - 1)

        down(300)

    failed = Recorder(processor, "job_failed")
    job_id = await processor.add("deep", None, max_attempts=1)
    await processor.start()
    await failed.wait_for(1)
    (row,) = await queue.attempts(job_id)
    assert row.traceback is not None
    assert len(row.traceback.encode()) <= TRACEBACK_CAP
    assert CUT_MARKER.split("{")[0] in row.traceback
    assert row.traceback.startswith("Traceback") and row.traceback.rstrip().endswith("the end")


# -- the worker registry ---------------------------------------------------------------


def _worker(worker_id: str, beat_ms: int, **changes: Any) -> WorkerRecord:
    fields: dict[str, Any] = dict(
        id=worker_id, host="h", pid=1, queues='["emails"]', concurrency=4, version="0", started_at=beat_ms,
        heartbeat_at=beat_ms, running=0, done=0,
    )  # fmt: skip
    fields.update(changes)
    return WorkerRecord(**fields)


async def test_registry_heartbeat_dead_and_forgotten(queue: jobq.Queue, clock: jobq.FakeClock) -> None:
    now = queue.now_ms()
    await queue.store.heartbeat(_worker("a", now), forget_before_ms=0)
    await queue.store.heartbeat(_worker("b", now), forget_before_ms=0)
    clock.advance(10)
    await queue.store.heartbeat(_worker("a", now, heartbeat_at=queue.now_ms(), running=2, done=7), forget_before_ms=0)
    (a, b) = await queue.workers()
    assert (a.id, a.alive, a.running, a.done, a.queues, a.concurrency) == ("a", True, 2, 7, ["emails"], 4)
    assert b.alive  # 10 s: two heartbeats missed
    clock.advance(6)  # b: 16 s, more than three heartbeats
    alive = {w.id: w.alive for w in await queue.workers()}
    assert alive == {"a": True, "b": False}
    clock.advance(3600)
    fresh = queue.now_ms()
    await queue.store.heartbeat(_worker("a", now, heartbeat_at=fresh), forget_before_ms=fresh - 3_600_000)
    assert [w.id for w in await queue.workers()] == ["a"]  # b forgotten after an hour
    await queue.store.unregister("a")
    await queue.store.unregister("a")  # an unknown id is no error
    assert await queue.workers() == []


async def test_a_processor_registers_and_unregisters(queue: jobq.Queue, make_processor: MakeProcessor) -> None:
    processor = make_processor(concurrency=3, queues=["emails", "sms"])
    await processor.start()

    async def registered() -> bool:
        return bool(await queue.workers())

    await wait_until(registered)
    (worker,) = await queue.workers()
    assert worker.id == processor.worker_id and worker.alive
    assert (worker.host, worker.pid) == (socket.gethostname(), os.getpid())
    assert worker.queues == ["emails", "sms"] and worker.concurrency == 3
    assert worker.version == jobq.__version__ and worker.running == 0
    await processor.stop()
    assert await queue.workers() == []


@pytest.mark.shared_store
async def test_a_job_another_program_deletes_takes_its_history(leased: jobq.Queue, backend: str) -> None:
    """k-msg's cleanup deletes rows with its own SQL: the history goes too
    (a trigger on SQLite, a foreign key on PostgreSQL)."""
    job = await leased.enqueue("t", 1)
    await leased.complete(await claim(leased))
    assert len(await leased.attempts(job.id)) == 1
    store: Any = leased.store
    if backend == "sqlite":
        import sqlite3

        with sqlite3.connect(store.path) as conn:
            conn.execute(f"DELETE FROM {store.table} WHERE id = ?", (job.id,))
    else:
        import psycopg

        async with await psycopg.AsyncConnection.connect(store.dsn, autocommit=True) as conn:
            await conn.execute(f"DELETE FROM {store._qualified} WHERE id = %s", (job.id,))
    assert await leased.store.attempts(job.id) == []


async def test_a_failing_registry_never_stops_a_worker(
    queue: jobq.Queue, make_processor: MakeProcessor, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("registry table is gone")

    monkeypatch.setattr(queue.store, "heartbeat", broken)
    monkeypatch.setattr(queue.store, "unregister", broken)
    processor = make_processor()

    @processor.handler("t")
    async def handle(job: jobq.Job[Any]) -> str:
        return "ok"

    completed = Recorder(processor, "job_completed")
    await processor.add("t", None)
    await processor.start()
    await completed.wait_for(1)
    await processor.stop()
    assert processor.failure is None
    logged = [r for r in caplog.records if "could not register" in r.getMessage()]
    assert logged and logged[0].exc_info is not None  # with its traceback
    assert any("could not unregister" in r.getMessage() for r in caplog.records)
