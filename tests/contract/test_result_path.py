"""Errors in a handler's result path fail its job with a clear error, on
every backend; none of them may cost the job its lease.

Regression: each of these ended in "Task exception was never retrieved"
(or an outcome that could not be written); the job then waited out its
lease three times and was quarantined as "the job may be killing its
worker", though its worker was fine.
"""

from __future__ import annotations

from typing import Any

import pytest
from contract_helpers import MakeProcessor, Recorder, stored

import jobq
from jobq import JobStatus


class Unsayable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("this exception cannot be shown")


class Unshowable:
    def __repr__(self) -> str:
        raise RuntimeError("this result cannot be shown")


async def raise_unsayable(job: jobq.Job[Any]) -> None:
    raise Unsayable()


async def retry_far_away(job: jobq.Job[Any]) -> None:
    raise jobq.RetryJob(delay=1e300)


async def snooze_far_away(job: jobq.Job[Any]) -> None:
    raise jobq.SnoozeJob(1e300)


async def cancel_with_a_lone_surrogate(job: jobq.Job[Any]) -> None:
    raise jobq.CancelJob("gone \ud800 for good")


async def report_a_lone_surrogate(job: jobq.Job[Any]) -> str:
    await jobq.report_progress(0.5, "half \ud800 way")
    return "done"


async def return_the_unshowable(job: jobq.Job[Any]) -> Any:
    return Unshowable()


CASES = {
    # handler, the event that ends the job, its status, and its stored error
    "exception whose __str__ raises": (raise_unsayable, "job_retry", JobStatus.DELAYED, "Unsayable"),
    # The steering exception refuses the delay as it is made: the handler
    # raised an ordinary error, so the attempt failed and is retried.
    "RetryJob(delay=1e300)": (
        retry_far_away, "job_retry", JobStatus.DELAYED,
        "RetryJob delay must be a number of seconds from 0 to 3153600000 (100 years), not 1e+300",
    ),
    "SnoozeJob(1e300)": (
        snooze_far_away, "job_retry", JobStatus.DELAYED,
        "SnoozeJob delay must be a number of seconds from 0 to 3153600000 (100 years), not 1e+300",
    ),
    "CancelJob with a lone surrogate": (
        cancel_with_a_lone_surrogate, "job_cancelled", JobStatus.CANCELLED, "gone \ufffd for good",
    ),
    # Text that is not valid Unicode is refused where it is taken: the
    # handler's call raised, so the attempt failed and is retried.
    "report_progress with a lone surrogate": (report_a_lone_surrogate, "job_retry", JobStatus.DELAYED, None),
    "a result that cannot be shown": (
        return_the_unshowable, "job_failed", JobStatus.FAILED,
        "the result cannot be stored as JSON: values of type Unshowable cannot be stored as JSON",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES)
async def test_a_result_path_error_fails_the_job_not_its_lease(
    queue: jobq.Queue, make_processor: MakeProcessor, case: str
) -> None:
    handler, event, status, error = CASES[case]
    processor = make_processor(max_retries=3)
    processor.handle("t", handler)
    ended = Recorder(processor, event)
    await processor.start()
    job_id = await processor.add("t", {})
    await ended.wait_for(1)
    job = await stored(queue, job_id)
    assert job.status is status, (job.status, job.error)
    if case.startswith("report_progress"):
        assert "surrogate" in (job.error or ""), job.error
    else:
        assert job.error == error
    assert job.lost_count == 0 and job.lease_owner is None
    assert await queue.rescue_expired() == []


class FarAway:
    """A retry policy whose delay ends after year 9999: checked only when
    the retry is written."""

    def delay(self, attempts: int) -> float:
        return 1e300


async def fail_once(job: jobq.Job[Any]) -> None:
    raise RuntimeError("boom")


async def test_an_outcome_the_store_refuses_fails_alone_beside_good_ones(
    queue: jobq.Queue, make_processor: MakeProcessor
) -> None:
    """Outcomes written together: the one that cannot be stored fails its
    job, the others are written as they were."""
    processor = make_processor(concurrency=4, max_retries=3, retry_policy=FarAway())
    processor.handle("far", fail_once)
    processor.handle("ok", lambda job: job.data)
    ended = Recorder(processor, "job_completed")
    failed = Recorder(processor, "job_failed")
    ok = [await processor.add("ok", i) for i in range(6)]
    far = await processor.add("far", {})
    await processor.start()
    await ended.wait_for(6)
    await failed.wait_for(1)
    assert [(await stored(queue, i)).status for i in ok] == [JobStatus.COMPLETED] * 6
    assert (await stored(queue, far)).status is JobStatus.FAILED
