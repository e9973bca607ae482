"""The processor's parts on their own: its config, the executor's decisions,
and the upkeep loop that survives whatever a duty raises."""

from __future__ import annotations

import ast
import asyncio
import inspect
import logging
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

import jobq
from jobq.processor import config as config_module
from jobq.processor.config import OPTIONS, ProcessorConfig
from jobq.processor.executor import Kind, Outcome, Running
from jobq.processor.maintenance import STORE_RETRY_MAX, backoff, every

# -- config ------------------------------------------------------------------------


def test_every_option_is_a_processor_keyword_with_the_same_default() -> None:
    parameters = inspect.signature(jobq.JobProcessor).parameters
    keywords = {name for name, p in parameters.items() if p.kind is p.KEYWORD_ONLY}
    assert keywords == OPTIONS
    for option in fields(ProcessorConfig):
        if option.init:
            assert parameters[option.name].default == option.default, option.name


def test_every_option_is_documented_where_it_is_declared() -> None:
    tree = ast.parse(Path(config_module.__file__).read_text())
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "ProcessorConfig"]
    documented = set()
    for field_node, following in zip(cls.body, cls.body[1:], strict=False):
        if (
            isinstance(field_node, ast.AnnAssign)
            and isinstance(field_node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            documented.add(field_node.target.id)
    assert {f.name for f in fields(ProcessorConfig)} <= documented


async def test_option_attributes_read_the_config_and_setting_one_checks_it_again() -> None:
    queue = jobq.MemoryQueue()
    processor = jobq.JobProcessor(queue, queues={"a": 2, "b": 3})
    assert processor.concurrency == 5 and processor.batch_size == 5
    assert processor.queues == ["a", "b"] and processor.queue_concurrency == {"a": 2, "b": 3}
    assert processor.worker_id == queue.worker_id
    processor.concurrency = 2  # as `jobq worker --concurrency 2` does
    processor.batch_size = 2
    assert processor.config.concurrency == 2 and processor.config.claim_batch == 2
    with pytest.raises(jobq.InvalidOption, match="concurrency must be an int >= 1"):
        processor.concurrency = 0
    with pytest.raises(jobq.InvalidOption, match="must be shorter than the queue's lease"):
        processor.heartbeat_interval = 60
    with pytest.raises(jobq.UnknownOption, match="did you mean 'concurrency'"):
        processor.configure(concurency=3)
    assert processor.concurrency == 2
    processor.queues = {"a": 1, "b": 1}  # per-queue slots: their sum, unless concurrency is given too
    assert processor.concurrency == 2 and processor.queue_concurrency == {"a": 1, "b": 1}
    processor.configure(queues={"a": 4}, concurrency=3)
    assert processor.concurrency == 3
    await processor.start()
    try:
        with pytest.raises(jobq.InvalidOption, match="running"):
            processor.concurrency = 4
    finally:
        await processor.stop()


# -- the executor's decisions --------------------------------------------------------


async def test_a_failed_attempt_is_retried_while_attempts_are_left() -> None:
    queue = jobq.MemoryQueue(clock=jobq.FakeClock())
    processor = jobq.JobProcessor(queue, retry_delays=[7])
    executor = processor._executor
    await queue.enqueue("t", max_attempts=2)
    (job,) = await queue.claim(1)
    retry = executor.failure(job, ValueError("boom"), retry=True, elapsed=0.1)
    assert (retry.kind, retry.delay, retry.error) == (Kind.RETRY, 7, "boom")
    assert isinstance(retry.exception, ValueError)
    transition = retry.transition()
    assert transition.status == "pending" and transition.delay_ms == 7000 and transition.attempts == 1
    job.attempts = 1  # the last attempt
    last = executor.failure(job, ValueError("boom"), retry=True, elapsed=0.1)
    assert last.kind is Kind.FAILED and last.delay is None and last.transition().status == "failed"
    never = executor.failure(job, "no handler", retry=False, elapsed=0.0)
    assert never.kind is Kind.FAILED and never.exception is None


async def test_steering_exceptions_decide_their_outcome() -> None:
    queue = jobq.MemoryQueue()
    executor = jobq.JobProcessor(queue)._executor
    await queue.enqueue("t")
    (job,) = await queue.claim(1)
    retry = executor.steered(job, jobq.RetryJob(delay=3), 0.0)
    assert retry.kind is Kind.RETRY and retry.delay == 3
    snooze = executor.steered(job, jobq.SnoozeJob(30), 0.0)
    assert snooze.kind is Kind.SNOOZED and snooze.transition().attempts is None
    cancel = executor.steered(job, jobq.CancelJob("gone"), 0.0)
    assert cancel.kind is Kind.CANCELLED and cancel.transition().error == "gone"
    # A cancel request (no exception) keeps the stored error as it is.
    requested = Outcome(Kind.CANCELLED, job, error="cancel requested")
    assert requested.transition().status == "cancelled" and requested.transition().error is None


async def test_the_executor_hands_a_completion_in_and_awaits_any_other_outcome() -> None:
    handed: list[Outcome] = []
    written: list[Outcome] = []
    queue = jobq.MemoryQueue()
    processor = jobq.JobProcessor(queue)
    processor.handle("ok", lambda job: "done")
    processor.handle("bad", lambda job: 1 / 0)
    executor = processor._executor

    async def write(outcome: Outcome) -> None:
        written.append(outcome)

    executor._hand_in, executor._write = handed.append, write
    await queue.enqueue("ok")
    await queue.enqueue("bad")
    for job in await queue.claim(2):
        running = Running(job)
        outcome = await executor.run(running)
        assert outcome.job is job
    assert [o.kind for o in handed] == [Kind.COMPLETED] and handed[0].result == "done"
    assert [o.kind for o in written] == [Kind.RETRY] and written[0].error == "division by zero"


# -- upkeep --------------------------------------------------------------------------


def test_backoff_doubles_from_the_interval_up_to_the_cap() -> None:
    assert [backoff(0.5, n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, STORE_RETRY_MAX]
    assert backoff(10.0, 3) == 10.0  # never less than the interval itself
    assert backoff(0.5, 10_000) == STORE_RETRY_MAX


async def test_an_upkeep_duty_survives_any_exception(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []
    done = asyncio.Event()

    async def duty() -> None:
        calls.append(len(calls))
        if len(calls) == 1:
            raise RuntimeError("a bug")
        if len(calls) == 2:
            raise jobq.StoreUnavailable("the store is away")
        done.set()

    with caplog.at_level(logging.WARNING, logger="jobq"):
        task = asyncio.create_task(every(0.001, duty))
        await asyncio.wait_for(done.wait(), 5)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert len(calls) >= 3
    bug, outage = [r for r in caplog.records if "duty failed" in r.getMessage()]
    assert bug.exc_info is not None and "unexpectedly" in bug.getMessage()  # with its traceback
    assert outage.exc_info is None and "the store is away" in outage.getMessage()


async def test_a_failing_rescue_does_not_stop_the_lease_keeper(caplog: pytest.LogCaptureFixture) -> None:
    queue = jobq.MemoryQueue()
    processor = jobq.JobProcessor(queue, rescue_interval=0.01, poll_interval=0.05)
    sweeps = 0

    async def broken(*args: Any, **kwargs: Any) -> Any:
        nonlocal sweeps
        sweeps += 1
        raise KeyError("not a store error")

    queue.rescue_expired = broken  # type: ignore[method-assign]
    processor.handle("t", lambda job: job.data)
    with caplog.at_level(logging.ERROR, logger="jobq"):
        await processor.start()
        try:
            job = await queue.enqueue("t", 1)
            for _ in range(500):
                stored = await queue.get_job(job.id)
                if sweeps >= 2 and stored is not None and stored.status is jobq.JobStatus.COMPLETED:
                    break
                await asyncio.sleep(0.01)
        finally:
            await processor.stop()
    assert sweeps >= 2  # the rescue loop went on after the first error
    assert any(r.exc_info is not None for r in caplog.records if "rescue failed" in r.getMessage())
