"""SQLite at durability full: concurrent enqueues share a commit, and the
WAL is synced (outside the write lock) before any of them returns. The
sync itself is watched through ``os.fsync``, the one call that makes a
commit survive power loss."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

import jobq
from jobq.store.sqlite import connection


def _watch_syncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths ``os.fsync`` is called on, from now on, in the order called
    (named through Linux's ``/proc``)."""
    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        real(fd)
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))

    monkeypatch.setattr(connection.os, "fsync", fsync)
    return synced


def _wal_syncs(synced: list[str]) -> int:
    return sum(path.endswith("/jobs.db-wal") for path in synced)


async def test_every_enqueue_returns_after_a_sync_of_the_wal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "jobs.db"
    async with jobq.connect(f"sqlite:///{db}") as queue:
        synced = _watch_syncs(monkeypatch)
        seen: list[int] = []

        async def enqueue(i: int) -> None:
            await queue.enqueue("t", i)
            seen.append(_wal_syncs(synced))  # made by the time this returned

        await asyncio.gather(*(enqueue(i) for i in range(12)))
        assert min(seen) >= 1
        # They shared commits: fewer syncs than enqueues.
        assert _wal_syncs(synced) < 12
        assert await queue.size() == 12


async def test_durability_fast_makes_no_sync_of_its_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = tmp_path / "jobs.db"
    async with jobq.connect(f"sqlite:///{db}?durability=fast") as queue:
        synced = _watch_syncs(monkeypatch)
        await asyncio.gather(*(queue.enqueue("t", i) for i in range(4)))
        assert synced == []
        assert await queue.size() == 4


async def test_a_closed_store_syncs_the_write_it_had_begun(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    queue = await jobq.connect(f"sqlite:///{db}")
    pending = asyncio.ensure_future(queue.enqueue("t", "last"))
    await asyncio.sleep(0)
    await asyncio.gather(pending, queue.close(), return_exceptions=True)
    async with jobq.connect(f"sqlite:///{db}") as again:
        stored = await again.size()
    assert stored in (0, 1)
    if pending.exception() is None:
        assert stored == 1
