"""The storage seam: one protocol of domain verbs that every backend implements.

Signatures speak of jobs, not connections or cursors. Times are integer epoch
milliseconds chosen by the caller's clock; JSON arrives already encoded. Each
backend implements a verb with its own atomic primitive (a lock on the
in-memory heaps, ``UPDATE ... RETURNING`` in one ``BEGIN IMMEDIATE``
transaction on SQLite), and ``tests/contract`` runs the same suite against
every backend.

Stores decide nothing about a job's fate: a job leaves ``processing`` by a
:class:`~jobq.transitions.Transition` its caller decided, which the store
writes only while its fence holds (:meth:`WorkerStore.settle`). Fencing: a
verb given a claim ``token`` acts only while the job is ``processing`` under
that token, and reports :class:`~jobq.errors.LeaseLost` otherwise.

The seam is two protocols: :class:`WorkerStore` (the worker's hot path and
idle wait) and :class:`AdminStore` (operators and inspection); a backend is
both (:class:`Store`). Optional capabilities are protocols of their own
(:class:`TransactionalStore`, :class:`ClockedStore`, :class:`TwinStore`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ..clock import Clock
from ..errors import JobNotFound, JobqError, LeaseLost, NotRetryable
from ..history import AttemptRecord, WorkerRecord
from ..job import JobRecord
from ..keylimits import KeyLimit
from ..transitions import Transition


@dataclass(frozen=True, slots=True)
class ClaimRequest:
    """What a claim takes: up to ``limit`` ready jobs (due at ``now_ms``),
    leased to ``owner`` under ``token`` until ``lease_until_ms``."""

    limit: int
    now_ms: int
    lease_until_ms: int
    token: str
    owner: str
    #: The named queues to take from (``None``: all).
    queues: Sequence[str] | None = None
    #: Job types not to take (their circuit is open).
    exclude_types: Collection[str] = ()
    #: Named queues not to take from (paused).
    exclude_queues: Collection[str] = ()
    #: Per-key limits (see :mod:`jobq.keylimits`), counted in the claim's transaction.
    limits: Sequence[KeyLimit] = ()
    #: Only jobs whose worker was lost fewer times than this (``None``: any).
    lost_below: int | None = None
    #: Only jobs whose worker was lost at least this many times (``None``: any).
    lost_from: int | None = None
    #: ``False``: :meth:`WorkerStore.settle_and_claim` may return before
    #: what it settled is durable, and the caller awaits
    #: :meth:`WorkerStore.sync` before it tells anyone (see
    #: :attr:`WorkerStore.syncs_apart`).
    settle_synced: bool = True


@dataclass(frozen=True, slots=True)
class Search:
    """More filters of :meth:`AdminStore.list_jobs`, all of which a job must
    pass: its id among ``ids``, its ``unique_key``, and ``text`` (matched
    without regard to case) found in its payload as stored (JSON) or in its
    error. Every store matches as :meth:`matches` does."""

    ids: Sequence[str] | None = None
    unique_key: str | None = None
    text: str | None = None

    def matches(self, record: JobRecord) -> bool:
        if self.ids is not None and record.id not in self.ids:
            return False
        if self.unique_key is not None and record.unique_key != self.unique_key:
            return False
        if self.text is not None:
            needle = self.text.lower()
            return needle in str(record.data).lower() or needle in (record.error or "").lower()
        return True


#: Per transition: ``None`` (or, when asked, the record as stored after) if
#: it was written; the error (``JobNotFound``, ``LeaseLost``) that it alone met.
Settled = JobRecord | JobqError | None


@runtime_checkable
class WorkerStore(Protocol):
    """The verbs of a worker's hot path, and the reads its idle wait needs."""

    #: What the backend is called in messages and metrics ("memory", "sqlite").
    name: str

    async def insert(self, records: Sequence[JobRecord]) -> None:
        """Stores new jobs, all or none. A store that keeps time by its own
        clock (PostgreSQL's) writes the ``created_at`` and ``process_at`` it
        stored back into ``records``."""
        ...

    async def claim(self, request: ClaimRequest) -> list[JobRecord]:
        """Atomically moves up to ``request.limit`` ready jobs to
        ``processing``, in dequeue order (priority desc, process_at asc,
        created_at asc), leased as the request says.

        With ``limits`` (see :mod:`jobq.keylimits`), candidates are taken
        round-robin over their keys and only while every limit leaves room,
        counted in the same transaction; the starts are logged for rate
        limits."""
        ...

    async def settle(
        self, transitions: Sequence[Transition], *, now_ms: int, returning: bool = False
    ) -> list[Settled]:
        """Writes each :class:`~jobq.transitions.Transition` whose fence holds,
        in one transaction, at ``now_ms`` (the store's own clock, if it keeps
        one). Decides nothing: the caller chose the target state. A
        transition with an ``outcome`` also adds its attempt's row to the
        history (:meth:`AdminStore.attempts`), in the same transaction,
        ended at ``now_ms``. Returns one
        :data:`Settled` per transition, in order; with ``returning``, the
        record as stored after the write. Wakes idle workers when a job
        waits to run again."""
        ...

    async def settle_and_claim(
        self, transitions: Sequence[Transition], request: ClaimRequest
    ) -> tuple[list[Settled], list[JobRecord]]:
        """:meth:`settle` (at ``request.now_ms``), then :meth:`claim`; returns
        both outcomes. A worker's hot path: a store that can should do both in
        one transaction, so finishing a batch and taking the next cost one
        commit. With ``request.settle_synced`` false, a store whose
        :attr:`syncs_apart` is true returns once the transaction is
        committed, before it is synced: the claimed jobs start while the
        disk syncs, and the caller reports the settled outcomes after
        :meth:`sync`."""
        ...

    @property
    def syncs_apart(self) -> bool:
        """Whether a commit and its sync can be apart (SQLite at durability
        "full"): then :meth:`settle_and_claim` may leave its sync to
        :meth:`sync`. Elsewhere a commit is durable when it returns."""
        ...

    async def sync(self) -> None:
        """Makes every transaction this store committed so far durable (a
        no-op where commits are durable when they return)."""
        ...

    async def extend_leases(self, leases: Sequence[tuple[str, str]], *, until_ms: int) -> set[str]:
        """Renews the leases of ``(job_id, token)`` pairs; returns the ids
        whose claim is gone."""
        ...

    async def expired(self, *, now_ms: int, limit: int, foreign_timeout_ms: int) -> list[JobRecord]:
        """Up to ``limit`` processing jobs whose claim ran out by ``now_ms``
        (:func:`~jobq.transitions.ran_out`: a lease that ended, its worker
        lost; a foreign claim seen ``foreign_timeout_ms`` ago), oldest
        ``process_at`` first, unchanged: the rescuer decides what becomes of
        each (:func:`~jobq.transitions.rescued`) and settles it. Foreign
        claims not seen before are marked seen at ``now_ms``
        (:func:`~jobq.transitions.see_foreign`), which starts their timeout."""
        ...

    async def peek(self, *, now_ms: int, queues: Sequence[str] | None = None) -> JobRecord | None:
        """The job ``claim`` would take first, unchanged."""
        ...

    async def count_ready(self, *, now_ms: int, queues: Sequence[str] | None = None) -> int:
        """How many jobs are ready to run at ``now_ms``."""
        ...

    async def next_due_ms(self, *, queues: Sequence[str] | None = None) -> int | None:
        """The earliest ``process_at`` of a waiting job, or ``None``."""
        ...

    async def get(self, job_id: str) -> JobRecord | None: ...

    async def paused_queues(self) -> dict[str, int]:
        """The paused named queues of this job table, each with when it was
        paused (epoch ms). Workers read it every
        :data:`~jobq.processor.producer.PAUSE_CHECK_INTERVAL` and leave those
        queues out of their claims."""
        ...

    async def cancel_requested(self, job_ids: Sequence[str]) -> set[str]:
        """Which of these processing jobs have a cancel request."""
        ...

    async def set_progress(
        self, job_id: str, *, token: str | None, progress: float, message: str | None
    ) -> None:
        """Stores a job's progress. Raises ``JobNotFound`` or ``LeaseLost``."""
        ...

    async def insert_unique(self, records: Sequence[JobRecord]) -> list[JobRecord | None]:
        """Stores new jobs, all or none, like :meth:`insert`, except that a
        record whose ``unique_key`` an unfinished (pending or processing) job
        already holds is not stored: its slot in the answer is that job, as
        read in the same transaction (``None`` for records stored). Enforced
        by a unique index over unfinished rows, not by a read-then-write."""
        ...

    async def claim_cron_slot(self, name: str, slot_ms: int, job: JobRecord) -> bool:
        """Compare-and-set on the last slot run by the cron schedule ``name``:
        if the stored slot is older than ``slot_ms``, stores ``slot_ms`` and
        inserts ``job`` in the same transaction, and returns ``True``. Any
        number of processes may race for one slot; exactly one wins. A
        schedule seen for the first time stores ``slot_ms`` without
        inserting the job (nothing was missed) and returns ``False``."""
        ...

    async def heartbeat(self, worker: WorkerRecord, *, forget_before_ms: int) -> None:
        """Stores (or refreshes) a worker's row in the registry, and deletes
        the rows of workers last heard from before ``forget_before_ms``."""
        ...

    async def unregister(self, worker_id: str) -> None:
        """Deletes a worker's row (a graceful stop); an unknown id is no error."""
        ...

    async def wait_for_change(self, timeout: float) -> bool:
        """Returns when another process may have changed the store, or after
        ``timeout`` seconds. ``True`` when the change was announced as new
        work (PostgreSQL's notifications, SQLite's wake file), so a waiting
        worker claims at once; ``False`` after a timeout or a change that may
        be anything (a commit seen by polling), after which it first checks,
        with a read, that a job is ready. In-process changes are signalled by
        the queue."""
        ...

    async def wait_for_finish(self, timeout: float) -> bool:
        """Returns ``True`` when a job may have reached a final status since
        the previous call (a completion, failure or cancellation committed,
        by any process), ``False`` after ``timeout`` seconds. One caller at a
        time: the queue's result waiter, which wakes every job's waiters."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class AdminStore(Protocol):
    """The verbs of operators and inspection: the CLI, the dashboard, the
    queue's admin verbs."""

    name: str

    async def get(self, job_id: str) -> JobRecord | None: ...

    async def cancel(self, job_id: str, *, now_ms: int) -> tuple[bool, JobRecord]:
        """An operator's cancel; returns whether anything changed and the job
        after. A waiting job becomes ``cancelled``; a processing job gets
        ``cancel_requested_at`` (its processor stops it, and settles it
        ``cancelled``); a finished job is left alone (``False``). Unknown id:
        ``JobNotFound``."""
        ...

    async def retry(self, job_id: str, *, now_ms: int) -> JobRecord:
        """A failed or cancelled job back to ``pending`` now, attempts 0,
        error kept. Raises ``JobNotFound``, or ``NotRetryable`` for any other
        status or when an unfinished job now holds its ``unique_key``."""
        ...

    async def remove(self, job_id: str) -> bool:
        """Deletes a job, and its attempt history."""
        ...

    async def clear(self) -> None:
        """Deletes every job, and their attempt history."""
        ...

    async def attempts(self, job_id: str) -> list[AttemptRecord]:
        """The job's attempt history, oldest first (empty for an unknown id)."""
        ...

    async def workers(self) -> list[WorkerRecord]:
        """The worker registry, by start time."""
        ...

    async def pause_queue(self, queue: str, *, now_ms: int) -> bool:
        """Marks a named queue paused (at ``now_ms``); ``False`` if it already
        was. Its jobs stay where they are, and new ones may still arrive."""
        ...

    async def resume_queue(self, queue: str) -> bool:
        """Unmarks a paused queue and wakes idle workers; ``False`` if it was
        not paused."""
        ...

    async def paused_queues(self) -> dict[str, int]:
        """As :meth:`WorkerStore.paused_queues`."""
        ...

    async def delete_terminal(self, statuses: Collection[str], *, before_ms: int | None = None) -> int:
        """Deletes jobs in those stored statuses (finished before
        ``before_ms`` when given), with their attempt history; returns how many."""
        ...

    async def count_terminal(self, statuses: Collection[str], *, before_ms: int | None = None) -> int:
        """How many jobs :meth:`delete_terminal` would delete, deleting none."""
        ...

    async def count_by_status(self, *, now_ms: int) -> dict[str, int]:
        """Job counts keyed by public status (delayed apart from pending)."""
        ...

    async def list_jobs(
        self,
        *,
        statuses: Collection[str] | None,
        types: Collection[str] | None,
        queues: Collection[str] | None,
        limit: int,
        offset: int,
        newest_first: bool,
        now_ms: int,
        search: Search | None = None,
        after: tuple[int, str] | None = None,
    ) -> tuple[list[JobRecord], int]:
        """A page of jobs by created_at (ties by id), and how many match.
        ``statuses`` are public ones: ``delayed`` and ``pending`` apart;
        ``search`` adds the filters of :class:`Search`. ``after`` (a job's
        ``(created_at, id)``): the page holds only jobs past it in the
        page's order (then ``offset`` counts from there); the count ignores it."""
        ...

    async def summary(
        self, *, now_ms: int, statuses: Collection[str] | None = None
    ) -> list[tuple[str, str, str, int]]:
        """(queue, type, public status, count) for every combination present
        (among jobs in the stored ``statuses``, when given)."""
        ...

    async def oldest_ready(self, *, now_ms: int, queue: str | None = None) -> JobRecord | None:
        """The ready job (public status ``pending`` at ``now_ms``; of
        ``queue`` if given) due the longest: earliest ``process_at``, then
        ``created_at``, then ``id``. ``None`` when none is ready."""
        ...

    async def outcomes(
        self, *, since_ms: int, bucket_ms: int, until_ms: int, queue: str | None = None
    ) -> list[tuple[int, int, int]]:
        """(bucket start in ms, completed, failed) for buckets of
        ``bucket_ms`` (rows for buckets without any may be left out), from
        the attempt history: attempts ended from ``since_ms`` (a bucket's
        start) to the end of the bucket holding ``until_ms`` (of jobs in
        ``queue`` if given), a failure
        being any of :data:`~jobq.figures.FAILED_OUTCOMES`. A retried job
        keeps its failed attempts here. Aggregated by the store."""
        ...

    async def durations(self, *, since_ms: int, queue: str | None = None) -> list[tuple[str, str, int, int]]:
        """(job type, measure, bucket bound in ms, count) of the attempts
        ended at or after ``since_ms`` (of jobs in ``queue`` if given):
        ``run``, each attempt's start to end; ``wait``, a job's creation to
        its first attempt's start; counted in the buckets of
        :data:`~jobq.figures.DURATION_BOUNDS_MS` (see
        :func:`~jobq.figures.bound_of`). Aggregated by the store."""
        ...

    async def cron_slots(self) -> dict[str, int]:
        """Each cron schedule this job table has run, with its last slot
        (epoch ms; see :meth:`WorkerStore.claim_cron_slot`)."""
        ...

    async def cron_jobs(self, name: str, *, limit: int) -> list[JobRecord]:
        """Up to ``limit`` jobs the cron schedule ``name`` enqueued (their
        metadata's :data:`~jobq.processor.cron.CRON_KEY`), newest first."""
        ...


@runtime_checkable
class Store(WorkerStore, AdminStore, Protocol):
    """A backend: the worker's verbs and the operators' verbs."""


@runtime_checkable
class TransactionalStore(Protocol):
    """A store that can insert inside a transaction the application holds
    (``enqueue(connection=...)``): PostgreSQL's."""

    async def insert_on(self, connection: Any, records: Sequence[JobRecord]) -> None:
        """Inserts ``records`` on ``connection`` inside its open transaction,
        without committing; workers learn of them at commit."""
        ...


@runtime_checkable
class ClockedStore(Protocol):
    """A store with a clock of its own (PostgreSQL's), which it uses for
    "now" unless the caller injected one, so workers with skewed clocks
    agree."""

    def use_clock(self, clock: Clock) -> None: ...


@runtime_checkable
class TwinStore(Protocol):
    """A store that can open a twin of itself: the same jobs, through
    connections of its own, for use from another thread's event loop (a
    processor renews leases from a thread of its own, so a blocked event
    loop does not stop them)."""

    def twin(self) -> Store:
        """A new store object on the same database (the in-memory store,
        which holds its jobs in this process, returns itself). Its caller
        closes it, unless it is the store itself."""
        ...


#: The statuses an operator may retry from (:meth:`AdminStore.retry`).
RETRYABLE = ("failed", "cancelled")


def missing(job_id: str, record: JobRecord | None) -> JobqError:
    """Why a write fenced on a job touched no row, from the job as read
    after (``None``: there is none)."""
    if record is None:
        return JobNotFound(job_id)
    return LeaseLost(job_id, f"the job is now {record.status}")


def not_retryable(job_id: str, record: JobRecord | None) -> JobqError:
    """Why :meth:`AdminStore.retry` changed nothing, from the job as read after."""
    if record is None:
        return JobNotFound(job_id)
    return NotRetryable(f"job {job_id!r} is {record.status}; only failed or cancelled jobs can be retried")


def unique_key_taken(job_id: str) -> NotRetryable:
    """A job retried while another unfinished job holds its unique key."""
    return NotRetryable(f"job {job_id!r} cannot be retried: another unfinished job holds its unique key")


def dequeue_order(record: JobRecord) -> tuple[int, int, int]:
    """The order claimed jobs are handed out in (``RETURNING`` gives none):
    priority descending, then the time each was due, then creation."""
    return (-record.priority, record.scheduled_at or 0, record.created_at)


def claimed(rows: Sequence[Sequence[Any]]) -> list[JobRecord]:
    """Claimed rows as records, in :func:`dequeue_order` (``RETURNING``
    gives no order). A row another program wrote with text where a number
    belongs still comes back (in an order as close as can be): the caller
    fails it alone, and the others of the claim run."""
    records = [JobRecord(*row) for row in rows]
    try:
        records.sort(key=dequeue_order)
    except TypeError:
        records.sort(key=_lenient_order)
    return records


def _lenient_order(record: JobRecord) -> tuple[float, float, float]:
    def number(value: Any) -> float:
        return value if isinstance(value, (int, float)) else 0

    return (-number(record.priority), number(record.scheduled_at), number(record.created_at))


async def settle_then_claim(
    store: WorkerStore, transitions: Sequence[Transition], request: ClaimRequest
) -> tuple[list[Settled], list[JobRecord]]:
    """:meth:`WorkerStore.settle_and_claim` as two transactions, for stores
    (or cases) that cannot do both in one: the transitions first, so a claim
    that fails never undoes them."""
    settled = await store.settle(transitions, now_ms=request.now_ms) if transitions else []
    try:
        claimed = await store.claim(request)
    except JobqError:
        if not transitions:
            raise
        # The transitions are stored: report them; the next claim meets the
        # error again and the caller backs off then.
        return settled, []
    return settled, claimed
