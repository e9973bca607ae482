"""The storage seam: one protocol of domain verbs that every backend implements.

Signatures speak of jobs, not connections or cursors. Times are integer epoch
milliseconds chosen by the caller's clock; JSON arrives already encoded. Each
backend implements a verb with its own atomic primitive (a lock on the
in-memory heaps, ``UPDATE ... RETURNING`` in one ``BEGIN IMMEDIATE``
transaction on SQLite), and ``tests/contract`` runs the same suite against
every backend.

Fencing: a verb given a ``token`` acts only while the job is ``processing``
under that claim token, and raises :class:`~jobq.errors.LeaseLost` otherwise.
Given ``None`` it acts on the job whatever holds it.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, Protocol, runtime_checkable

from ..errors import JobqError
from ..job import JobRecord
from ..keylimits import KeyLimit


@runtime_checkable
class Store(Protocol):
    #: What the backend is called in messages and metrics ("memory", "sqlite").
    name: str

    async def insert(self, records: Sequence[JobRecord]) -> None:
        """Stores new jobs, all or none. A store that keeps time by its own
        clock (PostgreSQL's) writes the ``created_at`` and ``process_at`` it
        stored back into ``records``."""
        ...

    async def claim(
        self,
        *,
        limit: int,
        now_ms: int,
        lease_until_ms: int,
        token: str,
        owner: str,
        queues: Sequence[str] | None = None,
        exclude_types: Collection[str] = (),
        limits: Sequence[KeyLimit] = (),
    ) -> list[JobRecord]:
        """Atomically moves up to ``limit`` ready jobs to ``processing``, in
        dequeue order (priority desc, process_at asc, created_at asc), leased
        to ``owner`` under ``token`` until ``lease_until_ms``.

        With ``limits`` (see :mod:`jobq.keylimits`), candidates are taken
        round-robin over their keys and only while every limit leaves room,
        counted in the same transaction; the starts are logged for rate
        limits."""
        ...

    async def complete_and_claim(
        self,
        completions: Sequence[tuple[str, str | None, str | None]],
        *,
        completed_ms: int,
        limit: int,
        now_ms: int,
        lease_until_ms: int,
        token: str,
        owner: str,
        queues: Sequence[str] | None = None,
        exclude_types: Collection[str] = (),
        limits: Sequence[KeyLimit] = (),
    ) -> tuple[list[JobqError | None], list[JobRecord]]:
        """:meth:`complete_many` of ``completions`` (at ``completed_ms``),
        then :meth:`claim` with the other arguments; returns both outcomes.
        A worker's hot path: a store that can should do both in one
        transaction, so finishing a batch and taking the next cost one
        commit."""
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

    async def complete(
        self, job_id: str, *, token: str | None, result: str | None, now_ms: int
    ) -> None:
        """Marks the job completed. Raises ``JobNotFound`` or ``LeaseLost``."""
        ...

    async def complete_many(
        self, items: Sequence[tuple[str, str | None, str | None]], *, now_ms: int
    ) -> list[JobqError | None]:
        """Completes ``(job_id, token, result)`` items in one transaction, each
        as :meth:`complete` would; returns per item ``None`` or the error
        (``JobNotFound``, ``LeaseLost``) that item alone met."""
        ...

    async def fail(
        self,
        job_id: str,
        *,
        token: str | None,
        error: str,
        retry_at_ms: int | None,
        now_ms: int,
    ) -> JobRecord:
        """Counts a failed attempt. With ``retry_at_ms`` and attempts left the
        job waits until then; otherwise it fails for good. A completed job is
        left alone (unfenced). Returns the job as stored afterwards."""
        ...

    async def release(
        self, job_id: str, *, token: str, process_at_ms: int | None, now_ms: int
    ) -> None:
        """Returns a claimed job to waiting without spending an attempt; it
        runs again at ``process_at_ms`` (``None``: as soon as it was due)."""
        ...

    async def extend_leases(
        self, leases: Sequence[tuple[str, str]], *, until_ms: int
    ) -> set[str]:
        """Renews the leases of ``(job_id, token)`` pairs; returns the ids
        whose claim is gone."""
        ...

    async def rescue_expired(
        self, *, now_ms: int, max_lost: int, error: str, quarantine_error: str | None = None
    ) -> list[JobRecord]:
        """Returns every processing job whose lease has expired to waiting,
        counting a failed attempt and a lost worker; a job out of attempts or
        lost ``max_lost`` times fails for good. ``error`` (and, for a job lost
        ``max_lost`` times, ``quarantine_error`` when given) is stored with
        ``{owner}`` replaced by the lost worker. Returns the rescued jobs as
        stored afterwards."""
        ...

    async def claim_cron_slot(self, name: str, slot_ms: int, job: JobRecord) -> bool:
        """Compare-and-set on the last slot run by the cron schedule ``name``:
        if the stored slot is older than ``slot_ms``, stores ``slot_ms`` and
        inserts ``job`` in the same transaction, and returns ``True``. Any
        number of processes may race for one slot; exactly one wins. A
        schedule seen for the first time stores ``slot_ms`` without
        inserting the job (nothing was missed) and returns ``False``."""
        ...

    async def remove(self, job_id: str) -> bool: ...

    async def clear(self) -> None: ...

    async def delete_terminal(self, statuses: Collection[str], *, before_ms: int | None = None) -> int:
        """Deletes jobs in those stored statuses (finished before
        ``before_ms`` when given); returns how many."""
        ...

    async def count_by_status(self, *, now_ms: int) -> dict[str, int]:
        """Job counts keyed by public status (delayed apart from pending)."""
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

    # -- unique jobs, cancellation, progress, inspection ---------------------

    async def insert_unique(self, records: Sequence[JobRecord]) -> list[JobRecord | None]:
        """Stores new jobs, all or none, like :meth:`insert`, except that a
        record whose ``unique_key`` an unfinished (pending or processing) job
        already holds is not stored: its slot in the answer is that job, as
        read in the same transaction (``None`` for records stored). Enforced
        by a unique index over unfinished rows, not by a read-then-write."""
        ...

    async def cancel(
        self, job_id: str, *, token: str | None, now_ms: int, error: str | None = None
    ) -> tuple[bool, JobRecord]:
        """Cancels a job; returns whether anything changed and the job after.

        Unfenced (``token=None``): a waiting job becomes ``cancelled``; a
        processing job gets ``cancel_requested_at`` (its processor stops it);
        a finished job is left alone (``False``). Fenced: a processing job
        held under ``token`` becomes ``cancelled`` (``error`` stored when
        given), else ``LeaseLost``. Unknown id: ``JobNotFound``."""
        ...

    async def cancel_requested(self, job_ids: Sequence[str]) -> set[str]:
        """Which of these processing jobs have a cancel request."""
        ...

    async def cancel_expired(self, *, now_ms: int) -> list[JobRecord]:
        """Moves processing jobs with a cancel request whose lease expired
        (their processor is gone) to ``cancelled``; returns them."""
        ...

    async def retry(self, job_id: str, *, now_ms: int) -> JobRecord:
        """A failed or cancelled job back to ``pending`` now, attempts 0,
        error kept. Raises ``JobNotFound``, or ``NotRetryable`` for any other
        status or when an unfinished job now holds its ``unique_key``."""
        ...

    async def set_progress(
        self, job_id: str, *, token: str | None, progress: float, message: str | None
    ) -> None:
        """Stores a job's progress. Raises ``JobNotFound`` or ``LeaseLost``."""
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
    ) -> tuple[list[JobRecord], int]:
        """A page of jobs by created_at (ties by id), and how many match.
        ``statuses`` are public ones: ``delayed`` and ``pending`` apart."""
        ...

    async def summary(self, *, now_ms: int) -> list[tuple[str, str, str, int]]:
        """(queue, type, public status, count) for every combination present."""
        ...

    async def throughput(self, *, since_ms: int) -> list[tuple[int, int, int]]:
        """(minute start in ms, completed, failed) for minutes with any, from
        ``completed_at`` / ``failed_at`` at or after ``since_ms``."""
        ...

    async def close(self) -> None: ...


def dequeue_order(record: JobRecord) -> tuple[int, int, int]:
    """The order claimed jobs are handed out in (``RETURNING`` gives none):
    priority descending, then the time each was due, then creation."""
    return (-record.priority, record.scheduled_at or 0, record.created_at)


async def complete_then_claim(
    store: Store,
    completions: Sequence[tuple[str, str | None, str | None]],
    *,
    completed_ms: int,
    **claim: Any,
) -> tuple[list[JobqError | None], list[JobRecord]]:
    """:meth:`Store.complete_and_claim` as two transactions, for stores (or
    cases) that cannot do both in one: the completions first, so a claim
    that fails never undoes them."""
    outcomes = await store.complete_many(completions, now_ms=completed_ms) if completions else []
    try:
        claimed = await store.claim(**claim)
    except JobqError:
        if not completions:
            raise
        # The completions are stored: report them; the next claim meets the
        # error again and the caller backs off then.
        return outcomes, []
    return outcomes, claimed
