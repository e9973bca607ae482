"""Processor metrics counted from events, in a registry of the test's own."""

from __future__ import annotations

import asyncio
from pathlib import Path

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


async def test_store_calls_are_exported_by_backend_and_verb() -> None:
    from jobq.metrics import render_latest

    registry = prometheus_client.CollectorRegistry()
    async with jobq.connect("memory://") as queue:
        await queue.enqueue("t", 1)
        await queue.dequeue()
        text = (await render_latest(queue, registry)).decode()
        again = (await render_latest(queue, registry)).decode()  # the store is registered once
    assert 'jobq_store_call_seconds_count{backend="memory",verb="insert"} 1.0' in text
    assert 'jobq_store_call_seconds_sum{backend="memory",verb="claim"}' in text
    assert 'jobq_store_call_errors_total{backend="memory",verb="claim"} 0.0' in text
    assert 'jobq_store_call_max_seconds{backend="memory",verb="claim"}' in text
    assert 'jobq_store_call_seconds_count{backend="memory",verb="summary"} 2.0' in again


def test_worker_serves_metrics_on_its_own_port(tmp_path: Path) -> None:
    """``jobq worker --metrics-port`` serves the worker's counters and the queue's counts."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import textwrap
    import time
    import urllib.request

    (tmp_path / "app.py").write_text(
        textwrap.dedent(
            """
            import jobq

            def make(queue):
                processor = jobq.JobProcessor(queue, concurrency=2)
                processor.handle("ping", lambda job: "pong")
                return processor
            """
        )
    )
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    with jobq.connect_sync(url) as queue:
        for n in range(5):
            queue.enqueue("ping", n)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    worker = subprocess.Popen(
        [sys.executable, "-m", "jobq", "worker", "app:make", "--url", url, "--metrics-port", str(port)],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        body = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                    body = response.read().decode()
                if 'jobq_jobs_succeeded_total{type="ping"} 5.0' in body:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        assert 'jobq_jobs_succeeded_total{type="ping"} 5.0' in body, body[-2000:]
        assert 'jobq_jobs{queue="default",status="completed"} 5.0' in body
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=30)
        assert worker.returncode == 0, stderr
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.communicate()
