"""SQLite wake-ups across connections and processes: the wake file jobq's
writers touch after committing work, and the polling fallback for writers
that do not (k-msg's)."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time
from pathlib import Path

import pytest

import jobq
from jobq.store.sqlite import SQLiteStore
from jobq.store.sqlite import wake as sqlite_wake
from jobq.store.sqlite.wake import WATCHABLE, WakeFile

needs_inotify = pytest.mark.skipif(not WATCHABLE, reason="inotify is Linux-only")
WAIT = 30.0  # seconds: far beyond any wake-up, so only a missing one fails


def store_of(queue: jobq.Queue) -> SQLiteStore:
    assert isinstance(queue.store, SQLiteStore)
    return queue.store


@pytest.fixture
def no_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    """Polls so rare that a wait ends early only through the wake file."""
    monkeypatch.setattr(sqlite_wake, "WAKE_POLL_MAX", 3600.0)
    monkeypatch.setattr(sqlite_wake, "WAKE_POLL_MIN", 3600.0)


@needs_inotify
async def test_an_enqueue_on_another_connection_is_announced(tmp_path: Path, no_polling: None) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    async with jobq.connect(url) as producer, jobq.connect(url) as worker:
        waiting = asyncio.create_task(worker.wait_for_change(WAIT))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        await producer.enqueue("t", 1)
        assert await asyncio.wait_for(waiting, WAIT) is True


@needs_inotify
async def test_an_enqueue_in_another_process_is_announced(tmp_path: Path, no_polling: None) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    async with jobq.connect(url) as worker:
        waiting = asyncio.create_task(worker.wait_for_change(WAIT))
        await asyncio.sleep(0.05)
        script = f"import asyncio, jobq\nasync def main():\n    async with jobq.connect({url!r}) as q:\n        await q.enqueue('t', 1)\nasyncio.run(main())\n"
        producer = await asyncio.create_subprocess_exec(sys.executable, "-c", script)
        assert await asyncio.wait_for(producer.wait(), WAIT) == 0
        assert await asyncio.wait_for(waiting, WAIT) is True
        assert await worker.size() == 1


@needs_inotify
async def test_a_retry_and_a_release_are_announced_but_a_completion_is_not(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    async with jobq.connect(url) as producer, jobq.connect(url) as worker:
        await producer.enqueue("t", 1, max_attempts=3)
        await producer.enqueue("t", 2)
        await worker.wait_for_change(0)  # take in the enqueues

        first = await producer.dequeue()
        assert first is not None
        await worker.wait_for_change(0)
        waiting = asyncio.create_task(worker.wait_for_change(WAIT))
        await producer.fail(first, "boom", jobq.RetryDirective(enabled=True, delay=0))
        assert await asyncio.wait_for(waiting, WAIT) is True

        second = await producer.dequeue()
        assert second is not None
        await worker.wait_for_change(0)
        waiting = asyncio.create_task(worker.wait_for_change(WAIT))
        await producer.release(second, delay=None)
        assert await asyncio.wait_for(waiting, WAIT) is True

        claimed = await producer.dequeue()
        assert claimed is not None
        await worker.wait_for_change(0)
        waiting = asyncio.create_task(worker.wait_for_change(WAIT))
        await producer.complete(claimed)
        # Seen by the poll (every 10 ms), not announced: it made no work.
        assert await asyncio.wait_for(waiting, WAIT) is False


async def test_a_writer_that_does_not_touch_the_file_is_seen_by_polling(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    async with jobq.connect(f"sqlite:///{path}") as worker:
        waiting = asyncio.create_task(worker.wait_for_change(WAIT))
        await asyncio.sleep(0.05)
        # Another program's commit, as k-msg's producer makes it.
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE other (x INTEGER)")
        conn.commit()
        conn.close()
        started = time.monotonic()
        assert await asyncio.wait_for(waiting, WAIT) is False
        assert time.monotonic() - started < WAIT


async def test_a_wake_file_that_cannot_be_written_leaves_polling(tmp_path: Path) -> None:
    wake = WakeFile(str(tmp_path / "missing-dir" / "jobs.db"))
    wake.touch()  # never raises
    assert wake.event() is None
    wake.close()


@needs_inotify
async def test_closing_the_store_stops_watching(tmp_path: Path) -> None:
    async with jobq.connect(f"sqlite:///{tmp_path / 'jobs.db'}") as queue:
        await queue.wait_for_change(0)
        watcher = store_of(queue)._wake_file._inotify
        assert watcher is not None
        fd = watcher.fileno()
    assert store_of(queue)._wake_file._inotify is None
    assert asyncio.get_running_loop().remove_reader(fd) is False  # no reader left behind


def synchronous(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA synchronous").fetchone()[0])


async def test_a_claim_alone_is_not_synced_and_other_writes_are(tmp_path: Path) -> None:
    """Durability "full": a claim commits without a sync (inline when the
    lock is free, else on the database thread, which syncs again after it);
    enqueues and completions are synced."""
    path = tmp_path / "jobs.db"
    async with jobq.connect(f"sqlite:///{path}") as queue:
        store = store_of(queue)
        loop = asyncio.get_running_loop()

        async def database_thread_mode() -> int:
            return await loop.run_in_executor(store.db.executor, synchronous, store.db._conn)

        assert await database_thread_mode() == 2  # FULL
        assert synchronous(store.db._now_conn) == 1  # NORMAL: only writes that need no sync use it
        await queue.enqueue("t", 1)
        await queue.enqueue("t", 2)
        assert (await queue.dequeue()) is not None  # inline
        # With the lock held elsewhere, the claim waits on the database thread.
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        claim = asyncio.create_task(queue.dequeue())
        await asyncio.sleep(0.1)
        assert not claim.done()
        other.execute("COMMIT")
        other.close()
        job = await asyncio.wait_for(claim, WAIT)
        assert job is not None
        assert await database_thread_mode() == 2
        await queue.complete(job)
        stored = await queue.get_job(job.id)
        assert stored is not None and stored.status is jobq.JobStatus.COMPLETED
