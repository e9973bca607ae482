"""Rows another program wrote (a k-msg producer, a script, a hand-edited
table) that cannot be read as a job: each fails alone, with an error naming
the column, and holds up no other job and no duty.

SQLite columns take any value (text in an integer column); PostgreSQL's are
typed, but a time can still be out of range (past year 9999, before year 1).
The in-memory store holds only rows jobq wrote. Real worker processes meet
such rows in ``tests/acceptance/test_worker_duties.py``.
"""

from __future__ import annotations

import contextlib
import sqlite3
from typing import Any

import pytest

import jobq
from jobq import JobStatus
from jobq.clock import to_ms

pytestmark = pytest.mark.parametrize("backend", ["sqlite", "postgres"])

FAR = 10**17  # ms: past year 9999
BEFORE_YEAR_1 = -(10**15)  # ms


def insert_raw(queue: jobq.Queue, **values: Any) -> str:
    """Inserts one row as another program would, bypassing jobq."""
    now = to_ms(queue.clock.now())
    row = {
        "type": "t", "data": "{}", "status": "pending", "priority": 0, "attempts": 0, "max_attempts": 3,
        "delay": 0, "created_at": now, "process_at": now, **values,
    }  # fmt: skip
    store: Any = queue.store
    columns = ", ".join(row)
    if queue.store.name == "sqlite":
        with contextlib.closing(sqlite3.connect(store.path, isolation_level=None)) as conn:
            conn.execute(
                f"INSERT INTO {store.table} ({columns}) VALUES ({', '.join('?' * len(row))})",
                tuple(row.values()),
            )
    else:
        import psycopg

        with psycopg.connect(store.dsn, autocommit=True) as conn:
            conn.execute(
                f"INSERT INTO {store.table} ({columns}) VALUES ({', '.join(['%s'] * len(row))})",  # type: ignore[arg-type]
                tuple(row.values()),
            )
    return str(row["id"])


def bad(backend: str, sqlite: dict[str, Any], postgres: dict[str, Any]) -> dict[str, Any]:
    return sqlite if backend == "sqlite" else postgres


async def test_a_claim_fails_unreadable_rows_alone_and_starts_the_others(
    backend: str, queue: jobq.Queue
) -> None:
    due = to_ms(queue.clock.now()) - 1000
    cases = {
        "sqlite": {
            "bad-priority": (
                {"priority": "high", "process_at": due},
                "column priority holds 'high', not a number",
            ),
            "bad-attempts": ({"attempts": "x", "process_at": due}, "column attempts holds 'x', not a number"),
            "bad-created": (
                {"created_at": "abc", "process_at": due},
                "column created_at holds 'abc', not a time in ms",
            ),
        },
        "postgres": {
            "bad-created": (
                {"created_at": FAR, "process_at": due},
                f"column created_at holds {FAR}, not a time in ms",
            ),
            "bad-due": (
                {"process_at": BEFORE_YEAR_1},
                f"column process_at holds {BEFORE_YEAR_1}, not a time in ms",
            ),
        },
    }[backend]
    for job_id, (values, _) in cases.items():
        insert_raw(queue, id=job_id, **values)
    good = [(await queue.enqueue("t", {"n": i})).id for i in range(3)]
    claimed = await queue.claim(10)
    assert sorted(j.id for j in claimed) == sorted(good)
    assert all(j.status is JobStatus.PROCESSING for j in claimed)
    for job_id, (_, error) in cases.items():
        failed = await queue.get_job(job_id)  # shown, with defaults in place of what cannot be read
        assert failed is not None and failed.status is JobStatus.FAILED, (job_id, failed)
        assert failed.error is not None and error in failed.error, failed.error
    await queue.complete_many([(j, None) for j in claimed])
    assert (await queue.counts())[JobStatus.COMPLETED] == 3


async def test_the_rescuer_fails_unreadable_rows_alone(backend: str, queue: jobq.Queue) -> None:
    expired = to_ms(queue.clock.now()) - 60_000
    dead = {"status": "processing", "lease_owner": "dead", "scheduled_at": expired - 1000}
    lost = insert_raw(queue, id="lost-good", process_at=expired, lease_token="t0", **dead)
    cases = bad(
        backend,
        sqlite={
            "bad-created": ({"created_at": "abc", "process_at": expired}, "column created_at holds 'abc'"),
            "bad-lost": ({"lost_count": "none", "process_at": expired}, "column lost_count holds 'none'"),
            "bad-lease-end": ({"process_at": "soon"}, "column process_at holds 'soon', not a time in ms"),
        },
        postgres={
            "bad-created": ({"created_at": FAR, "process_at": expired}, f"column created_at holds {FAR}"),
            "bad-lease-end": ({"process_at": FAR}, f"column process_at holds {FAR}, not a time in ms"),
        },
    )
    for n, (job_id, (values, _)) in enumerate(cases.items()):
        insert_raw(queue, id=job_id, lease_token=f"t{n + 1}", **{**dead, **values})
    rescued = await queue.rescue_expired()
    assert sorted(j.id for j in rescued) == sorted([lost, *cases])
    again = await queue.get_job(lost)
    assert again is not None and again.status is JobStatus.PENDING and again.lost_count == 1
    for job_id, (_, error) in cases.items():
        failed = await queue.get_job(job_id)
        assert failed is not None and failed.status is JobStatus.FAILED and error in (failed.error or ""), (
            failed
        )
    assert await queue.rescue_expired() == []
    assert [j.id for j in await queue.claim(5)] == [lost]


async def test_a_waiting_row_that_can_never_be_due_is_failed_by_next_due(
    backend: str, queue: jobq.Queue
) -> None:
    """No claim takes a waiting row whose ``process_at`` is text (SQLite
    sorts text after every number) or past year 9999; the idle wait's
    ``next_due`` meets it once it is first in line, and fails it rather than
    raising (which ended the claim loop of a worker that stayed alive)."""
    value = bad(backend, sqlite="2024-01-01 00:00:00", postgres=FAR)
    job_id = insert_raw(queue, id="never-due", process_at=value)
    assert await queue.peek() is None and await queue.size() == 0
    assert await queue.next_due() is None
    failed = await queue.get_job(job_id)
    assert failed is not None and failed.status is JobStatus.FAILED
    assert f"column process_at holds {value!r}, not a time in ms" in (failed.error or "")
    later = await queue.enqueue("t", {}, delay=5)
    assert await queue.next_due() == later.process_at.timestamp()
