"""Processor metrics counted from events, in a registry of the test's own."""

from __future__ import annotations

import asyncio

import pytest

import jobq

prometheus_client = pytest.importorskip("prometheus_client")


async def test_instrumented_processor_counts_per_type() -> None:
    from jobq.metrics import instrument

    registry = prometheus_client.CollectorRegistry()
    async with jobq.connect("memory://") as queue:
        processor = jobq.JobProcessor(queue, retry_delays=[0], circuit_breaker=jobq.CircuitBreaker(5, 10, 10))
        instrument(processor, registry)
        done = asyncio.Event()

        @processor.handler("ok")
        def ok(job: jobq.Job[int]) -> int:
            return job.data

        @processor.handler("bad")
        def bad(job: jobq.Job[int]) -> int:
            raise RuntimeError("no")

        processor.on("job_failed", lambda e: done.set())
        await processor.add("ok", 1)
        await processor.add("bad", 2, max_attempts=2)
        await processor.start()
        await asyncio.wait_for(done.wait(), 10)
        await processor.stop()
    text = prometheus_client.generate_latest(registry).decode()
    assert 'jobq_jobs_processed_total{type="ok"} 1.0' in text
    assert 'jobq_jobs_failed_total{type="bad"} 1.0' in text
    assert 'jobq_jobs_retried_total{type="bad"} 1.0' in text
    assert 'jobq_job_processing_seconds_count{type="bad"} 2.0' in text
    assert 'jobq_job_start_latency_seconds_count{type="ok"} 1.0' in text
    assert 'jobq_circuit_state{state="closed",type="ok"} 1.0' in text
