"""SQL text of the attempt history and the worker registry (see
:mod:`jobq.history`), both SQL stores' spelling through a
:class:`~jobq.store.sql.Dialect`, beside the job statements of :mod:`.sql`."""

from __future__ import annotations

from typing import Any

from ..history import ATTEMPT_FIELDS, WORKER_FIELDS
from ..transitions import Transition
from .sql import GIVEN, Dialect, SettleShape


def records_attempts(shape: SettleShape) -> bool:
    """Whether a batch of this shape adds rows to the attempt history."""
    return dict(shape).get("outcome", GIVEN) is not None


#: The columns of the attempts table a settle writes, in order.
ATTEMPT_COLUMNS = "job_id, attempt, worker, started_at, ended_at, outcome, error_type, error, traceback"


def attempt_values(t: Transition, now_ms: int) -> tuple[Any, ...]:
    """A transition's values for :func:`record_attempt_query`, ended at ``now_ms``."""
    return (t.job_id, t.attempt or 0, t.worker, now_ms, t.outcome, t.error_type, t.error, t.traceback)


def record_attempt_query(attempts: str, table: str) -> str:
    """Adds one history row from :func:`attempt_values` (numbered values),
    the attempt's start read from its job's row (a settle leaves it as it is)."""
    return (
        f"INSERT INTO {attempts} ({ATTEMPT_COLUMNS}) SELECT ?1, ?2, ?3, started_at, ?4, ?5, ?6, ?7, ?8"
        f" FROM {table} WHERE id = ?1"
    )


def attempts_query(d: Dialect, attempts: str) -> str:
    """A job's history (value ``id``), oldest first."""
    return f"SELECT {', '.join(ATTEMPT_FIELDS)} FROM {attempts} WHERE job_id = {d.value('id')} ORDER BY seq"


# -- the worker registry ---------------------------------------------------------


def heartbeat_query(d: Dialect, workers: str) -> str:
    """Stores a worker's row, or refreshes it (values named by field)."""
    fresh = ("heartbeat_at", "running", "done", "queues", "concurrency", "limits")
    return (
        f"INSERT INTO {workers} ({', '.join(WORKER_FIELDS)}) VALUES ({', '.join(map(d.value, WORKER_FIELDS))})"
        f" ON CONFLICT (id) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in fresh)}"
    )


def forget_workers_query(d: Dialect, workers: str) -> str:
    """Deletes the workers last heard from before ``before``."""
    return f"DELETE FROM {workers} WHERE heartbeat_at < {d.value('before')}"


def unregister_query(d: Dialect, workers: str) -> str:
    return f"DELETE FROM {workers} WHERE id = {d.value('id')}"


def workers_query(workers: str) -> str:
    return f"SELECT {', '.join(WORKER_FIELDS)} FROM {workers} ORDER BY started_at, id"
