"""JobProcessor against every backend: k-msg's rules from API.md.

Waits are on asyncio events with a generous deadline, never fixed sleeps,
except for short pauses that check something does *not* happen.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import datetime
from typing import Any

import pytest
from contract_helpers import DEADLINE, QUIET, MakeProcessor, Recorder, stored, wait_until

import jobq
from jobq import JobStatus

# -- add ---------------------------------------------------------------------------


async def test_add_defaults(queue: jobq.Queue, make_processor: MakeProcessor) -> None:
    processor = make_processor()
    job_id = await processor.add("send", {"to": "a"})
    assert isinstance(job_id, str)
    job = await stored(queue, job_id)
    assert job.priority == 5
    assert job.max_attempts == 3
    assert job.data == {"to": "a"}
    assert job.status is JobStatus.PENDING
    assert job.attempts == 0


async def test_add_uses_max_retries_and_keeps_explicit_values(
    queue: jobq.Queue, make_processor: MakeProcessor
) -> None:
    processor = make_processor(max_retries=7)
    default = await stored(queue, await processor.add("send", 1))
    assert default.max_attempts == 7 and default.priority == 5
    zero = await stored(queue, await processor.add("send", 2, priority=0, max_attempts=2))
    assert zero.priority == 0 and zero.max_attempts == 2
    later = await stored(queue, await processor.add("send", 3, delay=30, metadata={"m": 1}))
    assert later.status is JobStatus.DELAYED and later.delay == 30 and later.metadata == {"m": 1}


async def test_add_emits_job_added(make_processor: MakeProcessor) -> None:
    processor = make_processor()
    added = Recorder(processor, "job_added")
    job_id = await processor.add("send", 1)
    (event,) = await added.wait_for(1)
    assert isinstance(event, jobq.Event)
    assert event.job is not None and event.job.id == job_id


# -- handlers ------------------------------------------------------------------------


async def test_return_value_is_stored_as_result(queue: jobq.Queue, make_processor: MakeProcessor) -> None:
    processor = make_processor()

    @processor.handler("send")
    async def send(job: jobq.Job[Any]) -> Any:
        return {"sent_to": job.data["to"]}

    completed = Recorder(processor, "job_completed")
    job_id = await processor.add("send", {"to": "+82"})
    await processor.start()
    (event,) = await completed.wait_for(1)
    assert event.name == "job_completed"
    assert event.job is not None and event.job.id == job_id
    assert event.result == {"sent_to": "+82"}
    job = await stored(queue, job_id)
    assert job.status is JobStatus.COMPLETED
    assert job.result == {"sent_to": "+82"}
    assert job.completed_at is not None
    assert job.attempts == 0


async def test_sync_handlers_work(queue: jobq.Queue, make_processor: MakeProcessor) -> None:
    processor = make_processor()
    threads: list[str] = []

    def double(job: jobq.Job[Any]) -> int:
        threads.append(threading.current_thread().name)
        return int(job.data) * 2

    processor.handle("double", double)
    completed = Recorder(processor, "job_completed")
    job_id = await processor.add("double", 21)
    await processor.start()
    await completed.wait_for(1)
    assert (await stored(queue, job_id)).result == 42
    assert threads and threads[0] != threading.main_thread().name


async def test_retry_after_retry_delays(
    queue: jobq.Queue, clock: jobq.FakeClock, make_processor: MakeProcessor
) -> None:
    processor = make_processor(retry_delays=[3, 11])
    calls: list[int] = []

    @processor.handler("flaky")
    async def flaky(job: jobq.Job[Any]) -> str:
        calls.append(job.attempts)
        if len(calls) < 3:
            raise RuntimeError(f"failure {len(calls)}")
        return "finally"

    retries = Recorder(processor, "job_retry")
    completed = Recorder(processor, "job_completed")
    job_id = await processor.add("flaky", None)
    await processor.start()

    (first,) = await retries.wait_for(1)
    assert first.error == "failure 1"
    assert first.retry_delay == 3
    waiting = await stored(queue, job_id)
    assert waiting.status is JobStatus.DELAYED
    assert waiting.attempts == 1
    assert waiting.error == "failure 1"
    assert waiting.process_at.timestamp() == pytest.approx(clock.now() + 3)

    clock.advance(3)
    second = (await retries.wait_for(2))[1]
    assert second.retry_delay == 11  # retry_delays[min(1, len-1)]
    waiting = await stored(queue, job_id)
    assert waiting.attempts == 2
    assert waiting.process_at.timestamp() == pytest.approx(clock.now() + 11)

    clock.advance(11)
    (done,) = await completed.wait_for(1)
    assert done.result == "finally"
    assert calls == [0, 1, 2]
    final = await stored(queue, job_id)
    assert final.status is JobStatus.COMPLETED and final.attempts == 2


async def test_retry_delay_index_is_clamped(
    queue: jobq.Queue, clock: jobq.FakeClock, make_processor: MakeProcessor
) -> None:
    processor = make_processor(retry_delays=[2])

    @processor.handler("bad")
    async def bad(job: jobq.Job[Any]) -> None:
        raise RuntimeError("no")

    retries = Recorder(processor, "job_retry")
    await processor.add("bad", None, max_attempts=4)
    await processor.start()
    for n in (1, 2, 3):
        events = await retries.wait_for(n)
        assert events[-1].retry_delay == 2
        if n < 3:
            clock.advance(2)


async def test_final_failure_emits_job_failed(
    queue: jobq.Queue, clock: jobq.FakeClock, make_processor: MakeProcessor
) -> None:
    processor = make_processor(retry_delays=[1])

    @processor.handler("bad")
    async def bad(job: jobq.Job[Any]) -> None:
        raise ValueError(f"broken on attempt {job.attempts}")

    retries = Recorder(processor, "job_retry")
    failures = Recorder(processor, "job_failed")
    job_id = await processor.add("bad", None, max_attempts=2)
    await processor.start()
    await retries.wait_for(1)
    clock.advance(1)
    (event,) = await failures.wait_for(1)
    assert event.error == "broken on attempt 1"
    assert event.job is not None and event.job.id == job_id
    assert len(retries.events) == 1
    job = await stored(queue, job_id)
    assert job.status is JobStatus.FAILED
    assert job.attempts == 2
    assert job.failed_at is not None
    assert job.error == "broken on attempt 1"


async def test_max_attempts_one_fails_at_once(queue: jobq.Queue, make_processor: MakeProcessor) -> None:
    processor = make_processor(max_retries=1)

    @processor.handler("bad")
    def bad(job: jobq.Job[Any]) -> None:
        raise RuntimeError("sync failure")

    retries = Recorder(processor, "job_retry")
    failures = Recorder(processor, "job_failed")
    job_id = await processor.add("bad", None)
    await processor.start()
    (event,) = await failures.wait_for(1)
    assert event.error == "sync failure"
    assert retries.events == []
    assert (await stored(queue, job_id)).status is JobStatus.FAILED


async def test_unknown_type_fails_at_once(queue: jobq.Queue, make_processor: MakeProcessor) -> None:
    processor = make_processor()
    retries = Recorder(processor, "job_retry")
    failures = Recorder(processor, "job_failed")
    job_id = await processor.add("nobody_handles_this", {"x": 1})
    await processor.start()
    (event,) = await failures.wait_for(1)
    assert event.error == "No handler registered for job type: nobody_handles_this"
    job = await stored(queue, job_id)
    assert job.status is JobStatus.FAILED
    assert job.error == "No handler registered for job type: nobody_handles_this"
    assert job.attempts == 1 and job.max_attempts == 3
    assert retries.events == []


# -- events ---------------------------------------------------------------------------


async def test_callbacks_receive_one_event(make_processor: MakeProcessor) -> None:
    processor = make_processor()
    received: list[tuple[Any, ...]] = []
    async_received: list[jobq.Event] = []
    done = asyncio.Event()

    def sync_callback(*args: Any) -> None:
        received.append(args)

    async def async_callback(event: jobq.Event) -> None:
        async_received.append(event)
        done.set()

    for name in ("processor_started", "job_added", "job_started", "job_completed"):
        processor.on(name, sync_callback)
    processor.on("job_completed", async_callback)
    processor.handle("t", lambda job: "r")
    await processor.start()
    await processor.add("t", 1)
    await asyncio.wait_for(done.wait(), DEADLINE)
    assert all(len(args) == 1 and isinstance(args[0], jobq.Event) for args in received)
    names = [args[0].name for args in received]
    assert names[0] == "processor_started"
    assert {"job_added", "job_started", "job_completed"} <= set(names)
    assert async_received[0].result == "r"
    stopped: list[jobq.Event] = []
    processor.on("processor_stopped", stopped.append)
    await processor.stop()
    assert [e.name for e in stopped] == ["processor_stopped"]


async def test_a_raising_callback_does_not_hurt_the_job(
    queue: jobq.Queue, make_processor: MakeProcessor, caplog: pytest.LogCaptureFixture
) -> None:
    processor = make_processor()

    def explode(event: jobq.Event) -> None:
        raise RuntimeError("callback bug")

    processor.on("job_started", explode)
    processor.handle("t", lambda job: "ok")
    completed = Recorder(processor, "job_completed")
    job_id = await processor.add("t", 1)
    with caplog.at_level(logging.ERROR, logger="jobq"):
        await processor.start()
        await completed.wait_for(1)
    assert (await stored(queue, job_id)).status is JobStatus.COMPLETED
    (logged,) = [r for r in caplog.records if r.getMessage() == "the callback for job_started raised"]
    assert logged.exc_info is not None and str(logged.exc_info[1]) == "callback bug"


async def test_unknown_event_name_is_rejected(make_processor: MakeProcessor) -> None:
    processor = make_processor()
    with pytest.raises(jobq.InvalidOption):
        processor.on("job_complete", lambda e: None)
    processor.on("job:completed", lambda e: None)  # k-msg's spelling


# -- metrics and status -----------------------------------------------------------------


async def test_metrics_and_queue_status(queue: jobq.Queue, make_processor: MakeProcessor) -> None:
    processor = make_processor()
    metrics = processor.get_metrics()
    for name in (
        "processed", "succeeded", "failed", "retried", "active_jobs",
        "queue_size", "average_processing_time", "last_processed_at",
    ):  # fmt: skip
        assert hasattr(metrics, name)
    assert metrics.processed == 0 and metrics.last_processed_at is None

    processor.handle("ok", lambda job: "fine")

    @processor.handler("bad")
    async def bad(job: jobq.Job[Any]) -> None:
        raise RuntimeError("no")

    completed = Recorder(processor, "job_completed")
    failed = Recorder(processor, "job_failed")
    await processor.add("ok", 1)
    await processor.add("bad", 2, max_attempts=1)
    await processor.add("later", 3, delay=60)
    await processor.start()
    await completed.wait_for(1)
    await failed.wait_for(1)
    await wait_until(lambda: processor.get_metrics().active_jobs == 0)
    metrics = processor.get_metrics()
    assert metrics.processed == 2
    assert metrics.succeeded == 1
    assert metrics.failed == 1
    assert metrics.retried == 0
    assert metrics.active_jobs == 0
    assert metrics.average_processing_time >= 0
    assert isinstance(metrics.last_processed_at, datetime)
    assert metrics["processed"] == 2  # reads like a dict too

    status = await processor.get_queue_status()
    assert status.pending == 0
    assert status.processing == 0
    assert status.failed == 1
    assert status.total_processed == 2
    await processor.stop()
    await queue.enqueue("ok", 4, delay=0)
    await queue.enqueue("ok", 5, delay=60)
    assert (await processor.get_queue_status()).pending == 1  # ready jobs only


async def test_queue_status_counts_ready_jobs(queue: jobq.Queue, make_processor: MakeProcessor) -> None:
    processor = make_processor()
    await processor.add("t", 1)
    await processor.add("t", 2)
    await processor.add("t", 3, delay=60)
    status = await processor.get_queue_status()
    assert (status.pending, status.processing, status.failed, status.total_processed) == (2, 0, 0, 0)


# -- lifecycle ----------------------------------------------------------------------------


async def test_stop_waits_for_jobs_in_flight(queue: jobq.Queue, make_processor: MakeProcessor) -> None:
    processor = make_processor()
    started = asyncio.Event()
    finished: list[str] = []

    @processor.handler("slow")
    async def slow(job: jobq.Job[Any]) -> str:
        started.set()
        await asyncio.sleep(0.3)
        finished.append(job.id)
        return "done"

    job_id = await processor.add("slow", None)
    await processor.start()
    assert processor.running
    await asyncio.wait_for(started.wait(), DEADLINE)
    await processor.stop()
    assert not processor.running
    assert finished == [job_id]
    job = await stored(queue, job_id)
    assert job.status is JobStatus.COMPLETED and job.result == "done"


async def test_a_job_finishing_during_the_grace_period_is_stored_at_once(
    queue: jobq.Queue, make_processor: MakeProcessor
) -> None:
    """While stop() waits for a long job, a short one that finishes is
    written at once, not after the long one: no claim follows to carry it."""
    processor = make_processor(concurrency=2)
    both_started = asyncio.Event()
    running = 0
    release_long = asyncio.Event()

    @processor.handler("job")
    async def handler(job: jobq.Job[Any]) -> str:
        nonlocal running
        running += 1
        if running == 2:
            both_started.set()
        await both_started.wait()
        if job.data == "long":
            await release_long.wait()
        else:
            await asyncio.sleep(0.05)
        return job.data

    short = await processor.add("job", "short")
    await processor.add("job", "long")
    await processor.start()
    await asyncio.wait_for(both_started.wait(), DEADLINE)
    stopping = asyncio.create_task(processor.stop(timeout=DEADLINE))

    async def short_stored() -> bool:
        job = await queue.get_job(short)
        return job is not None and job.status is JobStatus.COMPLETED

    await wait_until(short_stored)
    assert not stopping.done()  # the long job still holds stop()
    release_long.set()
    await stopping


async def test_request_stop_now_cuts_the_grace_short(queue: jobq.Queue, make_processor: MakeProcessor) -> None:
    """A stop with a grace far longer than the test is cut short by
    ``request_stop(now=True)`` from another thread (as a second signal
    does): the job still running is released, no attempt spent."""
    processor = make_processor(shutdown_timeout=DEADLINE * 10)
    started = asyncio.Event()
    never = asyncio.Event()

    @processor.handler("stuck")
    async def stuck(job: jobq.Job[Any]) -> None:
        started.set()
        await never.wait()

    job_id = await processor.add("stuck", None)
    await processor.start()
    await asyncio.wait_for(started.wait(), DEADLINE)
    stopping = asyncio.create_task(processor.stop())
    await asyncio.sleep(QUIET)
    assert not stopping.done()  # the grace holds it
    threading.Thread(target=processor.request_stop, kwargs={"now": True}).start()
    await asyncio.wait_for(stopping, DEADLINE)
    job = await stored(queue, job_id)
    assert job.status is JobStatus.PENDING and job.attempts == 0


async def test_request_stop_ends_run(queue: jobq.Queue, make_processor: MakeProcessor) -> None:
    processor = make_processor()
    ran = asyncio.Event()
    processor.handle("t", lambda job: None)
    processor.on("job_completed", lambda event: ran.set())
    running = asyncio.create_task(processor.run(handle_signals=False))
    await processor.add("t", 1)
    await asyncio.wait_for(ran.wait(), DEADLINE)
    processor.request_stop()
    await asyncio.wait_for(running, DEADLINE)
    assert not processor.running


async def test_stopped_processor_claims_nothing(queue: jobq.Queue, make_processor: MakeProcessor) -> None:
    processor = make_processor()
    processor.handle("t", lambda job: None)
    await processor.start()
    await processor.stop()
    job_id = await processor.add("t", 1)
    await asyncio.sleep(QUIET)
    assert (await stored(queue, job_id)).status is JobStatus.PENDING


async def test_cleanup(queue: jobq.Queue, make_processor: MakeProcessor) -> None:
    processor = make_processor()
    done = await processor.add("t", 1)
    failed = await processor.add("t", 2)
    waiting = await processor.add("t", 3)
    await queue.complete(done)
    await queue.fail(failed, "x")
    assert await processor.cleanup() == 2
    assert await processor.get_job(done) is None
    assert await processor.get_job(failed) is None
    assert await processor.get_job(waiting) is not None


async def test_get_job_and_remove_job(make_processor: MakeProcessor) -> None:
    processor = make_processor()
    job_id = await processor.add("t", {"a": 1})
    job = await processor.get_job(job_id)
    assert job is not None and job.id == job_id and job.data == {"a": 1}
    assert await processor.get_job("missing") is None
    assert await processor.remove_job(job_id) is True
    assert await processor.get_job(job_id) is None
    assert await processor.remove_job(job_id) is False


# -- concurrency, rate limit, circuit breaker, timeout ----------------------------------------


async def test_concurrency_bound_is_respected(queue: jobq.Queue, make_processor: MakeProcessor) -> None:
    processor = make_processor(concurrency=3)
    running = 0
    peak = 0

    @processor.handler("t")
    async def work(job: jobq.Job[Any]) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.05)
        running -= 1

    completed = Recorder(processor, "job_completed")
    for i in range(10):
        await processor.add("t", i)
    await processor.start()
    await completed.wait_for(10)
    assert peak == 3


async def test_concurrency_bound_with_sync_handlers(make_processor: MakeProcessor) -> None:
    processor = make_processor(concurrency=2)
    lock = threading.Lock()
    running = 0
    peak = 0

    def work(job: jobq.Job[Any]) -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        threading.Event().wait(0.05)
        with lock:
            running -= 1

    processor.handle("t", work)
    completed = Recorder(processor, "job_completed")
    for i in range(6):
        await processor.add("t", i)
    await processor.start()
    await completed.wait_for(6)
    assert peak == 2


async def test_rate_limit_holds_jobs_without_spending_attempts(
    queue: jobq.Queue, clock: jobq.FakeClock, make_processor: MakeProcessor
) -> None:
    processor = make_processor(rate_limit=jobq.RateLimit(max_requests=2, window_seconds=60))
    processor.handle("t", lambda job: job.data)
    completed = Recorder(processor, "job_completed")
    ids = [await processor.add("t", i) for i in range(5)]
    await processor.start()
    await completed.wait_for(2)
    await asyncio.sleep(QUIET)
    assert len(completed.events) == 2
    waiting = [await stored(queue, i) for i in ids]
    held = [j for j in waiting if j.status is not JobStatus.COMPLETED]
    assert len(held) == 3
    assert all(j.status is JobStatus.PENDING and j.attempts == 0 for j in held)
    clock.advance(60)
    await completed.wait_for(4)
    await asyncio.sleep(QUIET)
    assert len(completed.events) == 4
    clock.advance(60)
    await completed.wait_for(5)
    finished = [await stored(queue, i) for i in ids]
    assert all(j.status is JobStatus.COMPLETED and j.attempts == 0 for j in finished)


async def test_rate_limited_claim_loop_does_not_spin(
    queue: jobq.Queue, make_processor: MakeProcessor
) -> None:
    """While the rate limit is exhausted, a new job arriving must not make the
    claim loop busy-wait until the window passes."""
    limit = jobq.RateLimit(max_requests=1, window_seconds=3600)
    processor = make_processor(rate_limit=limit)
    processor.handle("t", lambda job: None)
    completed = Recorder(processor, "job_completed")
    checks = 0
    available = limit.available

    def counting_available(now: float) -> int:
        nonlocal checks
        checks += 1
        return available(now)

    limit.available = counting_available  # type: ignore[method-assign]
    await processor.add("t", 1)
    await processor.start()
    await completed.wait_for(1)
    await processor.add("t", 2)  # wakes the claim loop while it is limited
    await asyncio.sleep(QUIET)
    checks_before = checks
    await asyncio.sleep(QUIET)
    assert checks - checks_before < 20, f"claim loop checked the rate limit {checks - checks_before} times"


async def test_circuit_breaker_opens_holds_and_half_opens(
    queue: jobq.Queue, clock: jobq.FakeClock, make_processor: MakeProcessor
) -> None:
    processor = make_processor(
        concurrency=1,
        retry_delays=[1000],
        circuit_breaker=jobq.CircuitBreaker(failure_threshold=2, timeout=30, reset_timeout=60),
    )
    broken = True
    started: list[str] = []

    @processor.handler("sms")
    async def sms(job: jobq.Job[Any]) -> str:
        started.append(job.id)
        if broken:
            raise RuntimeError("provider down")
        return "sent"

    processor.handle("email", lambda job: "mailed")
    retries = Recorder(processor, "job_retry")
    completed = Recorder(processor, "job_completed")
    first = await processor.add("sms", 1, max_attempts=5)
    second = await processor.add("sms", 2, max_attempts=5)
    await processor.start()
    await retries.wait_for(2)  # two failures in a row: the circuit opens
    third = await processor.add("sms", 3, max_attempts=5)
    other = await processor.add("email", 4)
    (mailed,) = await completed.wait_for(1)  # other types still run
    assert mailed.job is not None and mailed.job.id == other
    await asyncio.sleep(QUIET)
    assert len(started) == 2
    held = await stored(queue, third)
    assert held.status is JobStatus.PENDING and held.attempts == 0
    assert (await stored(queue, first)).attempts == 1
    assert (await stored(queue, second)).attempts == 1

    broken = False
    clock.advance(60)  # reset_timeout passed: one trial job runs
    events = await completed.wait_for(2)
    assert events[1].job is not None and events[1].job.id == third
    trial = await stored(queue, third)
    assert trial.status is JobStatus.COMPLETED and trial.attempts == 0

    clock.advance(1000)  # the retried jobs come due, and the circuit is closed again
    await completed.wait_for(4)
    for job_id in (first, second):
        job = await stored(queue, job_id)
        assert job.status is JobStatus.COMPLETED and job.attempts == 1


async def test_circuit_reopens_when_the_trial_fails(
    queue: jobq.Queue, clock: jobq.FakeClock, make_processor: MakeProcessor
) -> None:
    processor = make_processor(
        concurrency=1,
        retry_delays=[1000],
        circuit_breaker=jobq.CircuitBreaker(failure_threshold=1, timeout=30, reset_timeout=60),
    )

    @processor.handler("sms")
    async def sms(job: jobq.Job[Any]) -> None:
        raise RuntimeError("still down")

    retries = Recorder(processor, "job_retry")
    await processor.add("sms", 1, max_attempts=5)
    await processor.start()
    await retries.wait_for(1)
    waiting = await processor.add("sms", 2, max_attempts=5)
    await asyncio.sleep(QUIET)
    assert (await stored(queue, waiting)).attempts == 0
    clock.advance(60)
    await retries.wait_for(2)  # the trial ran and failed: open again
    also_waiting = await processor.add("sms", 3, max_attempts=5)
    await asyncio.sleep(QUIET)
    assert len(retries.events) == 2
    assert (await stored(queue, also_waiting)).attempts == 0


async def test_job_timeout(queue: jobq.Queue, make_processor: MakeProcessor) -> None:
    processor = make_processor(job_timeout=0.2)
    cancelled = asyncio.Event()

    @processor.handler("hang")
    async def hang(job: jobq.Job[Any]) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    failures = Recorder(processor, "job_failed")
    job_id = await processor.add("hang", None, max_attempts=1)
    await processor.start()
    (event,) = await failures.wait_for(1)
    assert cancelled.is_set()
    assert event.error is not None and "timeout" in event.error
    job = await stored(queue, job_id)
    assert job.status is JobStatus.FAILED and job.attempts == 1


async def test_job_timeout_is_retried(queue: jobq.Queue, make_processor: MakeProcessor) -> None:
    processor = make_processor(job_timeout=0.2, retry_delays=[5])

    @processor.handler("hang")
    async def hang(job: jobq.Job[Any]) -> None:
        await asyncio.sleep(60)

    retries = Recorder(processor, "job_retry")
    job_id = await processor.add("hang", None)
    await processor.start()
    (event,) = await retries.wait_for(1)
    assert event.retry_delay == 5
    job = await stored(queue, job_id)
    assert job.status is JobStatus.DELAYED and job.attempts == 1


async def test_enqueue_wakes_an_idle_processor(queue: jobq.Queue, make_processor: MakeProcessor) -> None:
    processor = make_processor(poll_interval=30)
    processor.handle("t", lambda job: "ok")
    completed = Recorder(processor, "job_completed")
    await processor.start()
    await asyncio.sleep(0.05)
    await queue.enqueue("t", 1)
    await asyncio.wait_for(completed.wait_for(1), 5)


async def test_delayed_job_runs_when_the_clock_passes(
    queue: jobq.Queue, clock: jobq.FakeClock, make_processor: MakeProcessor
) -> None:
    processor = make_processor(poll_interval=30)
    processor.handle("t", lambda job: "ok")
    completed = Recorder(processor, "job_completed")
    job_id = await processor.add("t", 1, delay=120)
    await processor.start()
    await asyncio.sleep(QUIET)
    assert completed.events == []
    clock.advance(120)
    (event,) = await completed.wait_for(1)
    assert event.job is not None and event.job.id == job_id
