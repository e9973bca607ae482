"""Opening a SQLite file jobq did not create: an existing job table's shape is
checked before anything changes. Another application's table (or a
k-msg-like one keeping its times as text) is refused and the file left as it
was, bytes and journal mode included; k-msg's own table is adopted; the
``table`` option lets jobq live beside another ``jobs``, and two jobq tables
share a file without touching each other."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import jobq
from jobq.backends import open_queue
from jobq.errors import SchemaOutdated
from jobq.store.sqlite import SQLiteStore
from jobq.store.sqlite import wake as sqlite_wake
from jobq.store.sqlite.schema import LATEST_VERSION, MIGRATIONS, index_name, starts_table
from jobq.store.sqlite.wake import WATCHABLE, wake_path

# k-msg's own table and inserts (packages/messaging/src/queue/sqlite-job-queue.ts).
KMSG_TABLE = """
CREATE TABLE jobs (
  id TEXT PRIMARY KEY, type TEXT NOT NULL, data TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'pending',
  priority INTEGER NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0,
  max_attempts INTEGER NOT NULL DEFAULT 3, delay INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL, process_at INTEGER NOT NULL, completed_at INTEGER, failed_at INTEGER,
  error TEXT, metadata TEXT
)
"""
KMSG_INSERT = (
    "INSERT INTO jobs (id, type, data, status, priority, attempts, max_attempts, delay, created_at,"
    " process_at, completed_at, failed_at, error, metadata) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
NOW_MS = 1_700_000_000_000

# An application's own job table: most of k-msg's columns, but not all of
# them (no completed_at, failed_at), an integer id. Before the shape check,
# jobq added 12 columns and 7 indexes to it, then failed on failed_at.
APP_JOBS = """
CREATE TABLE jobs (
  id INTEGER PRIMARY KEY, type TEXT, data TEXT, status TEXT, priority INTEGER, attempts INTEGER,
  max_attempts INTEGER, delay INTEGER, created_at INTEGER, process_at INTEGER, error TEXT, metadata TEXT
)
"""
# A table that has nothing to do with jobs at all.
UNRELATED_JOBS = "CREATE TABLE jobs (id INTEGER PRIMARY KEY, title TEXT NOT NULL, company TEXT)"
# k-msg's columns, with times declared (and stored) as text.
TEXT_TIMES = KMSG_TABLE.replace("created_at INTEGER", "created_at TEXT").replace(
    "process_at INTEGER", "process_at DATETIME"
)


def make_file(path: Path, *statements: str, wal: bool = False) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    if wal:
        conn.execute("PRAGMA journal_mode = WAL")
    for statement in statements:
        conn.execute(statement)
    conn.close()


def app_file(path: Path) -> Path:
    """An application's file with its own ``jobs`` table, an index and a row."""
    make_file(
        path, APP_JOBS, "CREATE INDEX app_jobs_status ON jobs (status)", "INSERT INTO jobs (id) VALUES (1)"
    )
    return path


def kmsg_file(path: Path, table: str = KMSG_TABLE, *, wal: bool = False) -> Path:
    make_file(path, table, wal=wal)
    conn = sqlite3.connect(path)
    conn.execute(
        KMSG_INSERT,
        ("k1", "send", '{"to": 1}', "pending", 0, 0, 3, 0, NOW_MS, NOW_MS, None, None, None, "{}"),
    )
    conn.commit()
    conn.close()
    return path


def snapshot(path: Path) -> tuple[bytes, list[str], list[tuple[Any, ...]], str]:
    """The file's bytes, the files beside it, its schema and its journal mode
    (read on a connection that writes nothing)."""
    content = path.read_bytes()
    beside = sorted(os.listdir(path.parent))
    conn = sqlite3.connect(path)
    try:
        schema = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name").fetchall()
        mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0])
    finally:
        conn.close()
    return content, beside, schema, mode


@pytest.fixture
def where(tmp_path: Path) -> Iterator[Path]:
    """A directory holding only the file under test (so 'the files beside it'
    shows anything jobq leaves there)."""
    folder = tmp_path / "db"
    folder.mkdir()
    yield folder


# -- refused, and nothing changed ------------------------------------------------


@pytest.mark.parametrize(
    "table, row, says",
    [
        (APP_JOBS, "INSERT INTO jobs (id, type) VALUES (1, 'send')", "no columns completed_at, failed_at"),
        (UNRELATED_JOBS, "INSERT INTO jobs VALUES (1, 'engineer', 'acme')", "no columns type, data, status"),
        (
            TEXT_TIMES,
            "INSERT INTO jobs (id, type, data, created_at, process_at)"
            " VALUES ('1', 't', '{}', '2024-01-01 10:00:00', '2024-01-01 10:00:00')",
            "INTEGER epoch milliseconds",
        ),
    ],
    ids=["other-shape", "unrelated", "text-times"],
)
@pytest.mark.parametrize("wal", [False, True], ids=["rollback-journal", "wal"])
def test_a_foreign_table_is_refused_and_the_file_left_as_it_was(
    where: Path, table: str, row: str, says: str, wal: bool
) -> None:
    path = where / "app.db"
    make_file(path, table, row, wal=wal)
    before = snapshot(path)
    assert before[3] == ("wal" if wal else "delete")
    for opening in (
        lambda: open_queue(f"sqlite:///{path}"),
        lambda: jobq.SQLiteQueue(path),
        lambda: jobq.connect_sync(f"sqlite:///{path}"),
        lambda: jobq.SQLiteQueue(path, read_only=True),
    ):
        with pytest.raises(jobq.SchemaMismatch) as info:
            opening()
        message = str(info.value)
        assert "\n" not in message
        assert f"table 'jobs' in {str(path)!r}" in message and says in message and "nothing was changed" in message
        assert snapshot(path) == before


async def test_async_connect_refuses_too(where: Path) -> None:
    path = app_file(where / "app.db")
    before = snapshot(path)
    with pytest.raises(jobq.SchemaMismatch, match="not a job table jobq can use"):
        async with jobq.connect(f"sqlite:///{path}"):
            pass
    assert snapshot(path) == before


@pytest.mark.parametrize(
    "statements, says",
    [
        (
            (
                KMSG_TABLE.replace("CREATE TABLE jobs", "CREATE TABLE k"),
                "CREATE VIEW jobs AS SELECT * FROM k",
            ),
            "it is a view",
        ),
        (
            (KMSG_TABLE.replace("error TEXT", "error TEXT, owner TEXT NOT NULL"),),
            "owner is NOT NULL without a default",
        ),
        ((KMSG_TABLE.replace("id TEXT PRIMARY KEY", "id TEXT"),), "id is not its primary key"),
        ((KMSG_TABLE.replace("priority INTEGER", "priority TEXT"),), "priority is TEXT, not INTEGER"),
        ((KMSG_TABLE.replace("error TEXT", "error TEXT, queue INTEGER"),), "queue is INTEGER, not TEXT"),
    ],
    ids=["view", "extra-not-null", "no-primary-key", "text-priority", "jobq-column-of-another-type"],
)
def test_other_shapes_jobq_cannot_use(where: Path, statements: tuple[str, ...], says: str) -> None:
    path = where / "app.db"
    make_file(path, *statements)
    before = snapshot(path)
    with pytest.raises(jobq.SchemaMismatch, match=says):
        jobq.SQLiteQueue(path)
    assert snapshot(path) == before


# -- k-msg's table: adopted, as before ---------------------------------------------


@pytest.mark.parametrize("wal", [True, False], ids=["wal", "rollback-journal"])
async def test_a_kmsg_table_is_still_adopted_and_upgraded(where: Path, wal: bool) -> None:
    path = kmsg_file(where / "kmsg.db", wal=wal)
    async with jobq.connect(f"sqlite:///{path}", clock=jobq.FakeClock(NOW_MS / 1000)) as queue:
        job = await queue.dequeue()
        assert job is not None and job.id == "k1" and job.data == {"to": 1}
        await queue.complete(job)
    _, _, schema, mode = snapshot(path)
    assert mode == "wal"
    names = {name for _, name, _, _ in schema}
    assert {"jobq_schema", index_name("jobs", "ready"), starts_table("jobs")} <= names
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT version FROM jobq_schema WHERE tbl = 'jobs'").fetchone() == (LATEST_VERSION,)
    conn.close()


async def test_a_kmsg_table_with_columns_of_its_own_is_adopted(where: Path) -> None:
    # Extra columns jobq can leave alone: nullable, or with a default.
    path = kmsg_file(
        where / "kmsg.db",
        KMSG_TABLE.replace("error TEXT", "error TEXT, tenant TEXT, n INT NOT NULL DEFAULT 1"),
    )
    async with jobq.connect(f"sqlite:///{path}") as queue:
        await queue.enqueue("t", 1)
        assert await queue.size() == 2


def test_reopening_a_current_file_writes_nothing(where: Path) -> None:
    path = where / "jobq.db"
    jobq.connect_sync(f"sqlite:///{path}").close()
    before = snapshot(path)
    jobq.connect_sync(f"sqlite:///{path}").close()
    assert snapshot(path) == before


def test_opening_waits_for_a_file_another_connection_holds_locked(where: Path) -> None:
    path = kmsg_file(where / "kmsg.db")  # rollback journal: a writer's lock blocks readers
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    release = threading.Timer(0.3, holder.execute, ("COMMIT",))
    release.start()
    try:
        queue = jobq.connect_sync(f"sqlite:///{path}?busy_timeout=10")
        assert queue.get_job("k1") is not None
        queue.close()
    finally:
        release.join()
        holder.close()


# -- read-only opening -------------------------------------------------------------


def test_read_only_never_migrates(where: Path) -> None:
    kmsg = kmsg_file(where / "kmsg.db")
    before = snapshot(kmsg)
    with pytest.raises(SchemaOutdated, match="k-msg's, not yet upgraded.*jobq migrate"):
        jobq.SQLiteQueue(kmsg, read_only=True)
    assert snapshot(kmsg) == before

    v1 = where / "v1.db"
    conn = sqlite3.connect(v1, isolation_level=None)
    conn.execute("CREATE TABLE jobq_schema (tbl TEXT PRIMARY KEY, version INTEGER NOT NULL)")
    MIGRATIONS[0](conn, "jobs")
    conn.execute("INSERT INTO jobq_schema VALUES ('jobs', 1)")
    conn.close()
    before = snapshot(v1)
    with pytest.raises(SchemaOutdated, match="at jobq schema version 1"):
        jobq.SQLiteQueue(v1, read_only=True)
    assert snapshot(v1) == before

    missing = where / "missing.db"
    with pytest.raises(SchemaOutdated, match="does not exist"):
        jobq.SQLiteQueue(missing, read_only=True)
    assert not missing.exists()
    empty = where / "empty.db"
    make_file(empty)
    with pytest.raises(SchemaOutdated, match="has no job table 'other'.*table=other"):
        jobq.SQLiteQueue(empty, table="other", read_only=True)


async def test_read_only_reads_a_current_file_and_cannot_write(where: Path) -> None:
    path = where / "jobq.db"
    async with jobq.connect(f"sqlite:///{path}") as queue:
        await queue.enqueue("t", {"n": 1})
    before = snapshot(path)
    async with jobq.connect(f"sqlite:///{path}", read_only=True) as reader:
        assert await reader.size() == 1
        assert (await reader.counts())[jobq.JobStatus.PENDING] == 1
        with pytest.raises(jobq.StoreUnavailable, match="readonly"):
            await reader.enqueue("t", 2)
    assert snapshot(path) == before


# -- the table option: beside another application, and two jobq tables ----------------


async def test_the_table_option_lives_beside_another_apps_jobs(where: Path) -> None:
    path = app_file(where / "app.db")
    app_before = (
        sqlite3.connect(path).execute("SELECT sql FROM sqlite_master WHERE tbl_name = 'jobs'").fetchall()
    )
    async with jobq.connect(f"sqlite:///{path}?table=jobq_jobs") as queue:
        await queue.enqueue("t", 1)
        job = await queue.dequeue()
        assert job is not None
        await queue.complete(job)
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT sql FROM sqlite_master WHERE tbl_name = 'jobs'").fetchall() == app_before
    assert conn.execute("SELECT * FROM jobs").fetchall() == [(1, *[None] * 11)]
    conn.close()
    beside = set(os.listdir(where))
    assert Path(wake_path(str(path), "jobq_jobs")).name in beside
    assert Path(wake_path(str(path))).name not in beside


async def test_two_jobq_tables_in_one_file_with_workers_on_each(where: Path) -> None:
    path = where / "two.db"
    tables = ("jobs", "jobq_jobs")
    queues = [await jobq.connect(f"sqlite:///{path}?table={table}") for table in tables]
    ran: dict[str, list[Any]] = {table: [] for table in tables}
    done = {table: asyncio.Event() for table in tables}
    per_table = 20
    processors = []
    for table, queue in zip(tables, queues, strict=True):
        processor = jobq.JobProcessor(queue, concurrency=3, poll_interval=0.05)

        def handler(job: jobq.Job[Any], table: str = table) -> None:
            ran[table].append(job.data)
            if len(ran[table]) == per_table:
                done[table].set()

        processor.handle("send", handler)
        processors.append(processor)
    try:
        for table, queue in zip(tables, queues, strict=True):
            for n in range(per_table):
                await queue.enqueue("send", {"table": table, "n": n})
        for processor in processors:
            await processor.start()
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in done.values())), 30)
    finally:
        for processor in processors:
            await processor.stop()
    for table, queue in zip(tables, queues, strict=True):
        assert sorted(d["n"] for d in ran[table]) == list(range(per_table))
        assert {d["table"] for d in ran[table]} == {table}
        counts = await queue.counts()
        assert counts[jobq.JobStatus.COMPLETED] == per_table and sum(counts.values()) == per_table
        await queue.close()
    conn = sqlite3.connect(path)
    assert dict(conn.execute("SELECT tbl, version FROM jobq_schema")) == {t: LATEST_VERSION for t in tables}
    indexes = {
        row[0]: row[1]
        for row in conn.execute("SELECT name, tbl_name FROM sqlite_master WHERE type = 'index'")
    }
    conn.close()
    for table in tables:
        assert indexes[index_name(table, "ready")] == table
        assert indexes[f"{starts_table(table)}_window"] == starts_table(table)
    assert wake_path(str(path), "jobs") != wake_path(str(path), "jobq_jobs")


@pytest.mark.skipif(not WATCHABLE, reason="inotify is Linux-only")
async def test_a_table_wakes_only_its_own_workers(where: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Polls so rare that a wait is "announced" only through the wake file.
    monkeypatch.setattr(sqlite_wake, "WAKE_POLL_MAX", 3600.0)
    path = where / "two.db"
    async with (
        jobq.connect(f"sqlite:///{path}?table=a") as a,
        jobq.connect(f"sqlite:///{path}?table=b") as b,
        jobq.connect(f"sqlite:///{path}?table=a") as a_worker,
    ):
        a_waits = asyncio.create_task(a_worker.wait_for_change(30))
        b_waits = asyncio.create_task(b.wait_for_change(0.5))
        await asyncio.sleep(0.05)
        await a.enqueue("t", 1)
        assert await a_waits is True  # announced by table a's wake file
        assert await b_waits is False  # table b's wake file was not touched


def test_table_names_whose_derived_names_collide_are_refused(where: Path) -> None:
    path = where / "x.db"
    jobq.connect_sync(f"sqlite:///{path}?table=x").close()
    before = snapshot(path)
    # x's index "queue_ready" is jobq_x_queue_ready, which x_queue's "ready" would be.
    with pytest.raises(jobq.SchemaMismatch, match="'jobq_x_queue_ready'.*an index on table 'x'"):
        jobq.SQLiteQueue(path, table="x_queue")
    # A job table named like x's start log.
    with pytest.raises(jobq.SchemaMismatch, match="not a job table"):
        jobq.SQLiteQueue(path, table=starts_table("x"))
    assert snapshot(path) == before
    # The other way round: a job table first, then the table whose index it would shadow.
    other = where / "y.db"
    jobq.connect_sync(f"sqlite:///{other}?table=jobq_y_ready").close()
    before = snapshot(other)
    with pytest.raises(jobq.SchemaMismatch, match="'jobq_y_ready', but.*a table of another shape"):
        jobq.SQLiteQueue(other, table="y")
    assert snapshot(other) == before


def test_an_app_object_on_a_name_jobq_needs_is_refused(where: Path) -> None:
    path = where / "app.db"
    make_file(path, "CREATE TABLE jobq_schema (id INTEGER PRIMARY KEY, note TEXT)")
    before = snapshot(path)
    with pytest.raises(jobq.SchemaMismatch, match="bookkeeping table .* 'jobq_schema'"):
        jobq.SQLiteQueue(path)
    assert snapshot(path) == before


@pytest.mark.parametrize("name", ["jobq_schema", "JOBQ_CRON", "sqlite_jobs"])
def test_reserved_table_names(where: Path, name: str) -> None:
    with pytest.raises(jobq.InvalidOption, match="reserved"):
        jobq.SQLiteQueue(where / "r.db", table=name)
    assert not (where / "r.db").exists()


def test_store_of_a_refused_file_leaves_no_threads_or_files(where: Path) -> None:
    path = app_file(where / "app.db")
    with pytest.raises(jobq.SchemaMismatch):
        SQLiteStore(path)
    assert sorted(os.listdir(where)) == ["app.db"]


# -- memory:// takes no SQLite options ---------------------------------------------


async def test_memory_url_rejects_the_table_option() -> None:
    with pytest.raises(jobq.InvalidURL, match="'table' for memory:// .*sqlite:// and postgresql://"):
        await jobq.connect("memory://?table=x")
    with pytest.raises(jobq.InvalidURL, match="did you mean 'lease'"):
        await jobq.connect("memory://?leese=3")
    with pytest.raises(jobq.UnknownOption, match="MemoryQueue got an unknown option 'table'"):
        jobq.MemoryQueue(table="x")
