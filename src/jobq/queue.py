"""The public queue: k-msg's ten verbs over any :class:`~jobq.store.base.Store`.

Everything backends share lives here once: checking input, encoding JSON,
ids and timestamps from the injected clock, fencing by claim token, decoding
rows into :class:`~jobq.job.Job`, and waking workers in this process when a
job is enqueued.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from . import codec
from .clock import SYSTEM_CLOCK, Clock, to_ms
from .errors import CorruptJob, InvalidJob, InvalidOption
from .job import TERMINAL_STATUSES, Job, JobRecord, JobStatus, RetryDirective, to_job
from .store.base import Store

LEASE = 30.0  # seconds a claim holds a job before a rescuer may take it back
RESCUE_INTERVAL = 1.0  # seconds between expired-lease sweeps piggybacked on dequeue
MAX_LOST_LEASES = 3  # a job whose worker was lost this many times fails for good
LOST_WORKER_ERROR = "worker {owner} was lost: its lease expired before the job finished"
DEFAULT_QUEUE = "default"


def new_job_id(now_ms: int) -> str:
    """Time-ordered ids: a millisecond prefix keeps primary-key inserts local."""
    return f"{now_ms:012x}{secrets.token_hex(10)}"


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass(frozen=True, slots=True)
class NewJob:
    """One job for :meth:`Queue.enqueue_many`."""

    type: str
    data: Any = None
    priority: int = 0
    delay: float = 0
    max_attempts: int = 3
    metadata: dict[str, Any] | None = None
    queue: str = DEFAULT_QUEUE


class Queue:
    """A job queue on one store. Use :func:`jobq.connect` or a backend class
    (:class:`jobq.MemoryQueue`, :class:`jobq.SQLiteQueue`) to make one.

    Options (all keyword-only):

    - ``clock``: where "now" comes from (default: the system clock).
    - ``lease``: seconds a ``dequeue`` claim lasts unless renewed (default 30).
    - ``max_payload_bytes``: largest encoded payload accepted (default 1 MiB).
    - ``max_lost_leases``: lost workers after which a job fails for good (default 3).
    """

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock | None = None,
        lease: float = LEASE,
        max_payload_bytes: int = codec.MAX_PAYLOAD_BYTES,
        max_lost_leases: int = MAX_LOST_LEASES,
        worker_id: str | None = None,
    ) -> None:
        if not (isinstance(lease, (int, float)) and lease > 0):
            raise InvalidOption(f"lease must be a positive number of seconds, not {lease!r}")
        if not (isinstance(max_payload_bytes, int) and max_payload_bytes > 0):
            raise InvalidOption(f"max_payload_bytes must be a positive int, not {max_payload_bytes!r}")
        if not (isinstance(max_lost_leases, int) and max_lost_leases >= 1):
            raise InvalidOption(f"max_lost_leases must be an int >= 1, not {max_lost_leases!r}")
        self.store = store
        self.clock: Clock = clock or SYSTEM_CLOCK
        # A store with a clock of its own (PostgreSQL's) uses it unless the
        # caller injected one, so workers with skewed clocks agree on "now".
        use_clock = getattr(store, "use_clock", None)
        if use_clock is not None:
            use_clock(self.clock)
        self.lease = float(lease)
        self.max_payload_bytes = max_payload_bytes
        self.max_lost_leases = max_lost_leases
        self.worker_id = worker_id or default_worker_id()
        self._listeners: list[Callable[[], None]] = []
        self._next_rescue_ms = 0

    def __repr__(self) -> str:
        return f"<{type(self).__name__} store={self.store.name}>"

    # -- context manager and awaitable ------------------------------------

    async def __aenter__(self) -> Queue:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __await__(self):  # type: ignore[no-untyped-def]
        """``await queue`` returns the queue, so code written for
        ``await jobq.connect(url)`` also accepts a constructed queue."""
        if False:  # pragma: no cover - makes this a generator
            yield
        return self

    # -- helpers -----------------------------------------------------------

    def now_ms(self) -> int:
        return to_ms(self.clock.now())

    def _to_job(self, record: JobRecord, now_ms: int | None = None) -> Job[Any]:
        return to_job(record, self.now_ms() if now_ms is None else now_ms)

    def _lenient_job(self, record: JobRecord) -> Job[Any]:
        """For reading: a row whose JSON is damaged still shows, with ``None``
        in place of what cannot be decoded."""
        try:
            return self._to_job(record)
        except CorruptJob:
            record.data, record.result = "null", None
            if record.metadata is not None:
                try:
                    self._to_job(record)
                except CorruptJob:
                    record.metadata = None
            return self._to_job(record)

    def on_enqueue(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Calls ``listener`` (from any thread) whenever this queue object stores
        work that may be ready; returns a function that unregisters it. Workers
        in this process use it to wake at once."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _notify(self) -> None:
        for listener in list(self._listeners):
            listener()

    def _record(self, spec: NewJob, now_ms: int) -> JobRecord:
        job_type = codec.check_type(spec.type)
        priority = codec.check_priority(spec.priority)
        delay = codec.check_delay(spec.delay)
        max_attempts = codec.check_max_attempts(spec.max_attempts)
        data = codec.encode_payload(spec.data, self.max_payload_bytes)
        metadata = codec.encode_metadata(spec.metadata)
        if not isinstance(spec.queue, str) or not spec.queue.strip():
            raise InvalidJob(f"queue must be a non-empty str, not {spec.queue!r}")
        delay_ms = to_ms(delay)
        return JobRecord(
            id=new_job_id(now_ms),
            type=job_type,
            data=data,
            status="pending",
            priority=priority,
            attempts=0,
            max_attempts=max_attempts,
            delay=delay_ms,
            created_at=now_ms,
            process_at=now_ms + delay_ms,
            completed_at=None,
            failed_at=None,
            error=None,
            metadata=metadata,
            queue=spec.queue,
        )

    # -- the verbs ---------------------------------------------------------

    async def enqueue(
        self,
        type: str,
        data: Any = None,
        *,
        priority: int = 0,
        delay: float = 0,
        max_attempts: int = 3,
        metadata: dict[str, Any] | None = None,
        queue: str = DEFAULT_QUEUE,
    ) -> Job[Any]:
        """Stores a new job and returns it (``DELAYED`` when ``delay > 0``)."""
        jobs = await self.enqueue_many(
            [NewJob(type, data, priority, delay, max_attempts, metadata, queue)]
        )
        return jobs[0]

    async def enqueue_many(self, jobs: Iterable[NewJob]) -> list[Job[Any]]:
        """Stores several jobs in one transaction: all of them or, on bad
        input anywhere, none."""
        now_ms = self.now_ms()
        records = [self._record(spec, now_ms) for spec in jobs]
        if not records:
            return []
        await self.store.insert(records)
        # A store on its own clock (PostgreSQL's) writes the times it stored
        # back into the records; each job's status is judged as of then.
        if any(r.process_at <= max(now_ms, r.created_at) for r in records):
            self._notify()
        return [self._to_job(r, max(now_ms, r.created_at)) for r in records]

    async def claim(
        self,
        limit: int = 1,
        *,
        queues: Sequence[str] | None = None,
        exclude_types: Collection[str] = (),
        lease: float | None = None,
        owner: str | None = None,
        rescue: bool = True,
    ) -> list[Job[Any]]:
        """Claims up to ``limit`` ready jobs in one transaction, in dequeue
        order. A job whose stored JSON cannot be decoded is failed for good
        with an error saying so, and skipped. With ``rescue`` (the default),
        expired leases are swept first, at most once a second; a processor
        sweeps on its own schedule instead."""
        now_ms = self.now_ms()
        if rescue and now_ms >= self._next_rescue_ms:
            await self.rescue_expired()
        records = await self.store.claim(
            limit=limit,
            now_ms=now_ms,
            lease_until_ms=now_ms + to_ms(self.lease if lease is None else lease),
            token=secrets.token_hex(8),
            owner=owner or self.worker_id,
            queues=queues,
            exclude_types=exclude_types,
        )
        jobs: list[Job[Any]] = []
        for record in records:
            try:
                jobs.append(self._to_job(record, now_ms))
            except CorruptJob as exc:
                await self.store.fail(
                    record.id, token=record.lease_token, error=str(exc), retry_at_ms=None, now_ms=now_ms
                )
        return jobs

    async def dequeue(self, *, queues: Sequence[str] | None = None) -> Job[Any] | None:
        """Claims the next ready job (status ``PROCESSING``), or ``None``."""
        jobs = await self.claim(1, queues=queues)
        return jobs[0] if jobs else None

    @staticmethod
    def _target(job: str | Job[Any]) -> tuple[str, str | None]:
        if isinstance(job, Job):
            return job.id, job.lease_token
        if isinstance(job, str):
            return job, None
        raise TypeError(f"expected a job id or a jobq.Job, not {type(job).__name__}")

    async def complete(self, job: str | Job[Any], result: Any = None) -> None:
        """Marks the job completed and keeps ``result``. Given the ``Job`` from
        ``dequeue``, raises :class:`~jobq.LeaseLost` if that claim is gone."""
        job_id, token = self._target(job)
        await self.store.complete(
            job_id, token=token, result=codec.encode_result(result), now_ms=self.now_ms()
        )

    async def fail(
        self, job: str | Job[Any], error: BaseException | str, retry: RetryDirective | None = None
    ) -> Job[Any]:
        """Counts a failed attempt; retries after ``retry.delay`` seconds when
        ``retry`` is enabled and attempts are left, else fails for good.
        Returns the job as stored afterwards."""
        job_id, token = self._target(job)
        now_ms = self.now_ms()
        retry_at_ms = None
        if retry is not None and retry.enabled:
            retry_at_ms = now_ms + to_ms(codec.check_delay(retry.delay or 0, "retry delay"))
        record = await self.store.fail(
            job_id, token=token, error=codec.error_text(error), retry_at_ms=retry_at_ms, now_ms=now_ms
        )
        if record.status == "pending" and record.process_at <= now_ms:
            self._notify()
        return self._lenient_job(record)

    async def release(self, job: Job[Any], *, delay: float | None = None) -> None:
        """Gives a claimed job back without spending an attempt: it runs again
        after ``delay`` seconds, or at once (in its old place in line)."""
        now_ms = self.now_ms()
        process_at = None if delay is None else now_ms + to_ms(codec.check_delay(delay))
        job_id, token = self._target(job)
        if token is None:
            raise TypeError("release needs the Job returned by dequeue, not an id")
        await self.store.release(job_id, token=token, process_at_ms=process_at, now_ms=now_ms)
        if process_at is None:
            self._notify()

    async def extend_leases(self, jobs: Sequence[Job[Any]], lease: float | None = None) -> set[str]:
        """Renews the claims on ``jobs`` for another ``lease`` seconds; returns
        the ids of those whose claim is gone."""
        pairs = [(j.id, j.lease_token) for j in jobs if j.lease_token is not None]
        until = self.now_ms() + to_ms(self.lease if lease is None else lease)
        return await self.store.extend_leases(pairs, until_ms=until)

    async def rescue_expired(self) -> list[Job[Any]]:
        """Returns every job whose lease expired to waiting (a failed attempt,
        a lost worker), or fails it for good when it is out of attempts or was
        lost ``max_lost_leases`` times."""
        now_ms = self.now_ms()
        self._next_rescue_ms = now_ms + to_ms(RESCUE_INTERVAL)
        records = await self.store.rescue_expired(
            now_ms=now_ms, max_lost=self.max_lost_leases, error=LOST_WORKER_ERROR
        )
        if any(r.status == "pending" for r in records):
            self._notify()
        return [self._lenient_job(r) for r in records]

    async def peek(self, *, queues: Sequence[str] | None = None) -> Job[Any] | None:
        """The job ``dequeue`` would return, without claiming it."""
        record = await self.store.peek(now_ms=self.now_ms(), queues=queues)
        return None if record is None else self._lenient_job(record)

    async def size(self, *, queues: Sequence[str] | None = None) -> int:
        """How many jobs are ready to run now."""
        return await self.store.count_ready(now_ms=self.now_ms(), queues=queues)

    async def next_due(self, *, queues: Sequence[str] | None = None) -> float | None:
        """Epoch seconds at which the earliest waiting job is due, or ``None``."""
        due = await self.store.next_due_ms(queues=queues)
        return None if due is None else due / 1000

    async def get_job(self, job_id: str) -> Job[Any] | None:
        """Any job by id, whatever its status."""
        record = await self.store.get(job_id)
        return None if record is None else self._lenient_job(record)

    async def remove(self, job_id: str) -> bool:
        return await self.store.remove(job_id)

    async def clear(self) -> None:
        await self.store.clear()

    async def cleanup_terminal(
        self,
        statuses: Collection[JobStatus | str] = (JobStatus.COMPLETED, JobStatus.FAILED),
        *,
        older_than: float | None = None,
    ) -> int:
        """Deletes jobs in ``statuses`` (finished more than ``older_than``
        seconds ago, when given); returns how many."""
        try:
            chosen = {JobStatus(s) for s in statuses}
        except ValueError as exc:
            raise InvalidOption(f"cleanup_terminal: {exc}") from None
        unfinished = chosen - TERMINAL_STATUSES
        if unfinished:
            raise InvalidOption(
                f"cleanup_terminal deletes finished jobs only ({', '.join(sorted(TERMINAL_STATUSES))}),"
                f" not {', '.join(sorted(unfinished))}; use remove() or clear()"
            )
        values = {s.value for s in chosen}
        before = None if older_than is None else self.now_ms() - to_ms(codec.check_delay(older_than))
        return await self.store.delete_terminal(values, before_ms=before)

    async def counts(self) -> dict[JobStatus, int]:
        """How many jobs are in each status (every status present, 0 if none)."""
        raw = await self.store.count_by_status(now_ms=self.now_ms())
        return {status: raw.get(status.value, 0) for status in JobStatus}

    async def wait_for_change(self, timeout: float) -> None:
        """Returns when another process may have stored work, or after ``timeout``."""
        await self.store.wait_for_change(timeout)

    async def close(self) -> None:
        await self.store.close()

