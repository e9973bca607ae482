"""OpenTelemetry tracing (jobq.otel) on every backend, read back with the
SDK's in-memory exporter: a producer span at enqueue, a consumer span per
attempt continuing the enqueuer's trace, exceptions recorded; a tracer that
raises never fails a job."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from contract_helpers import MakeProcessor, Recorder, stored

import jobq
from jobq import JobStatus, hooks

pytest.importorskip("opentelemetry.sdk")

from opentelemetry.sdk.trace import ReadableSpan, TracerProvider  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter  # noqa: E402
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    import jobq.otel

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    jobq.otel.instrument(provider)
    yield provider, exporter
    jobq.otel.uninstrument()


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name == name]


async def test_a_requests_trace_continues_into_the_jobs_run(
    queue: jobq.Queue, make_processor: MakeProcessor, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    tracer = provider.get_tracer("myapp")
    processor = make_processor()

    @processor.handler("charge")
    async def charge(job: jobq.Job[Any]) -> str:
        with tracer.start_as_current_span("charge card"):
            return "ok"

    @processor.handler("receipt")
    def receipt(job: jobq.Job[Any]) -> None:  # a sync handler, in a thread
        with tracer.start_as_current_span("print receipt"):
            pass

    done = Recorder(processor, "job_completed")
    with tracer.start_as_current_span("POST /checkout") as request:
        job = await queue.enqueue("charge", {"cents": 500}, queue="payments")
        second = await processor.add("receipt", None)
    assert "traceparent" in job.metadata["jobq.trace"]
    assert "traceparent" in (await stored(queue, second)).metadata["jobq.trace"]
    await processor.start()
    await done.wait_for(2)
    await processor.stop()

    trace_id = request.get_span_context().trace_id
    send = named(exporter, "send payments")[0]
    assert send.kind is SpanKind.PRODUCER and send.parent is not None
    assert send.parent.span_id == request.get_span_context().span_id
    assert send.attributes is not None and dict(send.attributes) == {
        "messaging.system": "jobq", "messaging.operation.type": "send", "messaging.operation.name": "send",
        "messaging.destination.name": "payments", "messaging.message.id": job.id,
    }  # fmt: skip
    (process,) = named(exporter, "process payments")
    assert process.kind is SpanKind.CONSUMER and process.context is not None
    assert process.context.trace_id == trace_id
    assert process.parent is not None and process.parent.span_id == send.context.span_id  # type: ignore[union-attr]
    attributes = dict(process.attributes or {})
    assert attributes["messaging.operation.type"] == "process" and attributes["messaging.message.id"] == job.id
    assert attributes["messaging.destination.name"] == "payments" and attributes["jobq.job.attempt"] == 1
    assert process.status.status_code is StatusCode.UNSET
    (charged,) = named(exporter, "charge card")
    assert charged.parent is not None and charged.parent.span_id == process.context.span_id
    (printed,) = named(exporter, "print receipt")
    assert printed.context is not None and printed.context.trace_id == trace_id


async def test_an_exception_is_recorded_on_its_attempts_span(
    queue: jobq.Queue, make_processor: MakeProcessor, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    _provider, exporter = spans
    processor = make_processor(retry_delays=[0])

    @processor.handler("flaky")
    async def flaky(job: jobq.Job[Any]) -> None:
        raise KeyError("missing_field")

    @processor.handler("nap")
    async def nap(job: jobq.Job[Any]) -> None:
        raise jobq.SnoozeJob(600)

    failed, snoozed = Recorder(processor, "job_failed"), Recorder(processor, "job_snoozed")
    job_id = await processor.add("flaky", None, max_attempts=2)
    await processor.add("nap", None)
    await processor.start()
    await failed.wait_for(1)
    await snoozed.wait_for(1)
    attempts = [s for s in named(exporter, "process default") if (s.attributes or {})["messaging.message.id"] == job_id]
    assert [(s.attributes or {})["jobq.job.attempt"] for s in attempts] == [1, 2]
    for span in attempts:
        assert span.status.status_code is StatusCode.ERROR
        (event,) = span.events
        assert event.name == "exception" and (event.attributes or {})["exception.type"] == "KeyError"
    (napped,) = [s for s in named(exporter, "process default") if (s.attributes or {})["jobq.job.type"] == "nap"]
    assert napped.status.status_code is StatusCode.UNSET and napped.events[0].name == "exception"


class BrokenTracer:
    """A hook whose every call raises."""

    def enqueue(self, specs: list[jobq.NewJob]) -> Any:
        raise RuntimeError("tracer down")

    @contextmanager
    def run(self, job: jobq.Job[Any]) -> Iterator[None]:
        raise RuntimeError("tracer down")
        yield


class BrokenOnExit:
    def enqueue(self, specs: list[jobq.NewJob]) -> Any:
        def finish(jobs: Any, error: Any) -> None:
            raise RuntimeError("exporter down")

        return specs, finish

    @contextmanager
    def run(self, job: jobq.Job[Any]) -> Iterator[None]:
        try:
            yield
        finally:
            raise RuntimeError("exporter down")


async def test_a_failing_tracer_never_fails_a_job(queue: jobq.Queue, make_processor: MakeProcessor) -> None:
    broken, on_exit = BrokenTracer(), BrokenOnExit()
    hooks.add(broken)
    hooks.add(on_exit)
    try:
        processor = make_processor(retry_delays=[0])
        processor.handle("ok", lambda job: "done")

        def bad(job: jobq.Job[Any]) -> None:
            raise ValueError("bad")

        processor.handle("bad", bad)
        done, failed = Recorder(processor, "job_completed"), Recorder(processor, "job_failed")
        ok = await queue.enqueue("ok", None)
        wrong = await processor.add("bad", None, max_attempts=1)
        await processor.start()
        await done.wait_for(1)
        (failure,) = await failed.wait_for(1)
    finally:
        hooks.remove(broken)
        hooks.remove(on_exit)
    assert isinstance(failure.exception, ValueError)  # the handler's error, not the tracer's
    assert (await stored(queue, ok.id)).status is JobStatus.COMPLETED
    assert (await stored(queue, wrong)).status is JobStatus.FAILED
    assert processor.running


def test_without_the_extra_the_error_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry", None)
    monkeypatch.delitem(sys.modules, "jobq.otel", raising=False)
    with pytest.raises(jobq.BackendMissing, match=r"pip install 'jobq\[otel\]'"):
        importlib.import_module("jobq.otel")
