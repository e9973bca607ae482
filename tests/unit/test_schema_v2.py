"""Schema version 2 (unique keys, progress, cancellation, the start log of
per-key limits): a version-1 file upgrades with its jobs kept, and k-msg's
statements still work on it."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import jobq
from jobq import JobStatus
from jobq.store.sqlite.schema import (
    LATEST_VERSION,
    MIGRATIONS,
    V2_COLUMNS,
    V3_COLUMNS,
    attempts_table,
    starts_table,
    workers_table,
)

NOW_MS = 1_700_000_000_000
KMSG_INSERT = (
    "INSERT INTO jobs (id, type, data, status, priority, attempts, max_attempts, delay, created_at,"
    " process_at, completed_at, failed_at, error, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def make_v1_file(path: Path) -> None:
    """A file as jobq's schema version 1 left it, with jobs in several statuses."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE jobq_schema (tbl TEXT PRIMARY KEY, version INTEGER NOT NULL)")
    MIGRATIONS[0](conn, "jobs")
    conn.execute("INSERT INTO jobq_schema VALUES ('jobs', 1)")
    rows = [
        ("p1", "pending", None, None),
        ("c1", "completed", NOW_MS - 10, None),
        ("f1", "failed", None, NOW_MS - 5),
    ]
    for job_id, status, completed_at, failed_at in rows:
        conn.execute(
            KMSG_INSERT,
            (job_id, "send", json.dumps({"id": job_id}), status, 0, 0, 3, 0, NOW_MS - 100, NOW_MS - 100,
             completed_at, failed_at, "boom" if failed_at else None, "{}"),
        )  # fmt: skip
    conn.close()


def version_of(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT version FROM jobq_schema WHERE tbl = 'jobs'").fetchone()[0])
    finally:
        conn.close()


async def test_version_1_file_upgrades_to_the_latest_keeping_its_jobs(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    make_v1_file(path)
    assert version_of(path) == 1
    async with jobq.connect(f"sqlite:///{path}", clock=jobq.FakeClock(NOW_MS / 1000)) as queue:
        assert LATEST_VERSION == 6 and version_of(path) == 6
        conn = sqlite3.connect(path)
        names = {row[1] for row in conn.execute("PRAGMA table_info(jobs)")}
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        conn.close()
        assert {name for name, _ in (*V2_COLUMNS, *V3_COLUMNS)} <= names
        assert starts_table("jobs") in tables
        assert {attempts_table("jobs"), workers_table("jobs")} <= tables
        counts = await queue.counts()
        assert (counts[JobStatus.PENDING], counts[JobStatus.COMPLETED], counts[JobStatus.FAILED]) == (1, 1, 1)
        old = await queue.get_job("p1")
        assert old is not None and old.unique_key is None and old.progress is None and old.cancelled_at is None
        # The upgraded file takes every new feature.
        assert (await queue.enqueue("send", unique_key="k")).deduplicated is False
        assert (await queue.enqueue("send", unique_key="k")).deduplicated is True
        assert (await queue.retry("f1")).status is JobStatus.PENDING
        # k-msg's INSERT (its 14 columns) still works, and its rows are claimed.
        conn = sqlite3.connect(path)
        conn.execute(
            KMSG_INSERT,
            ("kmsg", "send", "{}", "pending", 99, 0, 3, 0, NOW_MS, NOW_MS, None, None, None, "{}"),
        )
        conn.commit()
        conn.close()
        claimed = await queue.dequeue()
        assert claimed is not None and claimed.id == "kmsg"
