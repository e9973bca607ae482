"""Operator views and actions shared by the command line and the dashboard.

Everything here is built from the queue's public verbs (``counts``,
``summary``, ``throughput``, ``list_jobs``, ``get_job``, ``retry``), so every
backend shows the same thing. Nothing here imports an optional dependency.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import JobNotFound, NotRetryable
from ..history import WORKER_FIELDS
from ..job import Job, JobStatus
from .figures import Recounted
from .verbs import THROUGHPUT_WINDOW

if TYPE_CHECKING:
    from ..queue import Queue

T = TypeVar("T")

PREVIEW_CHARS = 120  # characters of a payload shown in job lists
RETRY_ALL_BATCH = 200  # failed jobs fetched per round by retry_all_failed
WORKER_SCAN_LIMIT = 1000  # processing jobs read to find the workers holding them
THROUGHPUT_MINUTES = 60  # minutes of history on the dashboard's chart
BREAKDOWN_LIMIT = 100_000  # jobs in all beyond which stats() breaks down only unfinished ones unless told
#: The statuses stats() breaks down per queue and type at any size.
UNFINISHED = (JobStatus.PENDING, JobStatus.DELAYED, JobStatus.PROCESSING)


def iso(value: Any) -> Any:
    """A datetime as ISO 8601 text; anything else unchanged."""
    return value.isoformat() if isinstance(value, datetime) else value


def status_text(value: Any) -> str:
    return value.value if isinstance(value, JobStatus) else str(value)


def preview(value: Any, limit: int = PREVIEW_CHARS) -> str:
    """A payload as compact JSON, cut to ``limit`` characters with an ellipsis."""
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def job_dict(job: Job[Any], *, full: bool = True) -> dict[str, Any]:
    """A job as JSON-ready values. ``full=False`` (lists) replaces the
    payload, result and metadata with a truncated ``data_preview``."""
    out: dict[str, Any] = {
        "id": job.id,
        "type": job.type,
        "queue": job.queue,
        "status": status_text(job.status),
        "priority": job.priority,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "delay": job.delay,
        "created_at": iso(job.created_at),
        "process_at": iso(job.process_at),
        "started_at": iso(job.started_at),
        "completed_at": iso(job.completed_at),
        "failed_at": iso(job.failed_at),
        "lease_owner": job.lease_owner,
        "lease_expires_at": iso(job.lease_expires_at),
        "lost_count": job.lost_count,
        "error": job.error,
        "error_type": job.error_type,
        "unique_key": job.unique_key,
        "progress": job.progress,
        "progress_message": job.progress_message,
        "cancelled_at": iso(job.cancelled_at),
        "cancel_requested_at": iso(job.cancel_requested_at),
    }
    if full:
        out.update(data=job.data, result=job.result, metadata=job.metadata)
    else:
        out["data_preview"] = preview(job.data)
        if job.error is not None:
            out["error"] = preview(job.error)
    return out


def ready_since(job: Job[Any]) -> datetime:
    """When a waiting job became ready to run: when it was due
    (``process_at``, which a delay sets and a retry moves to its own time),
    or when it was created if that is later (a row another program wrote
    with an earlier due time). The overview's "oldest waiting", the queue
    page's "oldest ready job" and the metric of its age count from here."""
    return max(job.created_at, job.process_at)


def waited(job: Job[Any], now: datetime) -> float:
    """Seconds a ready job has waited at ``now`` (see :func:`ready_since`)."""
    return max(0.0, (now - ready_since(job)).total_seconds())


def timeline(job: Job[Any]) -> list[tuple[str, datetime]]:
    """The job's timestamps that are set, in time order."""
    stamps = [
        ("created", job.created_at),
        ("due", job.process_at),
        ("started", job.started_at),
        ("lease expires", job.lease_expires_at),
        ("completed", job.completed_at),
        ("failed", job.failed_at),
        ("cancel requested", job.cancel_requested_at),
        ("cancelled", job.cancelled_at),
    ]
    return sorted(((name, at) for name, at in stamps if at is not None), key=lambda item: item[1])


async def job_detail(queue: Queue, job: Job[Any]) -> dict[str, Any]:
    """Every field of a job (:func:`job_dict`) and its attempt history,
    oldest first under ``history`` (``jobq show``, ``/api/jobs/ID``, the job page)."""
    out = job_dict(job)
    try:
        attempts = await queue.attempts(job.id)
    except JobNotFound:  # removed between the two reads
        attempts = []
    out["history"] = [a.to_dict() for a in attempts]
    return out


async def workers(queue: Queue) -> list[dict[str, Any]]:
    """The worker registry (:meth:`jobq.Queue.workers`), JSON-ready, with
    the workers seen holding jobs under an unexpired lease that the registry
    lacks (a worker of an older jobq): ``owner`` and ``jobs`` as before,
    ``alive`` and the registry's fields beside."""
    rows: dict[str, dict[str, Any]] = {}
    for w in await queue.workers():
        rows[w.id] = {"owner": w.id, "jobs": w.running, "lease_expires_at": None, **w.to_dict()}
    unknown = dict.fromkeys(WORKER_FIELDS)  # what the registry would say, for a worker not in it
    for seen in await workers_alive(queue):
        row = rows.get(seen.owner)
        if row is None:
            row = rows[seen.owner] = {**unknown, "owner": seen.owner, "jobs": seen.jobs, "id": seen.owner,
                                      "queues": None, "alive": True}  # fmt: skip
        row["lease_expires_at"] = iso(seen.lease_expires_at)
    return list(rows.values())


@dataclass(frozen=True, slots=True)
class WorkerSeen:
    """A worker known from the jobs it holds under an unexpired lease."""

    owner: str
    jobs: int
    lease_expires_at: datetime


async def workers_alive(queue: Queue) -> list[WorkerSeen]:
    """Workers holding jobs right now: processing jobs with an unexpired lease,
    grouped by ``lease_owner``. An idle worker holds nothing and is not seen."""
    now = datetime.fromtimestamp(queue.clock.now(), UTC)
    page = await queue.list_jobs(status=JobStatus.PROCESSING.value, limit=WORKER_SCAN_LIMIT)
    held: dict[str, tuple[int, datetime]] = {}
    for job in page.jobs:
        until = job.lease_expires_at
        if job.lease_owner is None or until is None or until <= now:
            continue
        count, latest = held.get(job.lease_owner, (0, until))
        held[job.lease_owner] = (count + 1, max(latest, until))
    return [WorkerSeen(owner, n, until) for owner, (n, until) in sorted(held.items())]


@dataclass(frozen=True, slots=True)
class RetryReport:
    """What :func:`retry_all_failed` did: how many failed jobs went back to
    waiting, and the ids of those it could not retry, each with why."""

    retried: int
    not_retried: list[tuple[str, str]]


async def retry_all_failed(queue: Queue, *, type: str | None = None) -> RetryReport:
    """Retries every failed job (of ``type``, when given), oldest first, each
    once. One that cannot be retried (another unfinished job now holds its
    unique key) is reported and skipped, and the others are still retried;
    one removed meanwhile is skipped. An error of the store stops it."""
    seen: set[str] = set()
    retried = 0
    not_retried: list[tuple[str, str]] = []
    offset = 0  # failed jobs still listed before the next unseen one: those not retried
    while True:
        page = await queue.list_jobs(
            status=JobStatus.FAILED.value, type=type, limit=RETRY_ALL_BATCH, offset=offset, order="oldest"
        )
        fresh = [job for job in page.jobs if job.id not in seen]
        for job in fresh:
            seen.add(job.id)
            try:
                await queue.retry(job.id)
            except JobNotFound:
                continue
            except NotRetryable as exc:
                not_retried.append((job.id, str(exc)))
                continue
            retried += 1
        if len(page.jobs) < RETRY_ALL_BATCH:
            return RetryReport(retried, not_retried)
        # Retried jobs leave the list; those not retried stay at its front.
        # A page with nothing new (jobs retried, then failed again at once)
        # is stepped over.
        offset = len(not_retried) if fresh else offset + len(page.jobs)


def _group(rows: Iterable[Any], key: str) -> dict[str, dict[str, int]]:
    grouped: dict[str, dict[str, int]] = {}
    for row in rows:
        counts = grouped.setdefault(str(getattr(row, key)), {})
        status = status_text(row.status)
        counts[status] = counts.get(status, 0) + int(row.count)
    return dict(sorted(grouped.items()))


async def stats(queue: Queue, *, minutes: int = THROUGHPUT_WINDOW, finished: bool | None = None) -> dict[str, Any]:
    """Counts per status, per queue and per type, the paused queues (with
    when each was paused), and recent throughput.

    Per queue and per type, finished jobs are counted only up to
    :data:`BREAKDOWN_LIMIT` jobs in all (or when ``finished`` is true):
    beyond, that means reading every job, seconds at a million, so only the
    waiting and running ones are broken down (found on the status index), and
    ``breakdown`` says ``"unfinished"`` (else ``"all"``)."""
    if finished is None:
        # The unfinished breakdown is read beside the counts that decide
        # whether it is enough (the usual case on a big table, where it
        # saves a wait); a small table's whole breakdown is cheap after.
        out, slow = await asyncio.gather(counts(queue), breakdown(queue, minutes=minutes, finished=False))
        every = out["total"] <= BREAKDOWN_LIMIT
        out.update(await breakdown(queue, minutes=minutes) if every else slow)
    else:
        every = finished
        out, slow = await asyncio.gather(counts(queue), breakdown(queue, minutes=minutes, finished=every))
        out.update(slow)
    out["breakdown"] = "all" if every else "unfinished"
    return out


async def counts(queue: Queue) -> dict[str, Any]:
    """Counts per status and the paused queues (with when each was paused):
    answered from indexes, fast at any size."""
    by_status, paused = await asyncio.gather(queue.counts(), queue.paused())
    return _counts_dict(by_status, paused)


def _counts_dict(by_status: dict[JobStatus, int], paused: dict[str, datetime]) -> dict[str, Any]:
    return {
        "counts": {status_text(s): n for s, n in by_status.items()},
        "total": sum(by_status.values()),
        "paused": {name: iso(at) for name, at in paused.items()},
    }


async def breakdown(queue: Queue, *, minutes: int = THROUGHPUT_WINDOW, finished: bool = True) -> dict[str, Any]:
    """Counts per queue and per type (of unfinished jobs only unless
    ``finished``), and recent throughput: with finished jobs, these read every
    job (see :mod:`jobq.admin.figures` for the overview's way round)."""
    rows, history = await asyncio.gather(
        queue.summary(None if finished else UNFINISHED), queue.throughput(minutes=minutes)
    )
    completed = sum(int(r.completed) for r in history)
    failed = sum(int(r.failed) for r in history)
    return {
        "by_queue": _group(rows, "queue"),
        "by_type": _group(rows, "type"),
        "throughput": {
            "minutes": minutes,
            "completed": completed,
            "failed": failed,
            "per_minute": round((completed + failed) / minutes, 2) if minutes else 0.0,
            "failure_rate": round(failed / (completed + failed), 4) if completed + failed else 0.0,
            "series": [
                {"minute": iso(r.minute), "completed": int(r.completed), "failed": int(r.failed)}
                for r in history
            ],
        },
    }


async def slow_figures(
    queue: Queue, minutes: int, figures: Recounted[dict[str, Any]] | None, *,
    unfinished: Recounted[dict[str, Any]] | None = None, big: bool = False,
) -> tuple[dict[str, Any], float | None, bool]:  # fmt: skip
    """:func:`breakdown` (from ``figures`` when given), how many seconds ago
    it was counted (``None``: now), and whether it counts every job. Until
    the first count of ``figures`` ends, that of the unfinished jobs alone
    (found on the status index; from ``unfinished`` when given, a
    :class:`Recounted` of it) stands in. That one runs beside the first
    count, so the answer waits :data:`~jobq.admin.figures.FIRST_WAIT`
    seconds at most, not that and then a count; on a ``big`` table (more
    than :data:`BREAKDOWN_LIMIT` jobs) the first count is started in the
    background and not waited for at all."""
    if figures is None:
        return await breakdown(queue, minutes=minutes), None, True
    if figures.counted:
        value, age = await figures.get()
        assert value is not None
        return value, age, True
    if big:
        value, age = await figures.get(first_wait=0.0)
        if value is not None:
            return value, age, True
        if unfinished is not None:
            early, _ = await unfinished.get()
            if early is not None:
                return early, None, False
        return await breakdown(queue, minutes=minutes, finished=False), None, False
    unfinished_count = asyncio.create_task(breakdown(queue, minutes=minutes, finished=False))
    # Not needed if the whole count ends in time: left to end (cancelling a
    # read may leave its connection mid-statement), its outcome dropped.
    unfinished_count.add_done_callback(lambda task: task.cancelled() or task.exception())
    value, age = await figures.get()
    if value is not None:
        return value, age, True
    return await unfinished_count, None, False


async def status_counts(
    queue: Queue, counted: Recounted[dict[JobStatus, int]] | None
) -> tuple[dict[str, Any], float | None]:
    """:func:`counts` (the paused queues read now), and how many seconds ago
    the jobs per status were counted (``None``: now): from ``counted`` when
    given (a :class:`Recounted` of :meth:`jobq.Queue.counts`)."""
    value, age = (None, None) if counted is None else await counted.get()
    by_status, paused = await asyncio.gather(
        queue.counts() if value is None else _given(value), queue.paused()
    )
    return _counts_dict(by_status, paused), age


async def _given(value: T) -> T:
    return value


async def overview(
    queue: Queue, *, minutes: int = THROUGHPUT_MINUTES, figures: Recounted[dict[str, Any]] | None = None,
    counted: Recounted[dict[JobStatus, int]] | None = None, unfinished: Recounted[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """What the dashboard's overview shows, as JSON-ready values. With
    ``figures`` (a :class:`~jobq.admin.figures.Recounted` of
    :func:`breakdown`), per-queue and per-type counts and throughput come
    from it, and ``figures_age`` says how many seconds ago they were
    counted (``None``: counted now). While their first count runs,
    per-queue and per-type counts are of unfinished jobs only, and
    ``breakdown`` says ``"unfinished"`` (else ``"all"``). With ``counted``
    (a :class:`~jobq.admin.figures.Recounted` of :meth:`jobq.Queue.counts`),
    the jobs per status come from it, ``counts_age`` their age likewise;
    with ``unfinished`` (one of :func:`breakdown` of the unfinished jobs),
    what stands in for ``figures`` until their first count ends, which on
    a big table starts once the jobs per status are counted (the two would
    slow each other) and is not waited for."""
    # Independent reads, side by side (the stores read on several threads or
    # connections): the overview waits for the slowest, not for their sum.
    first = figures is not None and not figures.counted
    stand_in = unfinished.get() if first and unfinished is not None else _given(None)
    (found, counts_age), oldest, registry, _ = await asyncio.gather(
        status_counts(queue, counted), queue.oldest_ready(), workers(queue), stand_in
    )
    big = found["total"] > BREAKDOWN_LIMIT
    slow, age, whole = await slow_figures(queue, minutes, figures, unfinished=unfinished, big=big)
    out: dict[str, Any] = dict(found)
    out["counts_age"] = None if counts_age is None else round(counts_age, 1)
    out.update(slow)
    out["breakdown"] = "all" if whole else "unfinished"
    out["figures_age"] = None if age is None else round(age, 1)
    now = datetime.fromtimestamp(queue.clock.now(), UTC)
    out["oldest_waiting"] = (
        None
        if oldest is None
        else {
            "id": oldest.id,
            "type": oldest.type,
            "queue": oldest.queue,
            "created_at": iso(oldest.created_at),
            "ready_at": iso(ready_since(oldest)),
            "waiting_seconds": waited(oldest, now),
        }
    )
    # The registry's workers, idle ones included, dead ones marked.
    out["workers"] = registry
    out["now"] = datetime.now(UTC).isoformat()
    return out
