"""The SQLite schema: k-msg's table gains jobq's columns, rows kept."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

import jobq
from jobq import JobStatus
from jobq.store.sql import check_table_name
from jobq.store.sqlite.schema import JOBQ_COLUMNS, LATEST_VERSION, migrate

# k-msg's SQLiteJobQueue schema, as it creates it (packages/messaging/src/queue/sqlite-job-queue.ts).
KMSG_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
  id TEXT PRIMARY KEY,
  type TEXT NOT NULL,
  data TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'pending',
  priority INTEGER NOT NULL DEFAULT 0,
  attempts INTEGER NOT NULL DEFAULT 0,
  max_attempts INTEGER NOT NULL DEFAULT 3,
  delay INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL,
  process_at INTEGER NOT NULL,
  completed_at INTEGER,
  failed_at INTEGER,
  error TEXT,
  metadata TEXT
);
CREATE INDEX IF NOT EXISTS idx_jobs_dequeue
  ON jobs(status, priority DESC, process_at ASC, created_at ASC);
CREATE INDEX IF NOT EXISTS idx_jobs_id ON jobs(id);
"""

KMSG_INSERT = """
INSERT INTO jobs (
  id, type, data, status, priority, attempts, max_attempts,
  delay, created_at, process_at, completed_at, failed_at, error, metadata
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""

NOW_MS = 1_700_000_000_000


def kmsg_row(job_id: str, status: str = "pending", **over: object) -> tuple[object, ...]:
    row: dict[str, object] = {
        "id": job_id, "type": "send_message", "data": json.dumps({"to": job_id}), "status": status,
        "priority": 0, "attempts": 0, "max_attempts": 3, "delay": 0, "created_at": NOW_MS - 1000,
        "process_at": NOW_MS - 1000, "completed_at": None, "failed_at": None, "error": None,
        "metadata": json.dumps({"from": "k-msg"}),
    }  # fmt: skip
    row.update(over)
    return tuple(row.values())


def make_kmsg_db(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.executescript(KMSG_SCHEMA)
    conn.executemany(
        KMSG_INSERT,
        [
            kmsg_row("job_1", priority=1),
            kmsg_row("job_2"),
            kmsg_row("job_3", "completed", completed_at=NOW_MS - 500),
            kmsg_row("job_4", "failed", attempts=3, failed_at=NOW_MS - 400, error="boom"),
            kmsg_row("job_5", delay=60_000, process_at=NOW_MS + 59_000),
        ],
    )
    conn.commit()
    conn.close()


def columns(path: Path, table: str = "jobs") -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
    finally:
        conn.close()


async def test_kmsg_table_gains_jobq_columns_and_keeps_rows(tmp_path: Path) -> None:
    path = tmp_path / "kmsg.db"
    make_kmsg_db(path)
    assert not {name for name, _ in JOBQ_COLUMNS} & columns(path)
    clock = jobq.FakeClock(NOW_MS / 1000)
    async with jobq.connect(f"sqlite:///{path}", clock=clock) as queue:
        assert {name for name, _ in JOBQ_COLUMNS} <= columns(path)
        counts = await queue.counts()
        assert counts[JobStatus.PENDING] == 2
        assert counts[JobStatus.DELAYED] == 1
        assert counts[JobStatus.COMPLETED] == 1
        assert counts[JobStatus.FAILED] == 1
        old = await queue.get_job("job_4")
        assert old is not None
        assert old.status is JobStatus.FAILED and old.error == "boom" and old.attempts == 3
        assert old.queue == "default" and old.lost_count == 0 and old.result is None
        delayed = await queue.get_job("job_5")
        assert delayed is not None and delayed.delay == 60 and delayed.status is JobStatus.DELAYED
        first = await queue.dequeue()
        assert first is not None and first.id == "job_1"
        assert first.data == {"to": "job_1"} and first.metadata == {"from": "k-msg"}
        await queue.complete(first, {"ok": True})
        second = await queue.dequeue()
        assert second is not None and second.id == "job_2"
        assert await queue.dequeue() is None


async def test_kmsg_producer_can_insert_after_migration(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    make_kmsg_db(path)
    clock = jobq.FakeClock(NOW_MS / 1000)
    async with jobq.connect(f"sqlite:///{path}", clock=clock) as queue:
        await queue.clear()
        conn = sqlite3.connect(path)
        conn.execute(KMSG_INSERT, kmsg_row("job_new", priority=9))
        conn.commit()
        conn.close()
        job = await queue.dequeue()
        assert job is not None and job.id == "job_new" and job.priority == 9
        await queue.complete(job)
        done = await queue.get_job("job_new")
        assert done is not None and done.status is JobStatus.COMPLETED


def test_migrate_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "kmsg.db"
    make_kmsg_db(path)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        assert migrate(conn, "jobs") == 0
        after_first = columns(path)
        rows = conn.execute("SELECT * FROM jobs ORDER BY id").fetchall()
        assert migrate(conn, "jobs") == LATEST_VERSION
        assert migrate(conn, "jobs") == LATEST_VERSION
        assert columns(path) == after_first
        assert conn.execute("SELECT * FROM jobs ORDER BY id").fetchall() == rows
        assert len(rows) == 5
        version = conn.execute("SELECT version FROM jobq_schema WHERE tbl = 'jobs'").fetchone()
        assert version == (LATEST_VERSION,)
    finally:
        conn.close()


async def test_reopening_a_jobq_file_keeps_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'again.db'}"
    for _ in range(3):
        async with jobq.connect(url) as queue:
            await queue.enqueue("t", 1)
    async with jobq.connect(url) as queue:
        assert await queue.size() == 3


def test_migrate_creates_a_fresh_table(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "fresh.db", isolation_level=None)
    try:
        assert migrate(conn, "my_jobs") == 0
        names = {row[1] for row in conn.execute("PRAGMA table_info(my_jobs)")}
        assert {"id", "type", "data", "status", "process_at", "metadata"} <= names
        assert {name for name, _ in JOBQ_COLUMNS} <= names
    finally:
        conn.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "new.db", isolation_level=None)
    try:
        migrate(conn, "jobs")
        conn.execute("UPDATE jobq_schema SET version = ? WHERE tbl = 'jobs'", (LATEST_VERSION + 1,))
        with pytest.raises(jobq.InvalidOption):
            migrate(conn, "jobs")
        assert not conn.in_transaction
    finally:
        conn.close()


async def test_two_tables_in_one_file(tmp_path: Path) -> None:
    path = tmp_path / "two.db"
    a = jobq.SQLiteQueue(path, table="jobs_a")
    b = jobq.SQLiteQueue(path, table="jobs_b")
    async with a, b:
        await a.enqueue("t", "a")
        assert await b.dequeue() is None
        job = await a.dequeue()
        assert job is not None and job.data == "a"


@pytest.mark.parametrize("good", ["jobs", "Jobs_2", "_private", "a" * 63])
def test_table_name_accepted(good: str) -> None:
    assert check_table_name(good) == good


@pytest.mark.parametrize(
    "bad", ["", "1jobs", "jobs; DROP TABLE jobs", "my-jobs", "jobs table", "a" * 64, "jobs\n", None, 3]
)
def test_table_name_rejected(bad: object) -> None:
    with pytest.raises(jobq.InvalidOption):
        check_table_name(bad)  # type: ignore[arg-type]


def test_bad_table_name_on_the_queue(tmp_path: Path) -> None:
    with pytest.raises(jobq.InvalidOption):
        jobq.SQLiteQueue(tmp_path / "x.db", table="jobs; DROP TABLE jobs")
    assert not (tmp_path / "x.db").exists()
