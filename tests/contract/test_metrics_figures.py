"""Prometheus figures on every backend: the age of each queue's oldest ready
job, and attempts counted by type and outcome."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from contract_helpers import MakeProcessor, Recorder

import jobq

prometheus_client = pytest.importorskip("prometheus_client")


def value(text: str, sample: str) -> float:
    """The value of the exposition line that starts with ``sample``."""
    (line,) = [line for line in text.splitlines() if line.startswith(sample + " ")]
    return float(line.rsplit(" ", 1)[1])


async def test_the_oldest_ready_job_age_per_queue(queue: jobq.Queue, clock: jobq.FakeClock) -> None:
    from jobq.metrics import render_latest

    registry = prometheus_client.CollectorRegistry()
    await queue.enqueue("t", 1, queue="sms")
    clock.advance(30)
    await queue.enqueue("t", 2, queue="sms")
    await queue.enqueue("t", 3, queue="email")
    await queue.enqueue("t", 4, queue="later", delay=600)  # not ready: age 0
    clock.advance(12)
    text = (await render_latest(queue, registry)).decode()
    assert value(text, 'jobq_oldest_ready_job_age_seconds{queue="sms"}') == pytest.approx(42, abs=0.01)
    assert value(text, 'jobq_oldest_ready_job_age_seconds{queue="email"}') == pytest.approx(12, abs=0.01)
    assert value(text, 'jobq_oldest_ready_job_age_seconds{queue="later"}') == 0
    await queue.claim(10, owner="w")
    text = (await render_latest(queue, registry)).decode()
    assert value(text, 'jobq_oldest_ready_job_age_seconds{queue="sms"}') == 0


async def test_attempts_are_counted_by_type_and_outcome(queue: jobq.Queue, make_processor: MakeProcessor) -> None:
    from jobq.metrics import instrument

    registry = prometheus_client.CollectorRegistry()
    processor = make_processor(retry_delays=[0], shutdown_timeout=0)
    instrument(processor, registry)
    started = asyncio.Event()
    processor.handle("ok", lambda job: None)

    @processor.handler("flaky")
    async def flaky(job: jobq.Job[Any]) -> None:
        raise RuntimeError("down")

    @processor.handler("nap")
    async def nap(job: jobq.Job[Any]) -> None:
        raise jobq.SnoozeJob(600)

    @processor.handler("hang")
    async def hang(job: jobq.Job[Any]) -> None:
        started.set()
        await asyncio.Event().wait()

    failed, snoozed = Recorder(processor, "job_failed"), Recorder(processor, "job_snoozed")
    done = Recorder(processor, "job_completed")
    await processor.add("ok", None)
    await processor.add("flaky", None, max_attempts=3)
    await processor.add("nap", None)
    await processor.add("hang", None)
    await processor.start()
    await failed.wait_for(1)
    await snoozed.wait_for(1)
    await done.wait_for(1)
    await asyncio.wait_for(started.wait(), 10)
    await processor.stop(timeout=0)
    text = prometheus_client.generate_latest(registry).decode()
    attempts = "jobq_job_attempts_total"
    assert value(text, f'{attempts}{{outcome="completed",type="ok"}}') == 1
    assert value(text, f'{attempts}{{outcome="retry",type="flaky"}}') == 2
    assert value(text, f'{attempts}{{outcome="failed",type="flaky"}}') == 1
    assert value(text, f'{attempts}{{outcome="snoozed",type="nap"}}') == 1
    assert value(text, f'{attempts}{{outcome="released",type="hang"}}') == 1
    assert value(text, 'jobq_job_processing_seconds_count{type="flaky"}') == 3
