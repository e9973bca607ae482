"""The HTTP API: single, bulk and scheduled sends, each message's status.

| method and path | body | answer |
|---|---|---|
| ``POST /messages`` | ``{"provider", "to", "body", "priority"?}`` | 202 ``{"id", "status"}`` |
| ``POST /messages/bulk`` | ``{"provider", "body", "recipients": [...], "priority"?}`` | 202 ``{"ids": [...]}`` (stored in one transaction) |
| ``POST /messages/scheduled`` | a single send plus ``"send_at"`` (ISO 8601) or ``"delay"`` (seconds) | 202 ``{"id", "status", "send_at"}`` |
| ``GET /messages/{id}`` | | the message's status, attempts, error and delivery report |
| ``DELETE /messages/{id}`` | | cancels a message not sent yet |
| ``GET /stats`` | | messages per status; the providers, and their circuits when the worker runs here |
| ``/jobq/`` | | jobq's dashboard, when ``JOBQ_DASHBOARD_TOKEN`` is set |

A message's status: ``queued``, ``scheduled``, ``sending``, ``retrying``
(a failed attempt, another to come), ``delivered``, ``failed``, ``cancelled``.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field, model_validator

import jobq
from jobq.contrib.fastapi import QueueDep, dashboard, jobq_of, lifespan

from .config import settings
from .tasks import PRIORITIES, SEND, app, worker_options

PHONE = r"^\+?[0-9]{8,15}$"
Priority = Literal["high", "normal", "low"]


class Send(BaseModel):
    provider: str
    to: str = Field(pattern=PHONE)
    body: str = Field(min_length=1, max_length=2000)
    priority: Priority = "normal"


class BulkSend(BaseModel):
    provider: str
    body: str = Field(min_length=1, max_length=2000)
    recipients: list[str] = Field(min_length=1, max_length=1000)
    priority: Priority = "low"


class ScheduledSend(Send):
    send_at: datetime | None = None
    delay: float | None = Field(default=None, ge=0, le=30 * 86400)

    @model_validator(mode="after")
    def one_time(self) -> ScheduledSend:
        if (self.send_at is None) == (self.delay is None):
            raise ValueError("give send_at or delay, not both")
        if self.send_at is not None and self.send_at.tzinfo is None:
            raise ValueError("send_at needs a time zone (2026-12-07T09:30:00Z)")
        return self

    def seconds(self) -> float:
        if self.delay is not None:
            return self.delay
        assert self.send_at is not None
        return max(0.0, (self.send_at - datetime.now(UTC)).total_seconds())


api = FastAPI(
    title="jobq messaging example",
    lifespan=lifespan(app, worker=True, **worker_options()) if settings.worker else lifespan(app),
)
if os.environ.get("JOBQ_DASHBOARD_TOKEN"):
    api.mount("/jobq", dashboard())


def _task(provider: str) -> jobq.Task[Any, Any]:
    task = SEND.get(provider)
    if task is None:
        raise HTTPException(422, f"unknown provider {provider!r}; known: {', '.join(SEND)}")
    return task


@api.post("/messages", status_code=202)
async def send(message: Send) -> dict[str, str]:
    task = _task(message.provider)
    handle = await task.options(priority=PRIORITIES[message.priority]).defer(message.provider, message.to, message.body)
    return {"id": handle.id, "status": "queued"}


@api.post("/messages/bulk", status_code=202)
async def send_bulk(bulk: BulkSend) -> dict[str, list[str]]:
    task = _task(bulk.provider).options(priority=PRIORITIES[bulk.priority])
    for number in bulk.recipients:
        Send(provider=bulk.provider, to=number, body=bulk.body)  # the same checks as a single send
    handles = await app.defer_many([task.job(bulk.provider, number, bulk.body) for number in bulk.recipients])
    return {"ids": [handle.id for handle in handles]}


@api.post("/messages/scheduled", status_code=202)
async def send_scheduled(message: ScheduledSend) -> dict[str, str]:
    task = _task(message.provider).options(priority=PRIORITIES[message.priority], delay=message.seconds())
    handle = await task.defer(message.provider, message.to, message.body)
    return {"id": handle.id, "status": status_of(handle.job), "send_at": handle.job.process_at.isoformat()}


def status_of(job: jobq.Job[Any]) -> str:
    if job.status in (jobq.JobStatus.PENDING, jobq.JobStatus.DELAYED):
        if job.attempts:
            return "retrying"
        return "scheduled" if job.status is jobq.JobStatus.DELAYED else "queued"
    return {
        jobq.JobStatus.PROCESSING: "sending",
        jobq.JobStatus.COMPLETED: "delivered",
        jobq.JobStatus.FAILED: "failed",
        jobq.JobStatus.CANCELLED: "cancelled",
    }[job.status]


@api.get("/messages/{message_id}")
async def message_status(message_id: str, queue: QueueDep) -> dict[str, Any]:
    job = await queue.get_job(message_id)
    if job is None or not job.type.startswith("messaging.send."):
        raise HTTPException(404, "no such message")
    return {
        "id": job.id,
        "status": status_of(job),
        "provider": job.data.get("provider"),
        "to": job.data.get("to"),
        "priority": job.priority,
        "attempts": job.attempts,
        "created_at": job.created_at.isoformat(),
        "send_at": job.process_at.isoformat() if job.status is jobq.JobStatus.DELAYED else None,
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "error": job.error,
        "report": job.result,
    }


@api.delete("/messages/{message_id}")
async def cancel(message_id: str, queue: QueueDep) -> dict[str, Any]:
    job = await queue.get_job(message_id)
    if job is None or not job.type.startswith("messaging.send."):
        raise HTTPException(404, "no such message")
    return {"id": job.id, "cancelled": await queue.cancel(job.id)}


@api.get("/stats")
async def stats(queue: QueueDep) -> dict[str, Any]:
    counts = {status.value: 0 for status in jobq.JobStatus}
    for row in await queue.summary():
        if row.type.startswith("messaging.send."):
            counts[row.status.value] += row.count
    processor = jobq_of(api).processor
    circuits = {} if processor is None else {
        name.removeprefix("messaging.send."): circuit.state.value for name, circuit in processor.circuits.items()
    }  # fmt: skip
    return {"messages": counts, "providers": list(SEND), "rate_per_provider": settings.rate, "circuits": circuits}
