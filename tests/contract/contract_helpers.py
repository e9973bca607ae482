"""Helpers shared by the contract tests (the ``make_processor`` fixture is in
this folder's conftest.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import jobq

DEADLINE = 10.0  # seconds any expected event may take on a slow machine
QUIET = 0.3  # seconds to watch for something that must not happen

MakeProcessor = Callable[..., jobq.JobProcessor]


class Recorder:
    """Collects events of one name and lets a test wait for the n-th."""

    def __init__(self, processor: jobq.JobProcessor, name: str) -> None:
        self.events: list[jobq.Event] = []
        self._changed = asyncio.Event()
        processor.on(name, self._record)

    def _record(self, event: jobq.Event) -> None:
        self.events.append(event)
        self._changed.set()

    async def wait_for(self, count: int = 1) -> list[jobq.Event]:
        async def reach() -> None:
            while len(self.events) < count:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(reach(), DEADLINE)
        return self.events


async def wait_until(predicate: Callable[[], Any], timeout: float = DEADLINE) -> None:
    """Waits until ``predicate()`` (plain or async) is true."""

    async def poll() -> None:
        while not await predicate() if asyncio.iscoroutinefunction(predicate) else not predicate():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


async def stored(queue: jobq.Queue, job_id: str) -> jobq.Job[Any]:
    """The job as stored now; it must exist."""
    job = await queue.get_job(job_id)
    assert job is not None
    return job


# -- a writer without leases -------------------------------------------------------
#
# k-msg's queues (k-otp/k-msg, packages/messaging/src/queue/sqlite-job-queue.ts
# at ec2e63ce, and adapters/cloudflare/hyperdrive-job-queue.ts on PostgreSQL's
# kmsg_jobs) write a claim, a completion and a failure as below: the claim
# sets the status and nothing else (no token, no lease end: process_at stays
# the time the job was due), and neither outcome touches jobq's columns.


class ForeignWriter:
    """Writes one backend's rows as k-msg's statements do (on the in-memory
    store, the same effect on its record)."""

    def __init__(self, queue: jobq.Queue) -> None:
        self.queue = queue
        self.store: Any = queue.store

    async def claim(self, job_id: str) -> None:
        """k-msg's dequeue, aimed at one job: ``SET status = 'processing'``."""
        await self._write("UPDATE {t} SET status = 'processing' WHERE id = {p} AND status = 'pending'", job_id)

    async def complete(self, job_id: str, now_ms: int) -> None:
        """k-msg's complete: ``SET status = 'completed', completed_at = ?``."""
        await self._write("UPDATE {t} SET status = 'completed', completed_at = {p} WHERE id = {p}", now_ms, job_id)

    async def fail(self, job_id: str, error: str, *, retry: bool, now_ms: int) -> None:
        """k-msg's fail: the attempts count it read plus one, and the error;
        back to ``pending`` (process_at unchanged) while ``retry`` and
        attempts are left, ``failed`` with ``failed_at`` otherwise."""
        job = await stored(self.queue, job_id)
        attempts = job.attempts + 1
        if retry and attempts < job.max_attempts:
            await self._write(
                "UPDATE {t} SET status = 'pending', attempts = {p}, error = {p} WHERE id = {p}",
                attempts, error, job_id,
            )  # fmt: skip
        else:
            await self._write(
                "UPDATE {t} SET status = 'failed', attempts = {p}, failed_at = {p}, error = {p} WHERE id = {p}",
                attempts, now_ms, error, job_id,
            )  # fmt: skip

    async def _write(self, statement: str, *values: Any) -> None:
        name = self.store.name
        if name == "memory":
            self._write_memory(statement, values)
        elif name == "sqlite":
            await asyncio.to_thread(self._write_sqlite, statement, values)
        else:
            await asyncio.to_thread(self._write_postgres, statement, values)

    def _write_sqlite(self, statement: str, values: tuple[Any, ...]) -> None:
        import contextlib
        import sqlite3

        with contextlib.closing(sqlite3.connect(self.store.path, timeout=30, isolation_level=None)) as conn:
            conn.execute(statement.format(t=self.store.table, p="?"), values)

    def _write_postgres(self, statement: str, values: tuple[Any, ...]) -> None:
        import psycopg

        with psycopg.connect(self.store.dsn, autocommit=True) as conn:
            conn.execute(statement.format(t=self.store._qualified, p="%s"), values)  # type: ignore[arg-type]

    def _write_memory(self, statement: str, values: tuple[Any, ...]) -> None:
        record = self.store._jobs[values[-1]]
        if "'processing'" in statement:
            if record.status == "pending":
                record.status = "processing"
                self.store._processing.add(record.id)
        elif "'completed'" in statement:
            record.status, record.completed_at = "completed", values[0]
        elif "'pending'" in statement:
            record.status, record.attempts, record.error = "pending", values[0], values[1]
            self.store._enqueue_waiting(record, record.process_at)
        else:
            record.status, record.attempts, record.failed_at, record.error = "failed", *values[:3]
