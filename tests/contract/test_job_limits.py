"""Limits every backend keeps alike, checked before anything is written, and
readers that survive a stored value beyond them.

- a delay (and a retry delay, a release, a snooze) is at most
  ``codec.MAX_DELAY`` (100 years); ``max_attempts`` fits a 32-bit INTEGER;
  metadata is limited like the payload; dict keys that collide once JSON
  makes them strings are refused; lone surrogates are refused in progress
  messages and cancel reasons. Each raises a jobq error and stores nothing.
- a row whose ``process_at`` is beyond what a ``datetime`` holds (written by
  another program) still lists and shows.
- retrying every failed job retries all it can and reports the rest.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import jobq
from jobq import codec
from jobq.admin import retry_all_failed

MAX_DELAY = codec.MAX_DELAY


async def stored_count(queue: jobq.Queue) -> int:
    return sum((await queue.counts()).values())


@pytest.mark.parametrize(
    "options",
    [
        {"delay": MAX_DELAY * 1.0001},
        {"delay": 3e11},
        {"delay": 1e16},
        {"delay": 1e300},
        {"delay": timedelta(days=365 * 101)},
        {"max_attempts": 2**31},
        {"max_attempts": 2**63},
        {"max_attempts": 2**70},
        {"metadata": {"big": "x" * 5000}},
        {"metadata": {1: "a", "1": "b"}},
        {"metadata": {"deep": [{True: 1, "true": 2}]}},
    ],
    ids=lambda value: repr(value)[:40],
)
async def test_out_of_range_is_refused_before_anything_is_stored(
    make_queue: Any, clock: jobq.FakeClock, options: dict[str, Any]
) -> None:
    queue = await make_queue(clock=clock, max_payload_bytes=4096)
    with pytest.raises(jobq.InvalidJob):
        await queue.enqueue("t", {"n": 1}, **options)
    with pytest.raises(jobq.InvalidJob):
        await queue.enqueue_many([jobq.NewJob("ok", 1), jobq.NewJob("t", {"n": 1}, **options)])
    assert await stored_count(queue) == 0
    assert (await queue.list_jobs()).jobs == []


@pytest.mark.parametrize(
    "payload",
    [{1: "a", "1": "b"}, [{"x": {None: 1, "null": 2}}], ({2.5: 1, "2.5": 2},), {"k": {False: 0, "false": 1}}],
    ids=lambda value: repr(value)[:40],
)
async def test_dict_keys_that_collide_as_json_strings_are_refused(queue: jobq.Queue, payload: Any) -> None:
    with pytest.raises(jobq.InvalidJob, match="collide"):
        await queue.enqueue("t", payload)
    assert await stored_count(queue) == 0


async def test_keys_that_do_not_collide_are_kept(queue: jobq.Queue) -> None:
    job = await queue.enqueue("t", {1: "a", "x": "b", None: [1, {2: 3}]}, metadata={True: 1, "n": 2})
    got = await queue.get_job(job.id)
    assert got is not None
    assert got.data == {"1": "a", "x": "b", "null": [1, {"2": 3}]}
    assert got.metadata == {"true": 1, "n": 2}


async def test_the_largest_values_are_accepted_and_read_back(queue: jobq.Queue) -> None:
    job = await queue.enqueue("t", 1, delay=MAX_DELAY, max_attempts=codec.MAX_ATTEMPTS, priority=2**31 - 1)
    assert job.status is jobq.JobStatus.DELAYED and job.delay == MAX_DELAY
    got = await queue.get_job(job.id)
    assert got is not None and got.process_at == job.process_at and got.max_attempts == 2**31 - 1
    assert [j.id for j in (await queue.list_jobs()).jobs] == [job.id]
    assert (await queue.list_jobs(offset=2**63 - 1)).jobs == []
    with pytest.raises(jobq.InvalidOption):
        await queue.list_jobs(offset=2**63)


async def test_metadata_is_limited_like_the_payload(make_queue: Any) -> None:
    queue = await make_queue(max_payload_bytes=2048)
    await queue.enqueue("t", metadata={"x": "y" * 2000})
    with pytest.raises(jobq.InvalidJob, match="metadata is .* bytes encoded; the limit is 2048"):
        await queue.enqueue("t", metadata={"x": "y" * 2100})
    assert await stored_count(queue) == 1


async def test_a_retry_or_release_delay_out_of_range_changes_nothing(queue: jobq.Queue) -> None:
    job = await queue.enqueue("t", max_attempts=5)
    claimed = await queue.dequeue()
    assert claimed is not None
    with pytest.raises(jobq.InvalidJob):
        await queue.fail(claimed, "boom", jobq.RetryDirective(True, 1e12))
    with pytest.raises(jobq.InvalidJob):
        await queue.fail(job.id, "boom", jobq.RetryDirective(True, float("nan")))
    with pytest.raises(jobq.InvalidJob):
        await queue.release(claimed, delay=3e11)
    got = await queue.get_job(job.id)
    assert got is not None and got.status is jobq.JobStatus.PROCESSING and got.attempts == 0
    await queue.release(claimed, delay=60)  # the claim still holds


def test_steering_exceptions_refuse_a_delay_out_of_range() -> None:
    for make in (lambda: jobq.SnoozeJob(delay=3e11), lambda: jobq.RetryJob(delay=1e12)):
        with pytest.raises(jobq.InvalidOption, match="100 years") as caught:
            make()
        assert isinstance(caught.value, ValueError) and isinstance(caught.value, jobq.JobqError)
    assert jobq.SnoozeJob(delay=timedelta(minutes=1)).delay == 60.0  # type: ignore[arg-type]
    with pytest.raises(jobq.InvalidOption):
        jobq.FixedDelays([1, 1e12])
    with pytest.raises(jobq.InvalidOption):
        jobq.ExponentialBackoff(max_delay=1e12)


async def test_a_handler_asking_for_an_impossible_snooze_fails_its_attempt(
    queue: jobq.Queue, make_processor: Any
) -> None:
    processor = make_processor(retry_delays=[0])
    job = await queue.enqueue("t", max_attempts=1)

    @processor.handler("t")
    async def snooze_for_ever(job: jobq.Job[Any]) -> None:
        raise jobq.SnoozeJob(delay=3e11)

    failed = []
    processor.on("job_failed", failed.append)
    await processor.start()
    from contract_helpers import wait_until

    await wait_until(lambda: failed)
    got = await queue.get_job(job.id)
    assert got is not None and got.status is jobq.JobStatus.FAILED
    assert "SnoozeJob delay" in (got.error or "")
    assert (await queue.list_jobs()).total == 1  # every reader still reads it


async def test_surrogates_in_progress_messages_and_reasons_are_refused(queue: jobq.Queue) -> None:
    job = await queue.enqueue("t")
    claimed = await queue.dequeue()
    assert claimed is not None
    for bad in ("half \ud800", "nul \x00"):
        with pytest.raises(jobq.InvalidOption):
            await queue.set_progress(claimed, 0.5, bad)
        with pytest.raises(jobq.InvalidOption):
            await queue.cancel_running(claimed, bad)
    got = await queue.get_job(job.id)
    assert got is not None and got.status is jobq.JobStatus.PROCESSING and got.progress is None
    await queue.set_progress(claimed, 0.5, "half way, 한")
    done = await queue.cancel_running(claimed, "stopped: 한")
    assert done.status is jobq.JobStatus.CANCELLED and done.error == "stopped: 한"


def _push_far_ahead(queue: jobq.Queue, backend: str, queue_url: str, tmp_path: Path, job_id: str) -> None:
    """Writes due and creation times no ``datetime`` holds, as another
    program could."""
    far, before = 10**17, -(10**17)  # epoch ms: about year 3 million, and before year 1
    if backend == "memory":
        record = queue.store._jobs[job_id]  # type: ignore[attr-defined]
        record.process_at, record.created_at = far, before
    elif backend == "sqlite":
        with sqlite3.connect(tmp_path / "jobs.db") as conn:
            conn.execute("UPDATE jobs SET process_at = ?, created_at = ? WHERE id = ?", (far, before, job_id))
    else:
        import psycopg

        with psycopg.connect(queue_url, autocommit=True) as conn:
            conn.execute(
                "UPDATE kmsg_jobs SET process_at = %s, created_at = %s WHERE id = %s", (far, before, job_id)
            )


async def test_a_stored_time_beyond_datetime_still_lists_and_shows(
    queue: jobq.Queue, backend: str, queue_url: str, tmp_path: Path
) -> None:
    from jobq.admin import job_dict, timeline

    job = await queue.enqueue("t", {"n": 1})
    other = await queue.enqueue("t", {"n": 2})
    _push_far_ahead(queue, backend, queue_url, tmp_path, job.id)
    page = await queue.list_jobs()
    assert {j.id for j in page.jobs} == {job.id, other.id}
    got = await queue.get_job(job.id)
    assert got is not None and got.status is jobq.JobStatus.DELAYED
    assert got.process_at == datetime.max.replace(tzinfo=UTC)
    assert got.created_at == datetime.min.replace(tzinfo=UTC)
    assert job_dict(got)["process_at"].startswith("9999-12-31") and timeline(got)
    if backend != "memory":  # (the in-memory store's own index of waiting jobs was bypassed)
        assert await queue.size() == 1  # the other one; the far one is not due
        claimed = await queue.dequeue()
        assert claimed is not None and claimed.id == other.id


async def test_retry_all_failed_retries_what_it_can_and_reports_the_rest(queue: jobq.Queue) -> None:
    async def failed(key: str | None) -> str:
        job = await queue.enqueue("t", {"key": key}, max_attempts=1, unique_key=key)
        claimed = await queue.dequeue()
        assert claimed is not None and claimed.id == job.id
        await queue.fail(claimed, "boom")
        return job.id

    first = await failed(None)
    blocked = await failed("daily")
    last = await failed("weekly")
    holder = await queue.enqueue("t", unique_key="daily")  # now holds the blocked job's key

    report = await retry_all_failed(queue)
    assert report.retried == 2
    assert [job_id for job_id, _ in report.not_retried] == [blocked]
    assert "unique key" in report.not_retried[0][1]
    statuses = {j: (await queue.get_job(j)).status for j in (first, blocked, last, holder.id)}  # type: ignore[union-attr]
    assert statuses == {
        first: jobq.JobStatus.PENDING,
        blocked: jobq.JobStatus.FAILED,
        last: jobq.JobStatus.PENDING,
        holder.id: jobq.JobStatus.PENDING,
    }
    again = await retry_all_failed(queue)  # only the blocked one is left, and reported again
    assert again.retried == 0 and [j for j, _ in again.not_retried] == [blocked]


@pytest.mark.parametrize("bad", ["\udcff", "a\x00b"], ids=["surrogate", "nul"])
async def test_ids_and_names_no_store_can_hold_are_answered_alike(queue: jobq.Queue, bad: str) -> None:
    """An id no job can have is not found (as on every backend), without the
    driver failing on it; a filter naming such a queue or type is refused."""
    await queue.enqueue("t")
    assert await queue.get_job(bad) is None
    assert await queue.remove(bad) is False
    for verb in (queue.cancel, queue.retry, queue.complete, lambda job_id: queue.fail(job_id, "x")):
        with pytest.raises(jobq.JobNotFound):
            await verb(bad)  # type: ignore[operator]
    for read in (
        lambda: queue.list_jobs(type=bad), lambda: queue.list_jobs(queue=[bad]), lambda: queue.size(queues=[bad]),
        lambda: queue.peek(queues=[bad]), lambda: queue.dequeue(queues=[bad]), lambda: queue.next_due(queues=[bad]),
        lambda: queue.claim(5, exclude_types=[bad]),
    ):  # fmt: skip
        with pytest.raises(jobq.InvalidOption):
            await read()
    assert await queue.size() == 1
