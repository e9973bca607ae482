"""Job outcomes logged under ``jobq.job`` and carried by events, on every
backend: one line per outcome with its fields, the traceback of a final
failure, the running job on the handler's own lines, the exception object
on events, and logging, callbacks or metrics that raise never failing a job
or stopping its worker."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from contract_helpers import MakeProcessor, Recorder, stored, wait_until

import jobq
from jobq import JobStatus
from jobq.logs import JobContextFilter


class Capture(logging.Handler):
    """Keeps the records it is given (with the job filter, as jobq worker's handler has)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.addFilter(JobContextFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def outcomes(self, outcome: str) -> list[logging.LogRecord]:
        return [r for r in self.records if r.name == "jobq.job" and getattr(r, "outcome", None) == outcome]


@pytest.fixture
def logged() -> Iterator[Capture]:
    capture = Capture()
    root = logging.getLogger("jobq")
    app = logging.getLogger("app")
    before = root.level, app.level
    root.setLevel(logging.DEBUG)
    app.setLevel(logging.DEBUG)
    root.addHandler(capture)
    app.addHandler(capture)
    yield capture
    root.removeHandler(capture)
    app.removeHandler(capture)
    root.setLevel(before[0])
    app.setLevel(before[1])


async def test_a_retry_and_a_final_failure_each_log_one_line_and_carry_the_exception(
    queue: jobq.Queue, make_processor: MakeProcessor, logged: Capture
) -> None:
    processor = make_processor(retry_delays=[0])
    raised: list[BaseException] = []

    @processor.handler("charge")
    async def charge(job: jobq.Job[Any]) -> None:
        raised.append(KeyError("missing_field"))
        raise raised[-1]

    retries, failures = Recorder(processor, "job_retry"), Recorder(processor, "job_failed")
    job_id = await processor.add("charge", {"n": 1}, max_attempts=2)
    await processor.start()
    (retry,) = await retries.wait_for(1)
    (failure,) = await failures.wait_for(1)
    # Events carry the exception itself, and its message as before.
    assert retry.exception is raised[0] and failure.exception is raised[1]
    assert retry.error == failure.error == "'missing_field'"

    (warned,) = logged.outcomes("retry")
    assert warned.levelno == logging.WARNING and warned.exc_info is None
    assert (warned.job_id, warned.job_type, warned.queue) == (job_id, "charge", "default")  # type: ignore[attr-defined]
    assert (warned.attempt, warned.max_attempts, warned.error_type) == (1, 2, "KeyError")  # type: ignore[attr-defined]
    assert warned.duration >= 0 and "attempt 1 of 2" in warned.getMessage()  # type: ignore[attr-defined]
    assert "KeyError: 'missing_field'" in warned.getMessage()
    (error,) = logged.outcomes("failed")
    assert error.levelno == logging.ERROR and "attempt 2 of 2" in error.getMessage()
    assert error.exc_info is not None and error.exc_info[1] is raised[1]
    assert [r.attempt for r in logged.outcomes("started")] == [1, 2]  # type: ignore[attr-defined]
    assert all(r.levelno == logging.DEBUG for r in logged.outcomes("started"))
    assert (await stored(queue, job_id)).status is JobStatus.FAILED


async def test_a_completion_logs_at_debug_only(
    queue: jobq.Queue, make_processor: MakeProcessor, logged: Capture
) -> None:
    processor = make_processor()
    processor.handle("ok", lambda job: job.data)
    done = Recorder(processor, "job_completed")
    first = await processor.add("ok", 1)
    await processor.start()
    await done.wait_for(1)
    await wait_until(lambda: logged.outcomes("completed"))
    (line,) = logged.outcomes("completed")
    assert line.levelno == logging.DEBUG and line.job_id == first and line.duration >= 0  # type: ignore[attr-defined]
    # At INFO, no line is built for a completion (nor for a start).
    logging.getLogger("jobq").setLevel(logging.INFO)
    logged.records.clear()
    await processor.add("ok", 2)
    await done.wait_for(2)
    assert not logged.outcomes("completed") and not logged.outcomes("started")


async def test_the_handlers_own_lines_carry_the_running_job(
    queue: jobq.Queue, make_processor: MakeProcessor, logged: Capture
) -> None:
    processor = make_processor()
    app_log = logging.getLogger("app")

    @processor.handler("async")
    async def in_the_loop(job: jobq.Job[Any]) -> None:
        app_log.info("working")

    @processor.handler("sync")
    def in_a_thread(job: jobq.Job[Any]) -> None:
        app_log.info("working")

    done = Recorder(processor, "job_completed")
    ids = {await processor.add("async", None): "async", await processor.add("sync", None): "sync"}
    await processor.start()
    await done.wait_for(2)
    lines = [r for r in logged.records if r.name == "app"]
    assert {(r.job_id, r.job_type) for r in lines} == set(ids.items())  # type: ignore[attr-defined]
    logged.records.clear()
    app_log.info("outside any job")
    assert not hasattr(logged.records[-1], "job_id")


async def test_cancel_snooze_and_release_log_at_info(
    queue: jobq.Queue, clock: jobq.FakeClock, make_processor: MakeProcessor, logged: Capture
) -> None:
    processor = make_processor(shutdown_timeout=0)
    started = asyncio.Event()

    @processor.handler("cancel")
    async def cancel(job: jobq.Job[Any]) -> None:
        raise jobq.CancelJob("not wanted")

    @processor.handler("snooze")
    async def snooze(job: jobq.Job[Any]) -> None:
        raise jobq.SnoozeJob(60)

    @processor.handler("hang")
    async def hang(job: jobq.Job[Any]) -> None:
        started.set()
        await asyncio.Event().wait()

    cancelled, snoozed = Recorder(processor, "job_cancelled"), Recorder(processor, "job_snoozed")
    released = Recorder(processor, "job_released")
    await processor.add("cancel", None)
    await processor.add("snooze", None)
    hung = await processor.add("hang", None)
    await processor.start()
    (cancel_event,) = await cancelled.wait_for(1)
    (snooze_event,) = await snoozed.wait_for(1)
    assert isinstance(cancel_event.exception, jobq.CancelJob)
    assert isinstance(snooze_event.exception, jobq.SnoozeJob)
    await asyncio.wait_for(started.wait(), 10)
    await processor.stop(timeout=0)
    (release,) = await released.wait_for(1)
    assert release.job is not None and release.job.id == hung
    for outcome in ("cancelled", "snoozed", "released"):
        (line,) = logged.outcomes(outcome)
        assert line.levelno == logging.INFO
    assert logged.outcomes("snoozed")[0].delay == 60  # type: ignore[attr-defined]
    assert (await stored(queue, hung)).status is JobStatus.PENDING
    worker = [r for r in logged.records if r.name == "jobq.worker"]
    assert [r.levelno for r in worker] == [logging.INFO, logging.INFO]
    assert worker[0].getMessage().endswith("grace 0 s, handlers cancel,hang,snooze") and "stopped" in worker[1].getMessage()


async def test_a_rescue_logs_a_warning_naming_the_lost_worker(
    queue: jobq.Queue, clock: jobq.FakeClock, make_processor: MakeProcessor, logged: Capture
) -> None:
    processor = make_processor(queues=["elsewhere"], rescue_interval=0.02)  # it only rescues
    lost = Recorder(processor, "job_lost")
    job = await queue.enqueue("orphan", None)
    await processor.start()
    (claimed,) = await queue.claim(1, owner="worker-that-died", rescue=False)
    assert claimed.id == job.id
    clock.advance(queue.lease + 1)
    await lost.wait_for(1)
    (line,) = logged.outcomes("rescued")
    assert line.levelno == logging.WARNING and line.job_id == job.id  # type: ignore[attr-defined]
    assert "worker-that-died" in line.getMessage()


class Broken(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        raise RuntimeError("the log server is down")


class BrokenFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        raise RuntimeError("a filter that raises")


async def test_failing_log_handlers_callbacks_and_metrics_never_fail_a_job(
    queue: jobq.Queue, make_processor: MakeProcessor, logged: Capture, capsys: pytest.CaptureFixture[str]
) -> None:
    from prometheus_client import CollectorRegistry

    from jobq.metrics import instrument

    processor = make_processor(retry_delays=[0])
    processor.handle("ok", lambda job: "done")

    def boom(job: jobq.Job[Any]) -> None:
        raise ValueError("bad input")

    processor.handle("bad", boom)
    registry = CollectorRegistry()
    instrument(processor, registry)
    # The metrics exporter breaks too: every count it makes raises.
    for name in ("job_completed", "job_failed", "job_started"):
        processor.on(name, lambda event: 1 / 0)

    async def async_callback(event: jobq.Event) -> None:
        raise RuntimeError("async callback")

    processor.on("job_completed", async_callback)
    broken, filtered = Broken(), logging.StreamHandler()
    filtered.addFilter(BrokenFilter())
    job_logger = logging.getLogger("jobq.job")
    job_logger.addHandler(broken)
    job_logger.addHandler(filtered)
    try:
        done, failed = Recorder(processor, "job_completed"), Recorder(processor, "job_failed")
        await processor.add("bad", None, max_attempts=1)
        await processor.start()
        await failed.wait_for(1)
        for n in range(3):  # the worker goes on
            await processor.add("ok", n)
        await done.wait_for(3)
    finally:
        job_logger.removeHandler(broken)
        job_logger.removeHandler(filtered)
    assert processor.running and processor.failure is None
    summary = {job.type: job.status for job in (await queue.list_jobs()).jobs}
    assert summary == {"bad": JobStatus.FAILED, "ok": JobStatus.COMPLETED}
    assert "a log handler raised" in capsys.readouterr().err
    assert any("raised" in r.getMessage() for r in logged.records if r.name == "jobq")
