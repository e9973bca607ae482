"""The queue verbs of API.md, run against every backend on a FakeClock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from contract_helpers import stored

import jobq
from jobq import JobStatus, RetryDirective


def at(clock: jobq.FakeClock, offset: float = 0.0) -> datetime:
    """The FakeClock's "now" (plus ``offset`` seconds) as an aware UTC datetime."""
    return datetime.fromtimestamp(clock.now() + offset, tz=UTC)




async def total(queue: jobq.Queue) -> int:
    return sum((await queue.counts()).values())


# -- enqueue -----------------------------------------------------------------


async def test_enqueue_defaults(queue: jobq.Queue, clock: jobq.FakeClock) -> None:
    job = await queue.enqueue("send_message", {"to": "+821012345678"})
    assert isinstance(job, jobq.Job)
    assert isinstance(job.id, str) and job.id
    assert job.type == "send_message"
    assert job.data == {"to": "+821012345678"}
    assert job.status is JobStatus.PENDING
    assert job.priority == 0
    assert job.attempts == 0
    assert job.max_attempts == 3
    assert job.delay == 0
    assert job.created_at == at(clock)
    assert job.process_at == job.created_at
    assert job.completed_at is None and job.failed_at is None and job.error is None
    assert job.metadata == {}
    assert await stored(queue, job.id) == job


async def test_enqueue_times_are_aware_utc(queue: jobq.Queue) -> None:
    job = await queue.enqueue("t", None, delay=2)
    for moment in (job.created_at, job.process_at):
        assert moment.tzinfo is not None
        assert moment.utcoffset() == timedelta(0)
    again = await stored(queue, job.id)
    assert again.created_at.utcoffset() == timedelta(0)
    assert again.process_at.utcoffset() == timedelta(0)


async def test_enqueue_explicit_fields(queue: jobq.Queue, clock: jobq.FakeClock) -> None:
    job = await queue.enqueue(
        "t", [1, 2], priority=7, delay=1.5, max_attempts=5, metadata={"tenant": "a", "n": 1}
    )
    assert job.priority == 7
    assert job.max_attempts == 5
    assert job.delay == 1.5
    assert job.metadata == {"tenant": "a", "n": 1}
    assert job.status is JobStatus.DELAYED
    assert job.created_at == at(clock)
    assert job.process_at == job.created_at + timedelta(seconds=1.5)
    assert await stored(queue, job.id) == job


async def test_enqueue_ids_are_unique(queue: jobq.Queue) -> None:
    jobs = [await queue.enqueue("t", i) for i in range(50)]
    assert len({job.id for job in jobs}) == 50


@pytest.mark.parametrize(
    "data",
    [
        None,
        0,
        -12345678901234567890,
        3.25,
        True,
        "plain",
        "유니코드 ✓ \u0000 \"quoted\"",
        [],
        {},
        [1, "two", 3.0, None, False, {"nested": [{"deep": []}]}],
        {"to": ["+821012345678"], "body": "안녕하세요", "opts": {"retry": None, "ratio": 0.5}},
    ],
)
async def test_data_round_trips_equal(queue: jobq.Queue, data: Any) -> None:
    job = await queue.enqueue("t", data)
    assert job.data == data
    assert (await stored(queue, job.id)).data == data
    claimed = await queue.dequeue()
    assert claimed is not None and claimed.data == data


async def test_metadata_round_trips(queue: jobq.Queue) -> None:
    meta = {"trace": "abc", "tags": ["x", "y"], "n": 3}
    job = await queue.enqueue("t", None, metadata=meta)
    claimed = await queue.dequeue()
    assert claimed is not None and claimed.metadata == meta
    assert (await stored(queue, job.id)).metadata == meta


# -- rejected input ----------------------------------------------------------


class NotJSON:
    pass


BAD_ENQUEUES: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
    ("object payload", ("t", NotJSON()), {}),
    ("set payload", ("t", {1, 2}), {}),
    ("nan payload", ("t", float("nan")), {}),
    ("datetime payload", ("t", datetime.now(UTC)), {}),
    ("nested object payload", ("t", {"a": [NotJSON()]}), {}),
    ("empty type", ("", 1), {}),
    ("blank type", ("   ", 1), {}),
    ("max_attempts 0", ("t", 1), {"max_attempts": 0}),
    ("max_attempts negative", ("t", 1), {"max_attempts": -1}),
    ("negative delay", ("t", 1), {"delay": -1}),
    ("metadata list", ("t", 1), {"metadata": [1, 2]}),
    ("metadata str", ("t", 1), {"metadata": "tenant=a"}),
    ("metadata not JSON", ("t", 1), {"metadata": {"x": NotJSON()}}),
]


@pytest.mark.parametrize("args, kwargs", [b[1:] for b in BAD_ENQUEUES], ids=[b[0] for b in BAD_ENQUEUES])
async def test_bad_input_is_rejected_before_storing(
    queue: jobq.Queue, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    with pytest.raises(jobq.InvalidJob) as info:
        await queue.enqueue(*args, **kwargs)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, jobq.JobqError)
    assert await total(queue) == 0
    assert await queue.size() == 0
    assert await queue.peek() is None
    assert await queue.dequeue() is None


async def test_payload_over_the_limit_is_rejected(make_queue: Any, clock: jobq.FakeClock) -> None:
    queue = await make_queue(clock=clock, max_payload_bytes=100)
    with pytest.raises(jobq.InvalidJob):
        await queue.enqueue("t", "x" * 200)
    # 62 characters, but 122 bytes of UTF-8: the limit is in bytes.
    with pytest.raises(jobq.InvalidJob):
        await queue.enqueue("t", "é" * 60)
    assert await total(queue) == 0
    job = await queue.enqueue("t", "x" * 90)
    assert (await stored(queue, job.id)).data == "x" * 90


async def test_enqueue_many_stores_all(queue: jobq.Queue) -> None:
    jobs = await queue.enqueue_many(
        [jobq.NewJob("a", 1), jobq.NewJob("b", 2, priority=3), jobq.NewJob("c", 3, delay=5)]
    )
    assert [j.type for j in jobs] == ["a", "b", "c"]
    assert [j.status for j in jobs] == [JobStatus.PENDING, JobStatus.PENDING, JobStatus.DELAYED]
    for job in jobs:
        assert await stored(queue, job.id) == job
    assert await total(queue) == 3


async def test_enqueue_many_keeps_every_field_of_every_job(queue: jobq.Queue) -> None:
    specs = [
        jobq.NewJob(
            f"type-{i % 3}",
            [i, {"n": "é" * i}] if i % 2 else None,
            priority=i - 2,
            delay=timedelta(seconds=i) if i % 2 else 0.0,
            max_attempts=i + 1,
            metadata={"i": i} if i % 2 else None,
            queue=f"q{i % 2}",
        )
        for i in range(6)
    ]
    jobs = await queue.enqueue_many(specs)
    assert len({j.id for j in jobs}) == 6
    for spec, job in zip(specs, jobs, strict=True):
        assert (job.type, job.priority, job.max_attempts, job.queue) == (
            spec.type,
            spec.priority,
            spec.max_attempts,
            spec.queue,
        )
        assert job.data == spec.data and job.metadata == (spec.metadata or {})
        assert (job.process_at - job.created_at).total_seconds() == codec_delay(spec.delay)
        assert await stored(queue, job.id) == job
    # A batch where every column but the id holds one value.
    same = await queue.enqueue_many([jobq.NewJob("same", {"x": 1})] * 3)
    assert len({j.id for j in same}) == 3
    for job in same:
        assert await stored(queue, job.id) == job


def codec_delay(delay: float | timedelta) -> float:
    return delay.total_seconds() if isinstance(delay, timedelta) else delay


async def test_enqueue_many_is_all_or_nothing(queue: jobq.Queue) -> None:
    with pytest.raises(jobq.InvalidJob):
        await queue.enqueue_many([jobq.NewJob("a", 1), jobq.NewJob("b", 2), jobq.NewJob("", 3)])
    with pytest.raises(jobq.InvalidJob):
        await queue.enqueue_many([jobq.NewJob("a", 1), jobq.NewJob("b", NotJSON())])
    assert await total(queue) == 0
    assert await queue.enqueue_many([]) == []


# -- dequeue order -------------------------------------------------------------


async def test_dequeue_claims_and_returns_processing(queue: jobq.Queue) -> None:
    job = await queue.enqueue("t", {"k": 1})
    claimed = await queue.dequeue()
    assert claimed is not None
    assert claimed.id == job.id
    assert claimed.status is JobStatus.PROCESSING
    assert claimed.attempts == 0
    assert claimed.process_at == job.process_at
    assert (await stored(queue, job.id)).status is JobStatus.PROCESSING
    assert await queue.dequeue() is None


async def test_dequeue_empty_returns_none(queue: jobq.Queue) -> None:
    assert await queue.dequeue() is None
    assert await queue.peek() is None


async def test_dequeue_highest_priority_first(queue: jobq.Queue, clock: jobq.FakeClock) -> None:
    ids = {}
    for priority in (0, 10, -1, 5):
        ids[priority] = (await queue.enqueue("t", priority, priority=priority)).id
        clock.advance(0.01)
    order = []
    while (job := await queue.dequeue()) is not None:
        order.append(job.id)
    assert order == [ids[10], ids[5], ids[0], ids[-1]]


async def test_dequeue_earliest_process_at_within_a_priority(
    queue: jobq.Queue, clock: jobq.FakeClock
) -> None:
    later = await queue.enqueue("t", "later", delay=5)  # created first, due last
    clock.advance(0.01)
    sooner = await queue.enqueue("t", "sooner", delay=1)
    clock.advance(10)
    first, second = await queue.dequeue(), await queue.dequeue()
    assert first is not None and second is not None
    assert [first.id, second.id] == [sooner.id, later.id]


async def test_dequeue_earliest_created_at_when_due_together(
    queue: jobq.Queue, clock: jobq.FakeClock
) -> None:
    older = await queue.enqueue("t", "older", delay=2)
    clock.advance(1)
    newer = await queue.enqueue("t", "newer", delay=1)
    assert older.process_at == newer.process_at
    clock.advance(5)
    first, second = await queue.dequeue(), await queue.dequeue()
    assert first is not None and second is not None
    assert [first.id, second.id] == [older.id, newer.id]


async def test_priority_beats_process_at(queue: jobq.Queue, clock: jobq.FakeClock) -> None:
    early = await queue.enqueue("t", "early low", priority=1)
    clock.advance(1)
    late = await queue.enqueue("t", "late high", priority=2)
    first = await queue.dequeue()
    assert first is not None and first.id == late.id
    second = await queue.dequeue()
    assert second is not None and second.id == early.id


# -- delayed jobs --------------------------------------------------------------


async def test_delayed_job_waits_for_the_clock(queue: jobq.Queue, clock: jobq.FakeClock) -> None:
    job = await queue.enqueue("t", 1, delay=10)
    assert job.status is JobStatus.DELAYED
    assert job.process_at == job.created_at + timedelta(seconds=10)
    assert (await stored(queue, job.id)).status is JobStatus.DELAYED
    assert await queue.dequeue() is None
    assert await queue.peek() is None
    assert await queue.size() == 0
    clock.advance(9.99)
    assert await queue.dequeue() is None
    clock.advance(0.01)
    assert (await stored(queue, job.id)).status is JobStatus.PENDING
    assert await queue.size() == 1
    peeked = await queue.peek()
    assert peeked is not None and peeked.id == job.id and peeked.status is JobStatus.PENDING
    claimed = await queue.dequeue()
    assert claimed is not None and claimed.id == job.id
    assert claimed.status is JobStatus.PROCESSING


async def test_due_times_are_judged_on_the_millisecond_floored(
    queue: jobq.Queue, clock: jobq.FakeClock
) -> None:
    """As k-msg's ``Date.now()`` does: a job due at ``process_at`` is not
    ready in the millisecond before, even 0.1 ms before it."""
    clock.set(1_700_000_000.0)
    job = await queue.enqueue("t", 1, delay=1)
    assert job.process_at.timestamp() == 1_700_000_001.0
    for almost in (1_700_000_000.9995, 1_700_000_000.9999):
        clock.set(almost)
        assert await queue.size() == 0 and await queue.peek() is None and await queue.dequeue() is None
        assert (await stored(queue, job.id)).status is JobStatus.DELAYED
    clock.set(1_700_000_001.0)
    claimed = await queue.dequeue()
    assert claimed is not None and claimed.id == job.id


async def test_due_delayed_job_is_ordered_like_pending(queue: jobq.Queue, clock: jobq.FakeClock) -> None:
    delayed = await queue.enqueue("t", "delayed", delay=5, priority=3)
    clock.advance(1)
    low = await queue.enqueue("t", "low", priority=1)
    first = await queue.dequeue()
    assert first is not None and first.id == low.id  # the other is not due yet
    high_now = await queue.enqueue("t", "high now", priority=9)
    pending_low = await queue.enqueue("t", "low again", priority=1)
    clock.advance(10)
    order = []
    while (job := await queue.dequeue()) is not None:
        order.append(job.id)
    assert order == [high_now.id, delayed.id, pending_low.id]


# -- complete --------------------------------------------------------------------


async def test_complete_sets_status_time_and_result(queue: jobq.Queue, clock: jobq.FakeClock) -> None:
    job = await queue.enqueue("t", 1)
    claimed = await queue.dequeue()
    assert claimed is not None
    clock.advance(2)
    await queue.complete(claimed, {"message_id": "m-1", "ok": True})
    done = await stored(queue, job.id)
    assert done.status is JobStatus.COMPLETED
    assert done.completed_at == at(clock)
    assert done.result == {"message_id": "m-1", "ok": True}
    assert done.failed_at is None
    assert done.attempts == 0
    assert done.lease_owner is None and done.lease_expires_at is None


async def test_complete_without_result(queue: jobq.Queue) -> None:
    job = await queue.enqueue("t", 1)
    claimed = await queue.dequeue()
    assert claimed is not None
    await queue.complete(claimed)
    done = await stored(queue, job.id)
    assert done.status is JobStatus.COMPLETED and done.result is None


async def test_complete_by_id_works_on_a_job_never_dequeued(
    queue: jobq.Queue, clock: jobq.FakeClock
) -> None:
    job = await queue.enqueue("t", 1)
    await queue.complete(job.id, "done")
    done = await stored(queue, job.id)
    assert done.status is JobStatus.COMPLETED
    assert done.completed_at == at(clock)
    assert done.result == "done"
    assert await queue.dequeue() is None
    assert await queue.size() == 0


async def test_complete_by_id_of_a_dequeued_job(queue: jobq.Queue) -> None:
    job = await queue.enqueue("t", 1)
    assert await queue.dequeue() is not None
    await queue.complete(job.id, 42)
    done = await stored(queue, job.id)
    assert done.status is JobStatus.COMPLETED and done.result == 42


async def test_complete_and_fail_unknown_id_raise_job_not_found(queue: jobq.Queue) -> None:
    with pytest.raises(jobq.JobNotFound) as info:
        await queue.complete("no-such-job")
    assert isinstance(info.value, jobq.JobqError)
    with pytest.raises(jobq.JobNotFound):
        await queue.fail("no-such-job", "boom")
    with pytest.raises(jobq.JobNotFound):
        await queue.fail("no-such-job", "boom", RetryDirective(True, 1))
    assert await total(queue) == 0


# -- fail ------------------------------------------------------------------------


async def test_fail_without_retry_fails_for_good(queue: jobq.Queue, clock: jobq.FakeClock) -> None:
    job = await queue.enqueue("t", 1)
    claimed = await queue.dequeue()
    assert claimed is not None
    clock.advance(1)
    await queue.fail(claimed, "provider said no")
    failed = await stored(queue, job.id)
    assert failed.status is JobStatus.FAILED
    assert failed.attempts == 1
    assert failed.failed_at == at(clock)
    assert failed.error == "provider said no"
    assert failed.completed_at is None
    assert await queue.dequeue() is None


async def test_fail_with_retry_disabled_fails_for_good(queue: jobq.Queue) -> None:
    job = await queue.enqueue("t", 1)
    claimed = await queue.dequeue()
    assert claimed is not None
    await queue.fail(claimed, "nope", RetryDirective(enabled=False, delay=5))
    failed = await stored(queue, job.id)
    assert failed.status is JobStatus.FAILED and failed.attempts == 1 and failed.failed_at is not None


async def test_fail_with_retry_goes_back_to_waiting(queue: jobq.Queue, clock: jobq.FakeClock) -> None:
    job = await queue.enqueue("t", 1)
    claimed = await queue.dequeue()
    assert claimed is not None
    clock.advance(3)
    await queue.fail(claimed, "try later", RetryDirective(True, 30))
    waiting = await stored(queue, job.id)
    assert waiting.status is JobStatus.DELAYED
    assert waiting.attempts == 1
    assert waiting.process_at == at(clock, 30)
    assert waiting.error == "try later"
    assert waiting.failed_at is None
    assert waiting.lease_owner is None
    assert await queue.dequeue() is None
    clock.advance(29.9)
    assert await queue.dequeue() is None
    clock.advance(0.1)
    again = await queue.dequeue()
    assert again is not None and again.id == job.id and again.attempts == 1


async def test_fail_with_retry_and_no_delay_is_ready_at_once(
    queue: jobq.Queue, clock: jobq.FakeClock
) -> None:
    job = await queue.enqueue("t", 1)
    claimed = await queue.dequeue()
    assert claimed is not None
    await queue.fail(claimed, "again", RetryDirective(True))
    waiting = await stored(queue, job.id)
    assert waiting.status is JobStatus.PENDING
    assert waiting.process_at == at(clock)
    assert await queue.size() == 1
    again = await queue.dequeue()
    assert again is not None and again.id == job.id


async def test_fail_returns_the_job_as_stored(queue: jobq.Queue) -> None:
    job = await queue.enqueue("t", 1)
    claimed = await queue.dequeue()
    assert claimed is not None
    after = await queue.fail(claimed, "x", RetryDirective(True, 5))
    assert after == await stored(queue, job.id)


async def test_fail_retry_stops_when_out_of_attempts(queue: jobq.Queue, clock: jobq.FakeClock) -> None:
    job = await queue.enqueue("t", 1, max_attempts=2)
    first = await queue.dequeue()
    assert first is not None
    await queue.fail(first, "one", RetryDirective(True, 0))
    assert (await stored(queue, job.id)).status is JobStatus.PENDING
    second = await queue.dequeue()
    assert second is not None and second.attempts == 1
    clock.advance(1)
    await queue.fail(second, "two", RetryDirective(True, 0))
    failed = await stored(queue, job.id)
    assert failed.status is JobStatus.FAILED
    assert failed.attempts == 2
    assert failed.failed_at == at(clock)
    assert failed.error == "two"
    assert await queue.dequeue() is None


async def test_fail_with_max_attempts_one_never_retries(queue: jobq.Queue) -> None:
    job = await queue.enqueue("t", 1, max_attempts=1)
    claimed = await queue.dequeue()
    assert claimed is not None
    await queue.fail(claimed, "x", RetryDirective(True, 0))
    assert (await stored(queue, job.id)).status is JobStatus.FAILED


async def test_fail_stores_an_exceptions_message(queue: jobq.Queue) -> None:
    job = await queue.enqueue("t", 1)
    claimed = await queue.dequeue()
    assert claimed is not None
    await queue.fail(claimed, ValueError("bad phone number"))
    assert (await stored(queue, job.id)).error == "bad phone number"


async def test_fail_by_id_works_on_a_job_never_dequeued(queue: jobq.Queue, clock: jobq.FakeClock) -> None:
    retried = await queue.enqueue("t", 1)
    await queue.fail(retried.id, "later", RetryDirective(True, 10))
    waiting = await stored(queue, retried.id)
    assert waiting.status is JobStatus.DELAYED and waiting.attempts == 1
    assert waiting.process_at == at(clock, 10)
    failed = await queue.enqueue("t", 2)
    await queue.fail(failed.id, "never")
    gone = await stored(queue, failed.id)
    assert gone.status is JobStatus.FAILED and gone.attempts == 1 and gone.error == "never"
    assert await queue.dequeue() is None
    clock.advance(10)
    again = await queue.dequeue()
    assert again is not None and again.id == retried.id


# -- peek, size, get_job, remove, clear ---------------------------------------------


async def test_peek_does_not_claim(queue: jobq.Queue) -> None:
    low = await queue.enqueue("t", "low")
    high = await queue.enqueue("t", "high", priority=1)
    peeked = await queue.peek()
    assert peeked is not None and peeked.id == high.id
    assert peeked.status is JobStatus.PENDING
    again = await queue.peek()
    assert again is not None and again.id == high.id
    assert (await stored(queue, high.id)).status is JobStatus.PENDING
    assert await queue.size() == 2
    claimed = await queue.dequeue()
    assert claimed is not None and claimed.id == high.id
    after = await queue.peek()
    assert after is not None and after.id == low.id


async def test_size_counts_only_ready_jobs(queue: jobq.Queue, clock: jobq.FakeClock) -> None:
    assert await queue.size() == 0
    for i in range(4):
        await queue.enqueue("t", i)
    await queue.enqueue("t", "delayed", delay=60)
    assert await queue.size() == 4
    processing = await queue.dequeue()
    completed = await queue.dequeue()
    failed = await queue.dequeue()
    assert processing is not None and completed is not None and failed is not None
    await queue.complete(completed)
    await queue.fail(failed, "x")
    assert await queue.size() == 1
    clock.advance(60)
    assert await queue.size() == 2


async def test_get_job_any_status(queue: jobq.Queue) -> None:
    assert await queue.get_job("missing") is None
    ids = [(await queue.enqueue("t", i, priority=10 - i)).id for i in range(3)]
    delayed = await queue.enqueue("t", "d", delay=5)
    a = await queue.dequeue()
    b = await queue.dequeue()
    assert a is not None and b is not None
    await queue.complete(b)
    c = await queue.dequeue()
    assert c is not None
    await queue.fail(c, "x")
    statuses = [(await stored(queue, i)).status for i in ids]
    assert statuses == [JobStatus.PROCESSING, JobStatus.COMPLETED, JobStatus.FAILED]
    assert (await stored(queue, delayed.id)).status is JobStatus.DELAYED


async def test_remove(queue: jobq.Queue) -> None:
    job = await queue.enqueue("t", 1)
    other = await queue.enqueue("t", 2)
    assert await queue.remove(job.id) is True
    assert await queue.get_job(job.id) is None
    assert await queue.remove(job.id) is False
    assert await queue.remove("never-existed") is False
    claimed = await queue.dequeue()
    assert claimed is not None and claimed.id == other.id
    assert await queue.dequeue() is None


async def test_remove_a_processing_job(queue: jobq.Queue) -> None:
    job = await queue.enqueue("t", 1)
    claimed = await queue.dequeue()
    assert claimed is not None
    assert await queue.remove(job.id) is True
    with pytest.raises(jobq.JobNotFound):
        await queue.complete(job.id)
    assert await queue.rescue_expired() == []


async def test_clear(queue: jobq.Queue, clock: jobq.FakeClock) -> None:
    await queue.enqueue("t", 1)
    await queue.enqueue("t", 2, delay=5)
    done = await queue.dequeue()
    assert done is not None
    await queue.complete(done)
    await queue.enqueue("t", 3)
    await queue.dequeue()
    await queue.clear()
    assert await total(queue) == 0
    assert await queue.size() == 0
    assert await queue.get_job(done.id) is None
    clock.advance(10)
    assert await queue.dequeue() is None
    assert await queue.peek() is None
    fresh = await queue.enqueue("t", 4)
    claimed = await queue.dequeue()
    assert claimed is not None and claimed.id == fresh.id


# -- cleanup_terminal --------------------------------------------------------------


async def _one_of_each(queue: jobq.Queue) -> dict[str, str]:
    """A completed, a failed, a processing, a pending and a delayed job."""
    ids = {}
    for name in ("completed", "failed", "processing"):
        ids[name] = (await queue.enqueue("t", name, priority=10)).id
    ids["pending"] = (await queue.enqueue("t", "pending")).id
    ids["delayed"] = (await queue.enqueue("t", "delayed", delay=30)).id
    completed, failed, processing = (await queue.dequeue(), await queue.dequeue(), await queue.dequeue())
    assert completed is not None and failed is not None and processing is not None
    await queue.complete(completed.id)
    await queue.fail(failed.id, "x")
    return {
        "completed": completed.id,
        "failed": failed.id,
        "processing": processing.id,
        "pending": ids["pending"],
        "delayed": ids["delayed"],
    }


async def test_cleanup_terminal_default_statuses(queue: jobq.Queue) -> None:
    ids = await _one_of_each(queue)
    assert await queue.cleanup_terminal() == 2
    assert await queue.get_job(ids["completed"]) is None
    assert await queue.get_job(ids["failed"]) is None
    assert (await stored(queue, ids["processing"])).status is JobStatus.PROCESSING
    assert (await stored(queue, ids["pending"])).status is JobStatus.PENDING
    assert (await stored(queue, ids["delayed"])).status is JobStatus.DELAYED
    assert await queue.cleanup_terminal() == 0


async def test_cleanup_terminal_explicit_statuses(queue: jobq.Queue) -> None:
    ids = await _one_of_each(queue)
    assert await queue.cleanup_terminal([JobStatus.COMPLETED]) == 1
    assert await queue.get_job(ids["completed"]) is None
    assert (await stored(queue, ids["failed"])).status is JobStatus.FAILED
    assert await queue.cleanup_terminal(["failed"]) == 1
    assert await queue.get_job(ids["failed"]) is None
    assert await queue.cleanup_terminal([]) == 0
    assert await total(queue) == 3


async def test_cleanup_terminal_older_than(queue: jobq.Queue, clock: jobq.FakeClock) -> None:
    old = await queue.enqueue("t", "old")
    await queue.complete(old.id)
    clock.advance(100)
    new = await queue.enqueue("t", "new")
    await queue.complete(new.id)
    assert await queue.cleanup_terminal(older_than=50) == 1
    assert await queue.get_job(old.id) is None
    assert await queue.get_job(new.id) is not None


async def test_batch_claim_hands_jobs_out_in_dequeue_order(queue: jobq.Queue, clock: jobq.FakeClock) -> None:
    a = await queue.enqueue("t", "a", priority=1)
    clock.advance(0.01)
    b = await queue.enqueue("t", "b", priority=3)
    clock.advance(0.01)
    c = await queue.enqueue("t", "c", priority=1)
    clock.advance(0.01)
    d = await queue.enqueue("t", "d", priority=2, delay=1)
    clock.advance(2)
    jobs = await queue.claim(3)
    assert [j.id for j in jobs] == [b.id, d.id, a.id]
    assert all(j.status is JobStatus.PROCESSING for j in jobs)
    rest = await queue.claim(5)
    assert [j.id for j in rest] == [c.id]


async def test_cleanup_terminal_refuses_unfinished_statuses(queue: jobq.Queue) -> None:
    waiting = await queue.enqueue("t", 1)
    for status in (jobq.JobStatus.PENDING, jobq.JobStatus.DELAYED, jobq.JobStatus.PROCESSING):
        with pytest.raises(jobq.InvalidOption, match="finished jobs only"):
            await queue.cleanup_terminal([status])
    assert await queue.get_job(waiting.id) is not None
