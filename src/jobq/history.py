"""What happened to a job, and who works on the queue: the attempt history
and the worker registry, as the stores keep them and the queue shows them.

Every attempt leaves one row (:class:`AttemptRecord`), written by the store
in the same transaction (or statement) as the outcome it records, so the
history and the job never disagree. Each worker process keeps one row in the
registry (:class:`WorkerRecord`), refreshed every :data:`HEARTBEAT_INTERVAL`
seconds; the rules for reading it (alive or dead, forgotten) live here.
"""

from __future__ import annotations

import json
import traceback as tb
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from .clock import datetime_of_ms, from_ms
from .codec import error_text

if TYPE_CHECKING:
    from .job import JobRecord

#: What became of one attempt. ``lease_lost``: its worker stopped renewing the
#: lease and the rescuer took the job back; ``released``: given back without
#: spending an attempt (a graceful stop, a circuit opened after the claim);
#: ``timed_out``: the handler ran past its timeout (retried or failed as any
#: error); ``snoozed``: ``SnoozeJob``, no attempt spent.
AttemptOutcome = Literal[
    "completed", "retry", "failed", "lease_lost", "released", "timed_out", "cancelled", "snoozed"
]
OUTCOMES: tuple[str, ...] = (
    "completed", "retry", "failed", "lease_lost", "released", "timed_out", "cancelled", "snoozed",
)  # fmt: skip

TRACEBACK_CAP = 16 * 1024  # bytes (UTF-8) of a stored traceback at most, its cut marker included
TRACEBACK_HEAD = 4 * 1024  # bytes kept from the start of a cut traceback (the rest from its end)
CUT_MARKER = "\n... [traceback cut here: {n} bytes left out] ...\n"

HEARTBEAT_INTERVAL = 5.0  # seconds between a worker's heartbeats
DEAD_AFTER_HEARTBEATS = 3  # heartbeats missed before a worker shows as dead
FORGET_AFTER = 3600.0  # seconds without a heartbeat before a worker's row is deleted


def format_traceback(error: BaseException | None) -> str | None:
    """The traceback of ``error`` as stored: at most :data:`TRACEBACK_CAP`
    bytes, its start and its end kept around a marker saying how much was
    cut (the raising frame and the message are at the end). ``None`` for no
    exception. Never raises: an exception whose ``str()`` raises still gets
    its frames and type."""
    if error is None:
        return None
    try:
        text = "".join(tb.format_exception(type(error), error, error.__traceback__))
    except Exception:  # noqa: BLE001 - a traceback that cannot be formatted still leaves the type
        text = f"{type(error).__name__}: <traceback could not be formatted>\n"
    # A lone surrogate (in a message, a file name) becomes U+FFFD, as in the
    # stored error: no store can encode one.
    return cap_traceback(error_text(text))


def cap_traceback(text: str) -> str:
    """``text`` cut to :data:`TRACEBACK_CAP` bytes with :data:`CUT_MARKER`."""
    data = text.encode("utf-8", "replace")
    if len(data) <= TRACEBACK_CAP:
        return text
    # The marker's own length depends on the number in it: size it for the largest.
    marker_room = len(CUT_MARKER.format(n=len(data)).encode())
    tail = TRACEBACK_CAP - TRACEBACK_HEAD - marker_room
    head_bytes, tail_bytes = data[:TRACEBACK_HEAD], data[-tail:]
    cut = len(data) - len(head_bytes) - len(tail_bytes)
    head = head_bytes.decode("utf-8", "ignore")
    return head + CUT_MARKER.format(n=cut) + tail_bytes.decode("utf-8", "ignore")


class AttemptRecord(NamedTuple):
    """One attempt as a store keeps it (times in epoch ms)."""

    seq: int  # the order attempts were written in
    job_id: str
    attempt: int  # 1 for the first run; a snooze or release does not advance it
    worker: str | None
    started_at: int | None
    ended_at: int
    outcome: str
    error_type: str | None
    error: str | None
    traceback: str | None


#: Columns of the attempts table, in :class:`AttemptRecord` order.
ATTEMPT_FIELDS: tuple[str, ...] = AttemptRecord._fields


@dataclass(frozen=True, slots=True)
class Attempt:
    """One attempt of a job, as :meth:`jobq.Queue.attempts` returns it."""

    job_id: str
    attempt: int
    worker: str | None
    started_at: datetime | None
    ended_at: datetime
    outcome: str
    error_type: str | None
    error: str | None
    traceback: str | None

    @property
    def duration(self) -> float | None:
        """Seconds from start to end, if the start is known."""
        if self.started_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()

    @classmethod
    def from_record(cls, record: AttemptRecord) -> Attempt:
        r = record
        # A row another program damaged may hold text where a time belongs.
        started = from_ms(r.started_at) if isinstance(r.started_at, int) else None
        return cls(
            r.job_id, r.attempt, r.worker, started, datetime_of_ms(r.ended_at), r.outcome, r.error_type, r.error,
            r.traceback,
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: times as ISO 8601 text."""
        return {
            "attempt": self.attempt,
            "worker": self.worker,
            "started_at": None if self.started_at is None else self.started_at.isoformat(),
            "ended_at": self.ended_at.isoformat(),
            "duration": self.duration,
            "outcome": self.outcome,
            "error_type": self.error_type,
            "error": self.error,
            "traceback": self.traceback,
        }


class WorkerRecord(NamedTuple):
    """A worker process as the registry keeps it (times in epoch ms;
    ``queues`` as JSON text, ``null`` for every queue; ``limits`` as JSON
    text, see :func:`limits_of`)."""

    id: str
    host: str
    pid: int
    queues: str
    concurrency: int
    version: str
    started_at: int
    heartbeat_at: int
    running: int
    done: int
    limits: str = "{}"  # schema version 6; a worker of an older jobq leaves the default


#: Columns of the workers table, in :class:`WorkerRecord` order.
WORKER_FIELDS: tuple[str, ...] = WorkerRecord._fields


def dead(heartbeat_at_ms: int, now_ms: int) -> bool:
    """Whether a worker last heard from at ``heartbeat_at_ms`` shows as dead:
    silent for :data:`DEAD_AFTER_HEARTBEATS` heartbeats."""
    return now_ms - heartbeat_at_ms > DEAD_AFTER_HEARTBEATS * HEARTBEAT_INTERVAL * 1000


def forget_before(now_ms: int) -> int:
    """Workers last heard from before this (epoch ms) are deleted."""
    return now_ms - int(FORGET_AFTER * 1000)


def limits_of(text: object) -> dict[str, Any]:
    """A worker's stored ``limits`` as a dict (empty when it said none, or
    is unreadable): what it enforces, as its processor registers it
    (:mod:`jobq.processor.registry`): ``queues``, slots per named queue (a
    processor with per-queue concurrency); ``rate_limit``,
    ``{"max_requests", "window_seconds"}``; ``key_limits``, a list of
    ``{"key", "type", "rate", "per", "concurrency"}``; ``circuit_breaker``,
    ``{"failure_threshold", "timeout", "reset_timeout"}``; ``open_circuits``,
    the state of each job type whose circuit is not closed; ``job_timeout``,
    seconds."""
    try:
        found = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A worker process, as :meth:`jobq.Queue.workers` returns it."""

    id: str
    host: str
    pid: int
    queues: list[str] | None  # None: every queue
    concurrency: int
    version: str
    started_at: datetime
    heartbeat_at: datetime
    running: int  # jobs running at the last heartbeat
    done: int  # jobs finished (any outcome) since it started
    alive: bool  # heard from within DEAD_AFTER_HEARTBEATS heartbeats
    limits: dict[str, Any]  # what it enforces (see limits_of); empty for a worker of an older jobq

    @classmethod
    def from_record(cls, record: WorkerRecord, now_ms: int) -> WorkerInfo:
        r = record
        try:
            queues = json.loads(r.queues)
        except (TypeError, ValueError):
            queues = None
        if not (isinstance(queues, list) and all(isinstance(q, str) for q in queues)):
            queues = None
        return cls(
            r.id, r.host, int(r.pid), queues, int(r.concurrency), r.version, datetime_of_ms(r.started_at),
            datetime_of_ms(r.heartbeat_at), int(r.running), int(r.done), not dead(r.heartbeat_at, now_ms),
            limits_of(r.limits),
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: times as ISO 8601 text."""
        return {
            "id": self.id,
            "host": self.host,
            "pid": self.pid,
            "queues": self.queues,
            "concurrency": self.concurrency,
            "version": self.version,
            "started_at": self.started_at.isoformat(),
            "heartbeat_at": self.heartbeat_at.isoformat(),
            "running": self.running,
            "done": self.done,
            "alive": self.alive,
            "limits": self.limits,
        }


def completed_attempt(record: JobRecord) -> Attempt | None:
    """The last attempt of a completed job, read from its own row: a
    completion adds no history row (:func:`jobq.transitions.completed`), as
    the row keeps its worker (``lease_owner``), start and finish. ``None``
    for a job that is not completed, or whose finish cannot be read (a row
    another program wrote)."""
    if record.status != "completed" or type(record.completed_at) is not int:
        return None
    attempts = record.attempts if type(record.attempts) is int else 0
    started = from_ms(record.started_at) if type(record.started_at) is int else None
    worker = record.lease_owner if isinstance(record.lease_owner, str) else None
    return Attempt(
        record.id, attempts + 1, worker, started, datetime_of_ms(record.completed_at), "completed", None, None, None,
    )  # fmt: skip
