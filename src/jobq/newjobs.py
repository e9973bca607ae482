"""New jobs: checking and encoding what an application enqueues, and the
ids they get. Nothing is stored here; :class:`~jobq.queue.Queue` stores the
records these functions build."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from . import codec
from .clock import to_ms
from .errors import InvalidOption
from .job import DEFAULT_MAX_ATTEMPTS, DEFAULT_QUEUE, JobRecord

# Job ids are time-ordered: a 12-hex-digit millisecond prefix keeps
# primary-key inserts local, and 80 bits follow it, counting up from a
# random start within each millisecond (see :class:`IdSequence`).
_ID_RANDOM_BYTES = 10
_ID_SPACE = 1 << (8 * _ID_RANDOM_BYTES)


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass(frozen=True, slots=True)
class NewJob:
    """One job for :meth:`Queue.enqueue_many`."""

    type: str
    data: Any = None
    priority: int = 0
    delay: float = 0
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    metadata: dict[str, Any] | None = None
    queue: str = DEFAULT_QUEUE
    unique_key: str | None = None


#: Metadata key of a job's own handler timeout in seconds.
TIMEOUT_KEY = "jobq.timeout"


def check_timeout(timeout: object) -> float:
    """A handler timeout in seconds (a job type's, a task's, or a job's own)."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < float("inf"):
        raise InvalidOption(f"timeout must be a positive number of seconds, not {timeout!r}")
    return float(timeout)


@dataclass(frozen=True, slots=True)
class Defaults:
    """What a new job gets for each setting its caller leaves out (``None``).

    The one rule for every way of enqueueing: k-msg's queue verb
    (:data:`QUEUE_DEFAULTS`: priority 0, 3 attempts), k-msg's processor verb
    ``add`` and cron schedules (priority 5 and the processor's
    ``max_retries``, in its first queue), and each task (the settings of its
    decorator) each hold a ``Defaults`` and build their jobs with
    :meth:`job`."""

    priority: int = 0
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    queue: str = DEFAULT_QUEUE
    timeout: float | None = None
    """Seconds the job's handler may run (``None``: its worker's limit)."""

    def job(
        self,
        job_type: str,
        data: Any = None,
        *,
        priority: int | None = None,
        delay: float = 0,
        max_attempts: int | None = None,
        metadata: dict[str, Any] | None = None,
        queue: str | None = None,
        unique_key: str | None = None,
        timeout: float | None = None,
    ) -> NewJob:
        """A new job with these defaults where the caller gave ``None``. A
        timeout is kept in the job's metadata (:data:`TIMEOUT_KEY`), where
        every worker reads it."""
        seconds = self.timeout if timeout is None else check_timeout(timeout)
        if seconds is not None:
            metadata = {**(metadata or {}), TIMEOUT_KEY: seconds}
        return NewJob(
            job_type,
            data,
            self.priority if priority is None else priority,
            delay,
            self.max_attempts if max_attempts is None else max_attempts,
            metadata,
            self.queue if queue is None else queue,
            unique_key,
        )


#: k-msg's queue: ``enqueue`` uses priority 0 and 3 attempts.
QUEUE_DEFAULTS = Defaults()


class IdSequence:
    """Job ids for one queue object: the millisecond, then 80 bits that start
    at random in each millisecond and count up within it, so the ids one
    queue object hands out sort in the order it enqueued (lists tie on
    ``created_at`` within a millisecond, and break the tie by id)."""

    __slots__ = ("_ms", "_next")

    def __init__(self) -> None:
        self._ms, self._next = -1, 0

    def __call__(self, now_ms: int, count: int) -> list[str]:
        """``count`` new ids for ``now_ms``."""
        if now_ms != self._ms:
            self._ms, self._next = now_ms, int.from_bytes(os.urandom(_ID_RANDOM_BYTES)) >> 1
        first, self._next = self._next, self._next + count
        prefix = f"{now_ms:012x}"
        return [f"{prefix}{n % _ID_SPACE:020x}" for n in range(first, first + count)]


def new_records(
    specs: Sequence[NewJob], now_ms: int, ids: Sequence[str], max_payload_bytes: int
) -> list[JobRecord]:
    """Checks and encodes a batch of new jobs, created at ``now_ms`` with
    ``ids``; raises :class:`~jobq.InvalidJob` for the first bad one. A batch
    mostly repeats one type and queue, so each distinct (type, queue) pair is
    checked once."""
    names_checked: set[tuple[str, str]] = set()
    limit = max_payload_bytes
    records: list[JobRecord] = []
    for i, spec in enumerate(specs):
        job_type, queue = spec.type, spec.queue
        if not (type(job_type) is str and type(queue) is str and (job_type, queue) in names_checked):
            codec.check_type(job_type)
            codec.check_queue_name(queue)
            names_checked.add((job_type, queue))
        priority, delay, max_attempts = spec.priority, spec.delay, spec.max_attempts
        # The defaults skip their checks (``type() is`` rules out bools).
        if not (type(priority) is int and priority == 0):
            codec.check_priority(priority)
        delay_ms = 0 if type(delay) is int and delay == 0 else to_ms(codec.check_delay(delay))
        if not (type(max_attempts) is int and max_attempts == DEFAULT_MAX_ATTEMPTS):
            codec.check_max_attempts(max_attempts)
        unique_key = spec.unique_key
        if unique_key is not None:
            codec.check_unique_key(unique_key)
        records.append(
            JobRecord(
                ids[i],
                job_type,
                codec.encode_payload(spec.data, limit),
                "pending",
                priority,
                0,
                max_attempts,
                delay_ms,
                now_ms,
                now_ms + delay_ms,
                None,
                None,
                None,
                codec.encode_metadata(spec.metadata, limit),
                queue=queue,
                unique_key=unique_key,
            )
        )
    return records
