"""The job record, its statuses, and the raw row every store returns.

The record follows k-msg's ``Job``: the same fields and statuses, with times
as aware UTC datetimes and the delay in seconds. Stores keep times as integer
epoch milliseconds and JSON as text, which is also k-msg's SQLite layout.

Reading a row as a job (:func:`to_job`) is where a row is checked: one that
another program wrote with the wrong types (text in an integer column, a time
past year 9999) raises :class:`~jobq.errors.CorruptJob` naming the column
(:func:`unreadable`), so the caller fails that job alone;
:func:`lenient_record` shows such a row with defaults in place of what
cannot be read.
"""

from __future__ import annotations

import json
import operator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Generic, TypeVar

from .clock import datetime_of_ms
from .errors import CorruptJob

T = TypeVar("T")

DEFAULT_QUEUE = "default"  # the named queue of a job enqueued without one
DEFAULT_MAX_ATTEMPTS = 3  # attempts a job gets unless told (k-msg's default)
#: The latest time a job can hold, in epoch ms (the end of year 9999, the
#: last a datetime can show); a stored time past it is unreadable.
MAX_TIME_MS = 253_402_300_799_999
#: The earliest epoch milliseconds a datetime holds (year 1).
MIN_TIME_MS = -62_135_596_800_000


class JobStatus(StrEnum):
    PENDING = "pending"
    """Waiting, and ready to run."""
    PROCESSING = "processing"
    """Claimed by a worker, which holds a lease on it (or by a writer without
    leases, such as k-msg's workers: a foreign claim)."""
    COMPLETED = "completed"
    """Finished successfully; ``completed_at`` and ``result`` are set."""
    FAILED = "failed"
    """Failed for good; ``failed_at`` and ``error`` are set."""
    DELAYED = "delayed"
    """Waiting for a future ``process_at``. Stored as ``pending`` (as k-msg
    stores it); a job reads as delayed while its ``process_at`` is ahead."""
    CANCELLED = "cancelled"
    """Stopped for good by an operator; it will not run."""


#: Statuses a job never leaves on its own; ``cleanup_terminal`` and retention
#: act on these.
TERMINAL_STATUSES = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})
#: Stored statuses of a job that has not finished (a delayed job is stored as
#: pending); a ``unique_key`` is held while its job is in one of these.
UNFINISHED_STORED = ("pending", "processing")
#: Statuses of a job that has not run to its end yet.
WAITING_STATUSES = frozenset({JobStatus.PENDING, JobStatus.DELAYED})


@dataclass(frozen=True, slots=True)
class RetryDirective:
    """Whether a failed job may run again, and after how many seconds."""

    enabled: bool
    delay: float | None = None


@dataclass(slots=True, eq=True)
class Job(Generic[T]):
    """One job, as stored. ``data`` comes back equal to what was enqueued
    (after a JSON round trip)."""

    id: str
    type: str
    data: T
    status: JobStatus
    priority: int
    attempts: int
    max_attempts: int
    delay: float
    created_at: datetime
    process_at: datetime
    completed_at: datetime | None = None
    failed_at: datetime | None = None
    error: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    # jobq's additions
    queue: str = DEFAULT_QUEUE
    result: Any = None
    started_at: datetime | None = None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    lease_token: str | None = field(default=None, repr=False, compare=False)
    lost_count: int = 0
    """How many times a worker holding this job was lost (its lease expired)."""
    unique_key: str | None = None
    """While a job with this key is unfinished, enqueueing the key again
    returns that job instead of adding one."""
    progress: float | None = None
    """The last progress its handler reported (see :func:`jobq.report_progress`)."""
    progress_message: str | None = None
    cancelled_at: datetime | None = None
    """When it was cancelled (status ``CANCELLED``)."""
    cancel_requested_at: datetime | None = None
    """When a cancel was asked of it while it ran; its processor stops it."""
    error_type: str | None = None
    """The name of the exception class that ``error`` came from (``None``
    for an error given as text, or a worker lost)."""
    deduplicated: bool = field(default=False, compare=False)
    """Not stored: ``True`` on the job ``enqueue`` returned because another
    unfinished job already held its ``unique_key``."""


@dataclass(slots=True)
class JobRecord:
    """A job as a store holds it: epoch milliseconds and JSON text.

    ``status`` is the stored one (``pending`` also covers delayed jobs), and
    for a job a jobq worker holds (``lease_token`` set) ``process_at`` holds
    the end of its lease, so that k-msg's statements, which read only
    ``process_at``, leave it alone; the time it was due is kept in
    ``scheduled_at``. A processing job without a ``lease_token`` is held by
    another writer (k-msg's workers), which leaves ``process_at`` as it was.
    """

    id: str
    type: str
    data: str
    status: str
    priority: int
    attempts: int
    max_attempts: int
    delay: int
    created_at: int
    process_at: int
    completed_at: int | None
    failed_at: int | None
    error: str | None
    metadata: str | None
    queue: str = DEFAULT_QUEUE
    result: str | None = None
    lease_token: str | None = None
    lease_owner: str | None = None
    scheduled_at: int | None = None
    started_at: int | None = None
    lost_count: int = 0
    unique_key: str | None = None
    progress: float | None = None
    progress_message: str | None = None
    cancelled_at: int | None = None
    cancel_requested_at: int | None = None
    error_type: str | None = None


#: Column order of :class:`JobRecord`; SQL backends select in this order.
RECORD_FIELDS: tuple[str, ...] = tuple(JobRecord.__dataclass_fields__)
record_values = operator.attrgetter(*RECORD_FIELDS)
"""A record's values as a tuple in :data:`RECORD_FIELDS` order."""


def copy_record(record: JobRecord) -> JobRecord:
    """A shallow copy (every field is immutable), several times faster than
    ``dataclasses.replace``, which the in-memory store would otherwise pay on
    every claim."""
    return JobRecord(*record_values(record))


_scan_json = json.JSONDecoder().scan_once  # type: ignore[attr-defined]


def _has_surrogates(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _decode(job_id: str, what: str, text: str | None, default: Any) -> Any:
    if text is None:
        return default
    if text == "{}":
        return {}
    if not text.isascii() and _has_surrogates(text):
        # Bytes that were not UTF-8, read leniently by the SQLite store.
        raise CorruptJob(job_id, f"its {what} is not valid UTF-8")
    try:
        # The decoder's scanner without json.loads' wrapper (two regex
        # matches per call); text it does not consume whole, or that does
        # not start with a value, goes through json.loads for its verdict.
        value, end = _scan_json(text, 0)
        if end == len(text):
            return value
    except (StopIteration, ValueError, TypeError, RecursionError):
        pass
    try:
        return json.loads(text)
    except (ValueError, TypeError) as exc:
        raise CorruptJob(job_id, f"its {what} is not valid JSON ({exc})") from None
    except RecursionError:
        # Nested deeper than Python's recursion limit lets json decode (a row
        # written by another producer, or one just under the limit at enqueue
        # and decoded deeper in a worker's stack): the job fails, the worker lives.
        raise CorruptJob(job_id, f"its {what} is JSON nested too deeply to decode") from None


class Datetimes(dict[int, datetime]):
    """Epoch milliseconds to aware datetimes, each converted once: the jobs of
    one claim share their start and lease times, and jobs enqueued together
    their creation time. Datetimes are immutable, so sharing them is safe."""

    def __missing__(self, ms: int) -> datetime:
        value = self[ms] = datetime_of_ms(ms)
        return value


def to_job(record: JobRecord, now_ms: int, datetimes: Datetimes | None = None) -> Job[Any]:
    """Builds the public :class:`Job` from a stored row; ``datetimes`` may
    be shared by the rows of one batch.

    Raises :class:`CorruptJob` when the payload, metadata or result cannot be
    decoded, or a column holds what its type cannot (see :func:`unreadable`).
    """
    dt = Datetimes() if datetimes is None else datetimes
    try:
        # The numbers kept as they are must be numbers (text another program
        # wrote fails here, not later in a retry's arithmetic).
        priority, attempts, max_attempts = record.priority, record.attempts, record.max_attempts
        lost_count = record.lost_count
        0 + priority + attempts + max_attempts + lost_count  # noqa: B018
        status = _STATUSES.get(record.status, JobStatus.PENDING)
        process_at = record.process_at
        lease_expires_at = None
        lease_owner = None
        if status is JobStatus.PROCESSING:
            lease_owner = record.lease_owner
            # A claim without a token (another writer's) has no lease: its
            # process_at is still the time it was due.
            if record.lease_token is not None:
                lease_expires_at = process_at
                process_at = record.scheduled_at if record.scheduled_at is not None else process_at
        elif status is JobStatus.PENDING and process_at > now_ms:
            status = JobStatus.DELAYED
        metadata = _decode(record.id, "metadata", record.metadata, {})
        completed_at, failed_at, started_at = record.completed_at, record.failed_at, record.started_at
        cancelled_at, cancel_requested_at = record.cancelled_at, record.cancel_requested_at
        # Positional, in field order: a claim builds one of these per job.
        return Job(
            record.id,
            record.type,
            _decode(record.id, "payload", record.data, None),
            status,
            priority,
            attempts,
            max_attempts,
            record.delay / 1000,
            dt[record.created_at],
            dt[process_at],
            None if completed_at is None else dt[completed_at],
            None if failed_at is None else dt[failed_at],
            record.error,
            metadata if isinstance(metadata, dict) else {"value": metadata},
            record.queue,
            None if record.result is None else _decode(record.id, "result", record.result, None),
            None if started_at is None else dt[started_at],
            lease_owner,
            None if lease_expires_at is None else dt[lease_expires_at],
            record.lease_token,
            lost_count,
            record.unique_key,
            None if record.progress is None else float(record.progress),
            record.progress_message,
            None if cancelled_at is None else dt[cancelled_at],
            None if cancel_requested_at is None else dt[cancel_requested_at],
            record.error_type,
        )
    except CorruptJob:
        raise
    except (TypeError, ValueError, OverflowError, OSError):
        # A column of the wrong type, or a time out of range: say which.
        raise unreadable(record) or CorruptJob(record.id, "a column cannot be read") from None


def new_job(record: JobRecord, datetimes: Datetimes) -> Job[Any]:
    """The public :class:`Job` of a record just stored by an enqueue: the
    fields a new job can have set, without :func:`to_job`'s work for the
    rest (the batch paths build many of these). Its status is judged as of
    its ``created_at``, the store's time of the insert: delayed if and only
    if it was given a delay."""
    return Job(
        record.id,
        record.type,
        _decode(record.id, "payload", record.data, None),
        JobStatus.DELAYED if record.process_at > record.created_at else JobStatus.PENDING,
        record.priority,
        0,
        record.max_attempts,
        record.delay / 1000,
        datetimes[record.created_at],
        datetimes[record.process_at],
        metadata=_decode(record.id, "metadata", record.metadata, {}),
        queue=record.queue,
        unique_key=record.unique_key,
    )


_STATUSES: dict[str, JobStatus] = {s.value: s for s in JobStatus}


# -- rows another program wrote ------------------------------------------------

_NUMBERS = ("priority", "attempts", "max_attempts", "delay", "lost_count")
_TIMES = ("created_at", "process_at")
_OPTIONAL_TIMES = (
    "completed_at", "failed_at", "started_at", "scheduled_at", "cancelled_at", "cancel_requested_at",
)  # fmt: skip


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_time(value: Any) -> bool:
    if not _is_number(value):
        return False
    try:
        datetime.fromtimestamp(value / 1000, UTC)
    except (ValueError, OverflowError, OSError):
        return False
    return True


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def runnable_times(record: JobRecord) -> bool:
    """Whether a claimed row's times are times a job can run with. A reader
    shows a time out of range as the earliest or latest datetime; a claim
    fails such a job instead (:func:`unreadable` says which column)."""
    created, due = record.created_at, record.scheduled_at if record.scheduled_at is not None else record.process_at
    return MIN_TIME_MS <= created <= MAX_TIME_MS and MIN_TIME_MS <= due <= MAX_TIME_MS


def unreadable(record: JobRecord) -> CorruptJob | None:
    """Why ``record`` cannot be read as a job (the first column holding what
    its type cannot), or ``None``. Rows jobq writes always pass; a row
    written by another program (a k-msg producer, a script) may not."""
    for name in _NUMBERS:
        value = getattr(record, name)
        if not _is_number(value):
            return CorruptJob(record.id, f"column {name} holds {_shown(value)}, not a number")
    for name in (*_TIMES, *_OPTIONAL_TIMES):
        value = getattr(record, name)
        if not (value is None and name in _OPTIONAL_TIMES) and not _is_time(value):
            # A claim moves the due time (process_at) to scheduled_at: name
            # the column its writer set.
            column = "process_at" if name == "scheduled_at" else name
            return CorruptJob(record.id, f"column {column} holds {_shown(value)}, not a time in ms")
    if record.progress is not None and not _is_number(record.progress):
        return CorruptJob(record.id, f"column progress holds {_shown(record.progress)}, not a number")
    return None


def lenient_record(record: JobRecord) -> JobRecord:
    """A copy of ``record`` that :func:`to_job` reads: a column that cannot
    be read gets a default (0, or ``None`` where a time is optional), JSON
    that cannot be decoded becomes ``null`` (metadata: none). For showing a
    damaged row (``get_job``, the dashboard), never for running it."""
    copy = copy_record(record)
    for name in _NUMBERS:
        if not _is_number(getattr(copy, name)):
            setattr(copy, name, 0)
    for name in _TIMES:
        if not _is_time(getattr(copy, name)):
            setattr(copy, name, 0)
    for name in _OPTIONAL_TIMES:
        value = getattr(copy, name)
        if value is not None and not _is_time(value):
            setattr(copy, name, None)
    if copy.progress is not None and not _is_number(copy.progress):
        copy.progress = None
    for name, default in (("data", "null"), ("result", None), ("metadata", None)):
        text = getattr(copy, name)
        if text is not None:
            try:
                _decode(copy.id, name, text, None)
            except CorruptJob:
                setattr(copy, name, default)
    return copy
