"""The service's jobs: one send task per provider.

Each provider has a task of its own (job type ``messaging.send.<provider>``),
so each has its own circuit breaker: a provider in an outage stops being
called after ``MESSAGING_BREAKER_THRESHOLD`` failures in a row, its
messages wait (spending no attempt) and the other providers go on. Each is
rate-limited per provider (a :class:`jobq.KeyLimit` whose key is the task's
``provider`` argument), across every worker sharing the database. A send's
:class:`DeliveryReport` is stored as its job's result.

A worker process of its own (``MESSAGING_WORKER=0`` for the API)::

    JOBQ_URL=sqlite:///messaging.db jobq worker examples.messaging.tasks:make_worker
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jobq

from .config import settings
from .providers import Rejected, provider

app = jobq.App(settings.url)

#: k-msg's priorities for a message (its MessageJobProcessor's mapping).
PRIORITIES = {"high": 10, "normal": 5, "low": 1}
QUEUE = "messages"


@dataclass
class DeliveryReport:
    """What became of one send, kept as the job's result."""

    provider: str
    to: str
    provider_message_id: str
    attempt: int  # the attempt that got through, from 1
    started_at: datetime  # when that attempt started
    sent_at: datetime  # when the provider accepted it


async def send_message(provider_name: str, to: str, body: str) -> DeliveryReport:
    job = jobq.current_job()
    assert job is not None
    started = job.started_at or datetime.now(UTC)
    try:
        accepted = await provider(provider_name).send(to, body)
    except Rejected as exc:
        raise jobq.FailJob(str(exc)) from exc  # no retry can help
    return DeliveryReport(provider_name, to, accepted.provider_message_id, job.attempts + 1, started, datetime.now(UTC))


def _send_task(name: str) -> jobq.Task[Any, DeliveryReport]:
    # The argument is called ``provider`` in the stored job, as the limit reads it.
    async def send(provider: str, to: str, body: str) -> DeliveryReport:
        return await send_message(provider, to, body)

    return app.task(
        name=f"messaging.send.{name}",
        queue=QUEUE,
        max_attempts=4,
        retry=jobq.ExponentialBackoff(base=settings.retry_base, max_delay=60),
        timeout=30,
        limits=[jobq.KeyLimit(key="provider", rate=settings.rate, per=1.0)],
    )(send)


#: The send task of each provider.
SEND: dict[str, jobq.Task[Any, DeliveryReport]] = {name: _send_task(name) for name in settings.providers}


def worker_options() -> dict[str, Any]:
    """The worker's options: concurrency, and the circuit breaker each send task gets."""
    return {
        "concurrency": settings.concurrency,
        "queues": [QUEUE],
        "circuit_breaker": jobq.CircuitBreaker(
            failure_threshold=settings.breaker_threshold, timeout=30, reset_timeout=settings.breaker_reset
        ),
    }


def make_worker(queue: jobq.Queue) -> jobq.JobProcessor:
    """For ``jobq worker examples.messaging.tasks:make_worker``."""
    return app.processor(queue, **worker_options())
