"""OpenTelemetry tracing for jobq (the ``jobq[otel]`` extra: opentelemetry-api).

:func:`instrument` makes every queue and processor of the process trace,
following OpenTelemetry's messaging semantic conventions
(``messaging.system = "jobq"``):

- a **producer** span, ``send {queue}``, around each enqueue (``enqueue``,
  ``enqueue_many``, a processor's ``add``, a task's ``defer``): it is a child
  of the span current there (a web request's, say), and its context is kept
  in each job's metadata under :data:`TRACE_KEY` (W3C ``traceparent``);
- a **consumer** span, ``process {queue}``, around each attempt of a job, a
  child of that producer span, so the request's trace continues into the
  job's run, on any worker, in any process. The handler runs inside it: its
  own spans are children. An exception the handler raised is recorded on
  the span, whose status is then ERROR (a ``SnoozeJob`` or ``CancelJob`` is
  recorded, not an error).

Spans are made with the global tracer provider unless one is given. A
tracer that raises never fails an enqueue or a job (:mod:`jobq.hooks`).
Without opentelemetry-api installed, :func:`instrument` raises
:class:`jobq.BackendMissing` naming the extra.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from . import hooks
from .errors import BackendMissing, CancelJob, SnoozeJob
from .job import Job
from .newjobs import NewJob

try:
    from opentelemetry import propagate, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode, TracerProvider
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise BackendMissing(f"tracing needs opentelemetry-api: pip install 'jobq[otel]' ({exc})") from None

__all__ = ["TRACE_KEY", "instrument", "uninstrument"]

#: The job metadata key holding the W3C trace context of its enqueue.
TRACE_KEY = "jobq.trace"
SYSTEM = "jobq"
#: Exceptions that steer a job rather than fail it: recorded, not errors.
_NOT_ERRORS = (SnoozeJob, CancelJob)


class _Tracing:
    """The hook (:class:`jobq.hooks.Hook`) that makes the spans."""

    def __init__(self, provider: TracerProvider | None) -> None:
        from . import __version__

        self.tracer = trace.get_tracer("jobq", __version__, tracer_provider=provider)

    def enqueue(self, specs: list[NewJob]) -> tuple[list[NewJob], hooks.Finish]:
        queues = sorted({spec.queue for spec in specs})
        destination = queues[0] if len(queues) == 1 else ",".join(queues)
        attributes: dict[str, Any] = {
            "messaging.system": SYSTEM,
            "messaging.operation.type": "send",
            "messaging.operation.name": "send",
            "messaging.destination.name": destination,
        }
        if len(specs) > 1:
            attributes["messaging.batch.message_count"] = len(specs)
        span = self.tracer.start_span(f"send {destination}", kind=SpanKind.PRODUCER, attributes=attributes)
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        traced = [replace(spec, metadata={**(spec.metadata or {}), TRACE_KEY: carrier}) for spec in specs]

        def finish(jobs: list[Job[Any]] | None, error: BaseException | None) -> None:
            if jobs is not None and len(jobs) == 1:
                span.set_attribute("messaging.message.id", jobs[0].id)
            if error is not None:
                span.record_exception(error)
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
            span.end()

        return traced, finish

    @contextmanager
    def run(self, job: Job[Any]) -> Iterator[None]:
        carrier = job.metadata.get(TRACE_KEY) if isinstance(job.metadata, dict) else None
        parent = propagate.extract(carrier) if isinstance(carrier, dict) else None
        attributes: dict[str, Any] = {
            "messaging.system": SYSTEM,
            "messaging.operation.type": "process",
            "messaging.operation.name": "process",
            "messaging.destination.name": job.queue,
            "messaging.message.id": job.id,
            "jobq.job.type": job.type,
            "jobq.job.attempt": job.attempts + 1,
            "jobq.job.max_attempts": job.max_attempts,
        }
        with self.tracer.start_as_current_span(
            f"process {job.queue}", context=parent, kind=SpanKind.CONSUMER, attributes=attributes,
            record_exception=False, set_status_on_exception=False,
        ) as span:  # fmt: skip
            try:
                yield
            except BaseException as exc:
                if isinstance(exc, Exception):  # a cancelled task is not the job's error
                    span.record_exception(exc)
                    if not isinstance(exc, _NOT_ERRORS):
                        span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}"))
                raise


_installed: _Tracing | None = None


def instrument(tracer_provider: TracerProvider | None = None) -> None:
    """Traces every enqueue and every job attempt of this process from now
    on (see the module's notes), with ``tracer_provider`` (default: the
    global one). Calling it again replaces the provider."""
    global _installed
    uninstrument()
    _installed = _Tracing(tracer_provider)
    hooks.add(_installed)


def uninstrument() -> None:
    """Stops tracing."""
    global _installed
    if _installed is not None:
        hooks.remove(_installed)
        _installed = None
