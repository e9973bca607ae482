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
from typing import Protocol, runtime_checkable

from ..job import JobRecord


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
    ) -> list[JobRecord]:
        """Atomically moves up to ``limit`` ready jobs to ``processing``, in
        dequeue order (priority desc, process_at asc, created_at asc), leased
        to ``owner`` under ``token`` until ``lease_until_ms``."""
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
        self, *, now_ms: int, max_lost: int, error: str
    ) -> list[JobRecord]:
        """Returns every processing job whose lease has expired to waiting,
        counting a failed attempt and a lost worker; a job out of attempts or
        lost ``max_lost`` times fails for good. Returns the rescued jobs as
        stored afterwards."""
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

    async def wait_for_change(self, timeout: float) -> None:
        """Returns when another process may have changed the store, or after
        ``timeout`` seconds. In-process changes are signalled by the queue."""
        ...

    async def close(self) -> None: ...
