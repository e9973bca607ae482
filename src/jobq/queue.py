"""The public queue: k-msg's ten verbs, and jobq's, over any :class:`~jobq.store.base.Store`.

Everything backends share lives here once: ids and timestamps from the
injected clock, new jobs checked and encoded (:mod:`jobq.newjobs`), the
outcomes of claimed jobs decided by the rules of :mod:`jobq.transitions`
and written under their fence, rows decoded into :class:`~jobq.job.Job`,
and workers in this process woken when a job is enqueued. The operators'
verbs come from :class:`~jobq.admin.verbs.AdminVerbs`, those that take back
the jobs of lost workers from :class:`~jobq.rescue.RescueVerbs`, and those
that steer a stored job (cancel, retry, progress, wait) from
:class:`~jobq.steering.SteeringVerbs`.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import Callable, Collection, Iterable, Sequence
from typing import Any

from . import codec, hooks, transitions
from .admin.verbs import AdminVerbs
from .clock import SYSTEM_CLOCK, Clock, now_ms, to_ms
from .errors import CorruptJob, InvalidOption, JobNotFound, JobqError, LeaseLost, StoreUnavailable
from .history import format_traceback
from .job import (
    MAX_TIME_MS,
    Datetimes,
    Job,
    JobRecord,
    RetryDirective,
    lenient_record,
    new_job,
    runnable_times,
    to_job,
    unreadable,
)
from .keylimits import KeyLimit
from .newjobs import QUEUE_DEFAULTS, IdSequence, NewJob, default_worker_id, new_records
from .rescue import RescueVerbs
from .results import Finishes
from .steering import SteeringVerbs
from .store.base import ClaimRequest, ClockedStore, Settled, Store, TransactionalStore, TwinStore
from .store.instrumented import instrument
from .transitions import Transition

_log = logging.getLogger("jobq")

LEASE = 30.0  # seconds a claim holds a job before a rescuer may take it back
UNFENCED_TRIES = 5  # reads of a job an unfenced fail makes while its row keeps changing
MAX_LOST_LEASES = 3  # a job whose worker was lost this many times fails for good
#: Seconds a claim without a lease (k-msg's, a script's) may hold a job,
#: counted from when a rescuer first sees it, before it is taken back.
FOREIGN_CLAIM_TIMEOUT = 900.0


class Queue(RescueVerbs, SteeringVerbs, AdminVerbs):
    """A job queue on one store. Use :func:`jobq.connect` or a backend class
    (:class:`jobq.MemoryQueue`, :class:`jobq.SQLiteQueue`) to make one.

    Options (all keyword-only):

    - ``clock``: where "now" comes from (default: the system clock).
    - ``lease``: seconds a ``dequeue`` claim lasts unless renewed (default 30).
    - ``max_payload_bytes``: largest encoded payload accepted (default 1 MiB).
    - ``max_lost_leases``: lost workers after which a job fails for good (default 3).
    - ``foreign_claim_timeout``: seconds a job held without a lease by
      another writer (k-msg's workers, a script) may stay ``processing``,
      from when a rescuer first sees it, before it is taken back as
      abandoned (default 900).
    """

    store: Store

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock | None = None,
        lease: float = LEASE,
        max_payload_bytes: int = codec.MAX_PAYLOAD_BYTES,
        max_lost_leases: int = MAX_LOST_LEASES,
        foreign_claim_timeout: float = FOREIGN_CLAIM_TIMEOUT,
        worker_id: str | None = None,
    ) -> None:
        if not (isinstance(lease, (int, float)) and lease > 0):
            raise InvalidOption(f"lease must be a positive number of seconds, not {lease!r}")
        if not (isinstance(max_payload_bytes, int) and max_payload_bytes > 0):
            raise InvalidOption(f"max_payload_bytes must be a positive int, not {max_payload_bytes!r}")
        if not (isinstance(max_lost_leases, int) and max_lost_leases >= 1):
            raise InvalidOption(f"max_lost_leases must be an int >= 1, not {max_lost_leases!r}")
        if (
            isinstance(foreign_claim_timeout, bool)
            or not isinstance(foreign_claim_timeout, (int, float))
            or not 0 < foreign_claim_timeout < math.inf
        ):
            raise InvalidOption(
                f"foreign_claim_timeout must be a positive finite number of seconds, not {foreign_claim_timeout!r}"
            )
        self.store = instrument(store)  # every verb timed, for the metrics (store/instrumented.py)
        self.clock: Clock = clock or SYSTEM_CLOCK
        # A store with a clock of its own (PostgreSQL's) uses it unless the
        # caller injected one, so workers with skewed clocks agree on "now".
        if isinstance(store, ClockedStore):
            store.use_clock(self.clock)
        self.lease = float(lease)
        self.max_payload_bytes = max_payload_bytes
        self.max_lost_leases = max_lost_leases
        self.foreign_claim_timeout = float(foreign_claim_timeout)
        self.worker_id = worker_id or default_worker_id()
        self._listeners: list[Callable[[], None]] = []
        self._cancel_listeners: list[Callable[[str], None]] = []
        self._next_rescue_ms = 0
        self._ids = IdSequence()
        self._finishes = Finishes(self.store)

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
        """Now on the queue's clock, in epoch ms (floored, as k-msg's ``Date.now()``)."""
        return now_ms(self.clock)

    def _to_job(self, record: JobRecord, now_ms: int | None = None) -> Job[Any]:
        return to_job(record, self.now_ms() if now_ms is None else now_ms)

    def _lenient_job(self, record: JobRecord) -> Job[Any]:
        """For reading: a damaged row still shows, with ``None`` in place of
        JSON that cannot be decoded and defaults in place of columns that
        cannot be read (:func:`jobq.job.lenient_record`)."""
        try:
            return self._to_job(record)
        except CorruptJob:
            return self._to_job(lenient_record(record))

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
        return self._records([spec], now_ms)[0]

    def _records(self, specs: Sequence[NewJob], now_ms: int) -> list[JobRecord]:
        return new_records(specs, now_ms, self._ids(now_ms, len(specs)), self.max_payload_bytes)

    # -- the verbs ---------------------------------------------------------

    async def enqueue(
        self,
        type: str,
        data: Any = None,
        *,
        priority: int | None = None,
        delay: float = 0,
        max_attempts: int | None = None,
        metadata: dict[str, Any] | None = None,
        queue: str | None = None,
        connection: Any = None,
        unique_key: str | None = None,
    ) -> Job[Any]:
        """Stores a new job and returns it (``DELAYED`` when ``delay > 0``).
        What it is not told comes from k-msg's queue defaults (priority 0, 3
        attempts, the default queue: :data:`jobq.newjobs.QUEUE_DEFAULTS`).
        ``connection``: see :meth:`enqueue_many`.

        ``unique_key``: while a job with this key is unfinished (waiting or
        running), enqueueing the key again stores nothing and returns that
        job, with ``job.deduplicated == True``. Once it finished (completed,
        failed or cancelled) the key is free again. The database enforces it,
        so concurrent producers in any number of processes store one job."""
        spec = QUEUE_DEFAULTS.job(
            type, data, priority=priority, delay=delay, max_attempts=max_attempts,
            metadata=metadata, queue=queue, unique_key=unique_key,
        )  # fmt: skip
        jobs = await self.enqueue_many([spec], connection=connection)
        return jobs[0]

    async def enqueue_many(self, jobs: Iterable[NewJob], *, connection: Any = None) -> list[Job[Any]]:
        """Stores several jobs in one transaction: all of them or, on bad
        input anywhere, none.

        ``connection`` (PostgreSQL only): the application's own psycopg
        connection (async, or plain under :func:`jobq.connect_sync`). The jobs
        are inserted inside the transaction it has open and not committed:
        they exist, and run, only if the application commits."""
        specs = list(jobs)
        if specs and hooks.active():  # tracing (jobq.otel): a span, its context in the metadata
            return await hooks.enqueue(specs, lambda changed: self._store_new(changed, connection))
        return await self._store_new(specs, connection)

    async def _store_new(self, specs: list[NewJob], connection: Any) -> list[Job[Any]]:
        now_ms = self.now_ms()
        records = self._records(specs, now_ms)
        if not records:
            return []
        if connection is not None:
            if not isinstance(self.store, TransactionalStore):
                raise InvalidOption(
                    f"connection= joins a PostgreSQL transaction; the {self.store.name} backend has none"
                )
            await self.store.insert_on(connection, records)
            # Workers learn of the jobs at commit, through the store.
            datetimes = Datetimes()
            return [new_job(r, datetimes) for r in records]
        if any(r.unique_key is not None for r in records):
            return await self._insert_unique(records)
        await self.store.insert(records)
        # A store on its own clock (PostgreSQL's) writes the times it stored
        # back into the records; each job's status is judged as of then.
        if any(r.process_at <= r.created_at for r in records):
            self._notify()
        datetimes = Datetimes()
        return [new_job(r, datetimes) for r in records]

    async def _insert_unique(self, records: list[JobRecord]) -> list[Job[Any]]:
        held = await self.store.insert_unique(records)
        jobs: list[Job[Any]] = []
        datetimes = Datetimes()
        for record, holder in zip(records, held, strict=True):
            if holder is None:
                jobs.append(new_job(record, datetimes))
            else:
                job = self._lenient_job(holder)
                job.deduplicated = True
                jobs.append(job)
        if any(h is None and r.process_at <= r.created_at for r, h in zip(records, held, strict=True)):
            self._notify()
        return jobs

    def validate(self, spec: NewJob) -> None:
        """Raises :class:`~jobq.InvalidJob` if ``spec`` would be refused by
        :meth:`enqueue_many`; stores nothing."""
        self._record(spec, self.now_ms())

    async def enqueue_for_slot(self, schedule: str, slot_ms: int, spec: NewJob) -> Job[Any] | None:
        """Enqueues ``spec`` for one slot of a recurring schedule, once across
        every process: in the store's transaction that moves the schedule's
        last slot forward to ``slot_ms``. Returns the job, or ``None`` when
        another process already took this slot (or it is the first slot this
        schedule is seen at, which only records it)."""
        now_ms = self.now_ms()
        record = self._record(spec, now_ms)
        if not await self.store.claim_cron_slot(schedule, slot_ms, record):
            return None
        self._notify()
        return self._to_job(record, now_ms)

    async def claim(
        self,
        limit: int = 1,
        *,
        queues: Sequence[str] | None = None,
        exclude_types: Collection[str] = (),
        lease: float | None = None,
        owner: str | None = None,
        rescue: bool = True,
        limits: Sequence[KeyLimit] = (),
    ) -> list[Job[Any]]:
        """Claims up to ``limit`` ready jobs in one transaction, in dequeue
        order. A job whose stored JSON cannot be decoded is failed for good
        with an error saying so, and skipped. With ``rescue`` (the default),
        expired leases are swept first, at most once a second; a processor
        sweeps on its own schedule instead. ``limits``: per-key limits
        (:class:`jobq.KeyLimit`) the claim respects, counted in the store."""
        now_ms = self.now_ms()
        if rescue and now_ms >= self._next_rescue_ms:
            await self.rescue_expired()
        request = self._claim_request(now_ms, limit, queues, exclude_types, lease, owner, limits)
        records = await self.store.claim(request)
        return await self._claimed_jobs(records, now_ms)

    async def complete_and_claim(
        self,
        completions: Sequence[tuple[Job[Any], Any]],
        limit: int,
        *,
        queues: Sequence[str] | None = None,
        exclude_types: Collection[str] = (),
        lease: float | None = None,
        owner: str | None = None,
        limits: Sequence[KeyLimit] = (),
    ) -> tuple[list[JobqError | None], list[Job[Any]]]:
        """:meth:`complete_many` then :meth:`claim` (without the sweep), in
        one transaction where the store allows: a worker finishing a batch
        and taking the next pays for one commit. Returns the completions'
        outcomes (as :meth:`complete_many`) and the claimed jobs."""
        return await self.settle_and_claim(
            self._completions(completions), limit, queues=queues, exclude_types=exclude_types,
            lease=lease, owner=owner, limits=limits,
        )  # fmt: skip

    async def settle_and_claim(
        self,
        settling: Sequence[Transition],
        limit: int,
        *,
        queues: Sequence[str] | None = None,
        exclude_types: Collection[str] = (),
        lease: float | None = None,
        owner: str | None = None,
        limits: Sequence[KeyLimit] = (),
        lost_below: int | None = None,
        lost_from: int | None = None,
        exclude_queues: Collection[str] = (),
        synced: bool = True,
    ) -> tuple[list[JobqError | None], list[Job[Any]]]:
        """:meth:`settle` then :meth:`claim` (without the sweep), in one
        transaction where the store allows. Returns each transition's error
        (or ``None``) and the claimed jobs. ``lost_below`` / ``lost_from``:
        only jobs whose worker was lost fewer / at least that many times.
        ``exclude_queues``: named queues not to take from (paused ones).
        ``synced=False``: where commits and syncs can be apart (SQLite at
        durability "full": ``store.syncs_apart``), return before the settled
        transitions are synced; the caller awaits ``store.sync()`` before it
        reports them."""
        now_ms = self.now_ms()
        request = self._claim_request(
            now_ms, limit, queues, exclude_types, lease, owner, limits, lost_below, lost_from, exclude_queues,
            settle_synced=synced,
        )  # fmt: skip
        settled, records = await self.store.settle_and_claim(settling, request)
        return self._settled(settling, settled), await self._claimed_jobs(records, now_ms)

    async def settle(self, settling: Sequence[Transition]) -> list[JobqError | None]:
        """Writes transitions decided by their caller (see
        :mod:`jobq.transitions`) in one transaction; returns, per transition,
        ``None`` or the error (``LeaseLost``, ``JobNotFound``) it alone met."""
        if not settling:
            return []
        return self._settled(settling, await self.store.settle(settling, now_ms=self.now_ms()))

    def _settled(self, settling: Sequence[Transition], settled: Sequence[Settled]) -> list[JobqError | None]:
        """Errors per transition; wakes this process's workers when a job
        written back to waiting is due at once."""
        errors = [item if isinstance(item, JobqError) else None for item in settled]
        if any(
            error is None and t.status == "pending" and not t.delay_ms
            for t, error in zip(settling, errors, strict=True)
        ):
            self._notify()
        return errors

    async def _settle_one(self, transition: Transition) -> JobRecord:
        """Writes one transition; returns the job as stored after, or raises
        the error it met."""
        (settled,) = await self.store.settle([transition], now_ms=self.now_ms(), returning=True)
        if isinstance(settled, JobqError):
            raise settled
        assert settled is not None
        self._settled([transition], [settled])
        return settled

    def _claim_request(
        self,
        now_ms: int,
        limit: int,
        queues: Sequence[str] | None,
        exclude_types: Collection[str],
        lease: float | None,
        owner: str | None,
        limits: Sequence[KeyLimit],
        lost_below: int | None = None,
        lost_from: int | None = None,
        exclude_queues: Collection[str] = (),
        settle_synced: bool = True,
    ) -> ClaimRequest:
        codec.check_names(queues, "queues")
        codec.check_names(exclude_types, "exclude_types")
        codec.check_names(exclude_queues, "exclude_queues")
        return ClaimRequest(
            limit=limit,
            now_ms=now_ms,
            lease_until_ms=now_ms + to_ms(self.lease if lease is None else lease),
            token=secrets.token_hex(8),
            owner=owner or self.worker_id,
            queues=queues,
            exclude_types=exclude_types,
            limits=limits,
            lost_below=lost_below,
            lost_from=lost_from,
            exclude_queues=exclude_queues,
            settle_synced=settle_synced,
        )

    async def _claimed_jobs(self, records: list[JobRecord], now_ms: int) -> list[Job[Any]]:
        """Decodes claimed rows; one that cannot be read as a job (stored JSON
        that cannot be decoded, a column of the wrong type) is failed for
        good with an error saying so, and skipped: the others run."""
        jobs: list[Job[Any]] = []
        corrupt: list[Transition] = []
        datetimes = Datetimes()
        for record in records:
            try:
                job = to_job(record, now_ms, datetimes)
                if not runnable_times(record):
                    raise unreadable(record) or CorruptJob(record.id, "a time is out of range")
                jobs.append(job)
            except CorruptJob as exc:
                corrupt.append(transitions.unreadable(record, str(exc), held=True))
        if corrupt:
            try:
                await self.store.settle(corrupt, now_ms=now_ms)
            except JobqError as exc:
                # The good jobs of the claim run all the same; a bad one's
                # lease runs out, and the rescuer fails it.
                _log.warning("could not fail %d unreadable jobs (%s)", len(corrupt), exc)
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
            if not codec.storable_id(job):
                raise JobNotFound(job)
            return job, None
        raise TypeError(f"expected a job id or a jobq.Job, not {type(job).__name__}")

    async def complete(self, job: str | Job[Any], result: Any = None) -> None:
        """Marks the job completed and keeps ``result``. Given the ``Job`` from
        ``dequeue``, raises :class:`~jobq.LeaseLost` if that claim is gone."""
        (error,) = await self.settle(self._completions([(job, result)]))
        if error is not None:
            raise error

    async def complete_many(self, items: Sequence[tuple[str | Job[Any], Any]]) -> list[JobqError | None]:
        """Completes several jobs in one transaction: ``(job, result)`` pairs,
        each fenced or not as in :meth:`complete`. Returns, per item, ``None``
        or the error (``LeaseLost``, ``JobNotFound``) that item alone met."""
        return await self.settle(self._completions(items))

    def _completions(self, items: Sequence[tuple[str | Job[Any], Any]]) -> list[Transition]:
        """``(job, result)`` pairs as transitions to ``completed``."""
        done = []
        for job, result in items:
            job_id, token = self._target(job)
            done.append(transitions.completed(job_id, token, codec.encode_result(result)))
        return done

    async def fail(
        self, job: str | Job[Any], error: BaseException | str, retry: RetryDirective | None = None
    ) -> Job[Any]:
        """Counts a failed attempt; retries after ``retry.delay`` seconds when
        ``retry`` is enabled and attempts are left, else fails for good.
        Returns the job as stored afterwards.

        Given the ``Job`` from ``dequeue``, fenced by its claim. Given an id,
        it acts on the job whatever holds it, deciding on the row as read; a
        completed job is left alone."""
        job_id, token = self._target(job)
        retry_delay_ms = None
        if retry is not None and retry.enabled:
            retry_delay_ms = to_ms(codec.check_delay(retry.delay or 0, "retry delay"))
        text, kind = codec.error_text(error), codec.error_type(error)
        if isinstance(job, Job) and token is not None:
            transition = transitions.failed_attempt(
                job_id, token=token, attempts=job.attempts, max_attempts=job.max_attempts,
                error=text, retry_delay_ms=retry_delay_ms, error_type=kind, run=transitions.attempt_of(job),
                traceback=format_traceback(error if isinstance(error, BaseException) else None),
            )  # fmt: skip
            return self._lenient_job(await self._settle_one(transition))
        for _ in range(UNFENCED_TRIES):
            record = await self.store.get(job_id)
            if record is None:
                raise JobNotFound(job_id)
            if record.status == "completed":
                return self._lenient_job(record)
            transition = transitions.failed_attempt(
                job_id, token=None, attempts=record.attempts, max_attempts=record.max_attempts,
                error=text, retry_delay_ms=retry_delay_ms, expect_status=record.status, error_type=kind,
                run=transitions.ran(record), traceback=format_traceback(error if isinstance(error, BaseException) else None),
            )  # fmt: skip
            try:
                return self._lenient_job(await self._settle_one(transition))
            except LeaseLost:
                continue  # the row changed since it was read: decide again
        raise StoreUnavailable(f"job {job_id!r} kept changing; its failure was not recorded")

    async def release(self, job: Job[Any], *, delay: float | None = None) -> None:
        """Gives a claimed job back without spending an attempt: it runs again
        after ``delay`` seconds, or at once (in its old place in line)."""
        delay_ms = None if delay is None else to_ms(codec.check_delay(delay))
        job_id, token = self._target(job)
        if token is None:
            raise TypeError("release needs the Job returned by dequeue, not an id")
        (error,) = await self.settle([transitions.released(job_id, token, delay_ms, transitions.attempt_of(job))])
        if error is not None:
            raise error

    async def extend_leases(self, jobs: Sequence[Job[Any]], lease: float | None = None) -> set[str]:
        """Renews the claims on ``jobs`` for another ``lease`` seconds; returns
        the ids of those whose claim is gone."""
        pairs = [(j.id, j.lease_token) for j in jobs if j.lease_token is not None]
        until = self.now_ms() + to_ms(self.lease if lease is None else lease)
        return await self.store.extend_leases(pairs, until_ms=until)

    async def peek(self, *, queues: Sequence[str] | None = None) -> Job[Any] | None:
        """The job ``dequeue`` would return, without claiming it."""
        codec.check_names(queues, "queues")
        record = await self.store.peek(now_ms=self.now_ms(), queues=queues)
        return None if record is None else self._lenient_job(record)

    async def size(self, *, queues: Sequence[str] | None = None) -> int:
        """How many jobs are ready to run now."""
        codec.check_names(queues, "queues")
        return await self.store.count_ready(now_ms=self.now_ms(), queues=queues)

    async def next_due(self, *, queues: Sequence[str] | None = None) -> float | None:
        """Epoch seconds at which the earliest waiting job is due, or ``None``."""
        codec.check_names(queues, "queues")
        due = await self.store.next_due_ms(queues=queues)
        if due is None:
            return None
        if isinstance(due, (int, float)) and not isinstance(due, bool) and due <= MAX_TIME_MS:
            return due / 1000
        # The first in line cannot be a time (written by another program):
        # fail such jobs, so they hold up nothing.
        await self.fail_unreadable_waiting()
        return None

    async def get_job(self, job_id: str) -> Job[Any] | None:
        """Any job by id, whatever its status."""
        if not codec.storable_id(job_id):
            return None
        record = await self.store.get(job_id)
        return None if record is None else self._lenient_job(record)

    async def remove(self, job_id: str) -> bool:
        """Deletes the job; ``True`` if it existed."""
        if not codec.storable_id(job_id):
            return False
        return await self.store.remove(job_id)

    async def clear(self) -> None:
        await self.store.clear()

    def twin(self) -> Queue | None:
        """A queue on the same jobs through connections of its own, for use
        from another thread's event loop (see
        :class:`~jobq.store.base.TwinStore`), or ``None`` when the store
        cannot open one. Same clock, lease and worker id."""
        if not isinstance(self.store, TwinStore):
            return None
        return Queue(
            self.store.twin(), clock=self.clock, lease=self.lease, max_payload_bytes=self.max_payload_bytes,
            max_lost_leases=self.max_lost_leases, worker_id=self.worker_id,
            foreign_claim_timeout=self.foreign_claim_timeout,
        )  # fmt: skip

    async def close(self) -> None:
        await self._finishes.close()
        await self.store.close()
