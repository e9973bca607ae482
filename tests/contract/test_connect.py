"""Opening queues: connect(), the backend classes, the sync twin, URLs."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

import jobq
from jobq import JobStatus


async def test_connect_is_awaitable(queue_url: str) -> None:
    queue = await jobq.connect(queue_url)
    try:
        assert isinstance(queue, jobq.Queue)
        job = await queue.enqueue("t", {"a": 1})
        assert (await queue.get_job(job.id)) == job
    finally:
        await queue.close()


async def test_connect_as_async_context_manager(queue_url: str, backend: str) -> None:
    async with jobq.connect(queue_url) as queue:
        assert isinstance(queue, jobq.Queue)
        await queue.enqueue("t", 1)
        assert await queue.size() == 1
    if backend == "sqlite":
        with pytest.raises(jobq.QueueClosed):
            await queue.size()


async def test_awaited_queue_as_async_context_manager(queue_url: str, backend: str) -> None:
    async with await jobq.connect(queue_url) as queue:
        await queue.enqueue("t", 1)
        claimed = await queue.dequeue()
        assert claimed is not None and claimed.status is JobStatus.PROCESSING
    if backend == "sqlite":
        with pytest.raises(jobq.QueueClosed):
            await queue.dequeue()


async def test_sqlite_jobs_survive_reopening(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keep.db'}"
    async with jobq.connect(url) as queue:
        job = await queue.enqueue("t", {"kept": True}, priority=3, metadata={"m": 1})
    async with jobq.connect(url) as queue:
        again = await queue.get_job(job.id)
        assert again == job


async def test_backend_classes(tmp_path: Path) -> None:
    memory = jobq.MemoryQueue()
    sqlite = jobq.SQLiteQueue(tmp_path / "cls.db")
    for queue in (memory, sqlite):
        async with queue:
            job = await queue.enqueue("t", 1)
            claimed = await queue.dequeue()
            assert claimed is not None and claimed.id == job.id


def test_connect_sync_plain_methods(tmp_path: Path) -> None:
    clock = jobq.FakeClock()
    queue = jobq.connect_sync(f"sqlite:///{tmp_path / 'sync.db'}", clock=clock)
    try:
        job = queue.enqueue("t", {"n": 1})
        assert isinstance(job, jobq.Job) and job.status is JobStatus.PENDING
        delayed = queue.enqueue("t", 2, delay=5)
        assert queue.size() == 1
        peeked = queue.peek()
        assert peeked is not None and peeked.id == job.id
        claimed = queue.dequeue()
        assert claimed is not None and claimed.id == job.id
        queue.complete(claimed, "ok")
        done = queue.get_job(job.id)
        assert done is not None and done.status is JobStatus.COMPLETED and done.result == "ok"
        clock.advance(5)
        again = queue.dequeue()
        assert again is not None and again.id == delayed.id
        queue.fail(again, "no")
        assert queue.cleanup_terminal() == 2
        extra = queue.enqueue("t", 3)
        assert queue.remove(extra.id) is True
        queue.enqueue("t", 4)
        queue.clear()
        assert queue.size() == 0
    finally:
        queue.close()
    queue.close()  # closing twice is harmless


def test_connect_sync_context_manager_and_errors() -> None:
    with jobq.connect_sync("memory://") as queue:
        with pytest.raises(jobq.JobNotFound):
            queue.complete("missing")
        with pytest.raises(jobq.InvalidJob):
            queue.enqueue("", 1)
        job = queue.enqueue("t", 1)
        assert queue.get_job(job.id) == job


def test_connect_sync_from_threads(tmp_path: Path) -> None:
    with jobq.connect_sync(f"sqlite:///{tmp_path / 'threads.db'}") as queue:
        for i in range(40):
            queue.enqueue("t", i)
        seen: list[str] = []
        lock = threading.Lock()

        def work() -> None:
            while (job := queue.dequeue()) is not None:
                with lock:
                    seen.append(job.id)
                queue.complete(job)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(seen) == 40 and len(set(seen)) == 40


async def test_sqlite_relative_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    async with jobq.connect("sqlite:///relative.db") as queue:
        await queue.enqueue("t", 1)
    assert (tmp_path / "relative.db").is_file()


async def test_sqlite_relative_url_in_a_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "data").mkdir()
    monkeypatch.chdir(tmp_path)
    async with jobq.connect("sqlite:///data/jobs.db") as queue:
        await queue.enqueue("t", 1)
    assert (tmp_path / "data" / "jobs.db").is_file()


async def test_sqlite_absolute_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    target = tmp_path / "absolute.db"
    url = "sqlite:////" + str(target).lstrip("/")
    assert url.startswith("sqlite:////")
    async with jobq.connect(url) as queue:
        await queue.enqueue("t", 1)
    assert target.is_file()
    assert list(elsewhere.iterdir()) == []


async def test_memory_url() -> None:
    async with jobq.connect("memory://") as queue:
        assert isinstance(queue, jobq.MemoryQueue)


@pytest.mark.parametrize("url", ["redis://localhost:6379/0", "jobs.db", "mysql://x/y", ""])
async def test_unknown_scheme_names_the_known_ones(url: str) -> None:
    with pytest.raises(jobq.InvalidURL) as info:
        await jobq.connect(url)
    assert isinstance(info.value, ValueError) and isinstance(info.value, jobq.JobqError)
    message = str(info.value)
    for scheme in ("memory://", "sqlite:///", "postgresql://"):
        assert scheme in message


def test_unknown_scheme_sync() -> None:
    with pytest.raises(jobq.InvalidURL):
        jobq.connect_sync("redis://localhost")


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "sqlite://host/jobs.db"])
async def test_malformed_sqlite_urls(url: str) -> None:
    with pytest.raises(jobq.InvalidURL):
        await jobq.connect(url)


async def test_url_options(tmp_path: Path) -> None:
    clock = jobq.FakeClock()
    async with jobq.connect(f"sqlite:///{tmp_path / 'o.db'}?lease=7", clock=clock) as queue:
        await queue.enqueue("t", 1)
        claimed = await queue.dequeue()
        assert claimed is not None and claimed.lease_expires_at is not None
        assert claimed.lease_expires_at.timestamp() == clock.now() + 7
    with pytest.raises(jobq.InvalidURL):
        await jobq.connect("memory://?leese=3")


async def test_connect_does_not_block_other_tasks(queue_url: str) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    try:
        async with jobq.connect(queue_url) as queue:
            await queue.enqueue("t", 1)
    finally:
        task.cancel()
    assert ticks > 0
