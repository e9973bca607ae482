"""The SQLite backend's edges: what sits at the wake file's path, what the
URL and options name, and a file that is not a database."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

import pytest

import jobq
from jobq.store.sqlite.wake import SUFFIX

DEADLINE = 10.0  # seconds: an enqueue that takes longer hangs


async def enqueue_twice(url: str) -> jobq.Queue:
    queue = await jobq.connect(url)
    await asyncio.wait_for(queue.enqueue("t", 1), DEADLINE)
    await asyncio.wait_for(queue.enqueue("t", 2), DEADLINE)
    return queue


async def test_a_symlinked_wake_file_is_left_alone(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    target = tmp_path / "precious.txt"
    target.write_bytes(b"ABC")
    db = tmp_path / "jobs.db"
    os.symlink(target, str(db) + SUFFIX)
    with caplog.at_level(logging.WARNING, logger="jobq"):
        queue = await enqueue_twice(f"sqlite:///{db}")
        try:
            assert await queue.size() == 2
            assert await queue.wait_for_change(0.05) is False  # polling still works
        finally:
            await queue.close()
    assert target.read_bytes() == b"ABC"
    assert any("is a symlink" in r.getMessage() for r in caplog.records)


async def test_a_dangling_symlink_creates_nothing(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    os.symlink(tmp_path / "nowhere", str(db) + SUFFIX)
    queue = await enqueue_twice(f"sqlite:///{db}")
    await queue.close()
    assert not (tmp_path / "nowhere").exists()


async def test_a_fifo_at_the_wake_path_never_hangs_an_enqueue(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "jobs.db"
    os.mkfifo(str(db) + SUFFIX)
    with caplog.at_level(logging.WARNING, logger="jobq"):
        queue = await enqueue_twice(f"sqlite:///{db}")
        try:
            assert await queue.size() == 2
            assert await asyncio.wait_for(queue.wait_for_change(0.05), DEADLINE) is False
        finally:
            await queue.close()
    assert any("is a FIFO" in r.getMessage() for r in caplog.records)


async def test_a_fifo_with_a_reader_is_not_written_either(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    fifo = str(db) + SUFFIX
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        queue = await enqueue_twice(f"sqlite:///{db}")
        await queue.close()
        assert os.read(reader, 1) == b""  # nothing was written
    finally:
        os.close(reader)


async def test_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(b"these are my notes, not a database\n" * 100)
    with pytest.raises(jobq.StoreUnavailable, match="not a database"):
        await jobq.connect(f"sqlite:///{path}")
    assert path.read_bytes().startswith(b"these are my notes")


@pytest.mark.parametrize("path", [":memory:", ""])
def test_a_database_private_to_each_connection_is_refused(path: str) -> None:
    with pytest.raises(jobq.InvalidOption, match="memory://"):
        jobq.SQLiteQueue(path)


async def test_memory_url_for_sqlite_is_refused() -> None:
    with pytest.raises(jobq.InvalidOption, match="memory://"):
        await jobq.connect("sqlite:///:memory:")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -1, "5", True])
def test_busy_timeout_must_be_a_bounded_number(tmp_path: Path, value: object) -> None:
    with pytest.raises(jobq.InvalidOption, match="busy_timeout"):
        jobq.SQLiteQueue(tmp_path / "jobs.db", busy_timeout=value)  # type: ignore[arg-type]


async def test_busy_timeout_nan_in_a_url_is_refused(tmp_path: Path) -> None:
    with pytest.raises(jobq.InvalidOption, match="busy_timeout"):
        await jobq.connect(f"sqlite:///{tmp_path / 'jobs.db'}?busy_timeout=nan")


async def test_percent_escapes_in_a_path_are_decoded(tmp_path: Path) -> None:
    folder = tmp_path / "my jobs"
    folder.mkdir()
    url = "sqlite:///" + str(folder / "queue 1.db").replace(" ", "%20")
    async with jobq.connect(url) as queue:
        await queue.enqueue("t", 1)
    assert (folder / "queue 1.db").exists()
    assert not [name for name in os.listdir(tmp_path) if "%" in name]
    with pytest.raises(jobq.InvalidURL):
        await jobq.connect(f"sqlite:///{tmp_path}/bad%ff.db")
    with pytest.raises(jobq.InvalidOption):
        await jobq.connect(f"sqlite:///{tmp_path}/nul%00.db")
