"""A processor whose store is unreachable when it records an outcome (a
completion, a failure, a snooze, a release on stop): the write is tried
again while the job's lease stands, and lands once the store is back, its
event emitted once; if the lease runs out first, the outcome is dropped with
a warning, the job is left to the rescuer, and runs again. Also the circuit
breaker's ``timeout``, which caps every handler it guards."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from contract_helpers import DEADLINE, MakeProcessor, Recorder, stored, wait_until

import jobq
from jobq import JobStatus


class Outage:
    """Makes the queue's store refuse every outcome write (settle and
    settle_and_claim) with StoreUnavailable while ``down``."""

    def __init__(self, queue: jobq.Queue) -> None:
        self.down = False
        self.refused = 0
        for name in ("settle", "settle_and_claim"):
            method = getattr(queue.store, name)

            async def call(*args: Any, _method: Any = method, **kwargs: Any) -> Any:
                if self.down:
                    self.refused += 1
                    raise jobq.StoreUnavailable("the store is away")
                return await _method(*args, **kwargs)

            setattr(queue.store, name, call)


ENDINGS = {
    "completion": ("job_completed", JobStatus.COMPLETED),
    "failure": ("job_failed", JobStatus.FAILED),
    "snooze": ("job_snoozed", JobStatus.DELAYED),
}


def processor_for(make_processor: MakeProcessor, ending: str, go: asyncio.Event) -> jobq.JobProcessor:
    # Renewals far apart: the lease ends when the test moves the fake clock.
    processor = make_processor(concurrency=1, heartbeat_interval=20, rescue_interval=60)

    @processor.handler("t")
    async def handle(job: jobq.Job[Any]) -> str:
        await go.wait()
        if ending == "failure":
            raise RuntimeError("it broke")
        if ending == "snooze":
            raise jobq.SnoozeJob(600)
        return "done"

    return processor


@pytest.mark.parametrize("ending", ENDINGS)
async def test_an_outcome_is_written_once_the_store_is_back(
    queue: jobq.Queue, make_processor: MakeProcessor, caplog: pytest.LogCaptureFixture, ending: str
) -> None:
    event, status = ENDINGS[ending]
    outage = Outage(queue)
    go = asyncio.Event()
    processor = processor_for(make_processor, ending, go)
    recorded = Recorder(processor, event)
    job_id = await processor.add("t", None, max_attempts=1)
    with caplog.at_level(logging.WARNING, logger="jobq"):
        await processor.start()
        await wait_until(lambda: processor.get_metrics().active_jobs == 1)
        outage.down = True
        go.set()
        await wait_until(lambda: outage.refused >= 2)  # tried, and tried again
        assert recorded.events == []
        outage.down = False
        await recorded.wait_for(1)
    assert (await stored(queue, job_id)).status is status
    assert any("trying again" in r.getMessage() and "the store is away" in r.getMessage() for r in caplog.records)
    await processor.stop()
    assert len(recorded.events) == 1


@pytest.mark.parametrize("ending", [*ENDINGS, "release"])
async def test_an_outcome_the_store_misses_for_the_whole_lease_is_dropped_and_the_job_runs_again(
    queue: jobq.Queue,
    clock: jobq.FakeClock,
    make_processor: MakeProcessor,
    caplog: pytest.LogCaptureFixture,
    ending: str,
) -> None:
    outage = Outage(queue)
    go = asyncio.Event()
    processor = processor_for(make_processor, ending, go)
    job_id = await processor.add("t", None, max_attempts=3)
    with caplog.at_level(logging.WARNING, logger="jobq"):
        await processor.start()
        await wait_until(lambda: processor.get_metrics().active_jobs == 1)
        outage.down = True
        if ending == "release":
            stopping = asyncio.ensure_future(processor.stop(timeout=0.05))  # the handler is cut short
        else:
            go.set()
        await wait_until(lambda: outage.refused >= 1)
        clock.advance(31)  # past the 30 s lease: the outcome is given up
        what = {"completion": "result", "failure": "failure", "snooze": "snooze", "release": "release"}[ending]
        noun = "could not release job" if ending == "release" else f"could not record the {what} of job"
        await wait_until(lambda: any(noun in r.getMessage() for r in caplog.records))
        if ending == "release":
            await asyncio.wait_for(stopping, DEADLINE)
        else:
            await processor.stop()
    outage.down = False
    row = await stored(queue, job_id)
    assert row.status is JobStatus.PROCESSING  # nothing was written: the lease ran out under it
    rescued = await queue.rescue_expired()
    assert [j.id for j in rescued] == [job_id] and rescued[0].status is JobStatus.PENDING


async def test_the_circuit_breaker_timeout_caps_a_handler(queue: jobq.Queue, make_processor: MakeProcessor) -> None:
    processor = make_processor(
        job_timeout=3600, circuit_breaker=jobq.CircuitBreaker(failure_threshold=5, timeout=0.2, reset_timeout=60)
    )

    @processor.handler("slow", timeout=3600)
    async def slow(job: jobq.Job[Any]) -> None:
        await asyncio.sleep(3600)

    failed = Recorder(processor, "job_failed")
    job_id = await processor.add("slow", None, max_attempts=1)
    await processor.start()
    (event,) = await failed.wait_for(1)
    assert "ran past its 0.2 s timeout" in str(event.error)
    row = await stored(queue, job_id)
    assert row.status is JobStatus.FAILED and row.error_type == "JobTimeout"
