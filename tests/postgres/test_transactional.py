"""Transactional enqueue: jobs inserted on the application's own psycopg
connection exist, and run, only if the application's transaction commits.
Also: a producer whose server cannot be reached gets StoreUnavailable within
its timeout."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import jobq

MakePg = Callable[..., Awaitable[jobq.PostgresQueue]]


async def run_until_idle(queue: jobq.Queue, seconds: float = 1.5) -> list[str]:
    """Runs a processor for ``seconds``; returns the ids its handler ran."""
    ran: list[str] = []
    processor = jobq.JobProcessor(queue, concurrency=4, poll_interval=0.2)

    @processor.handler("t")
    async def handle(job: jobq.Job[object]) -> None:
        ran.append(job.id)

    await processor.start()
    await asyncio.sleep(seconds)
    await processor.stop()
    return ran


async def test_a_rolled_back_transactional_enqueue_never_runs(make_pg: MakePg, pg_url: str) -> None:
    import psycopg

    queue = await make_pg()
    async with await psycopg.AsyncConnection.connect(pg_url) as conn:  # not autocommit
        await conn.execute("CREATE TABLE orders (id int)")
        await conn.commit()
        await conn.execute("INSERT INTO orders VALUES (1)")
        job = await queue.enqueue("t", {"order": 1}, connection=conn)
        [other] = await queue.enqueue_many([jobq.NewJob("t", 2)], connection=conn)
        assert job.status is jobq.JobStatus.PENDING
        assert await queue.get_job(job.id) is None  # not visible before commit
        await conn.rollback()
    assert await queue.get_job(job.id) is None and await queue.get_job(other.id) is None
    assert await run_until_idle(queue) == []


async def test_a_committed_transactional_enqueue_runs_and_wakes_workers(make_pg: MakePg, pg_url: str) -> None:
    import psycopg

    queue = await make_pg()
    ran: list[str] = []
    woke = asyncio.Event()
    processor = jobq.JobProcessor(queue, concurrency=2, poll_interval=300)  # only a notification wakes it
    idle = asyncio.Event()
    for name in ("claim", "settle_and_claim"):  # whichever the processor claims through
        method = getattr(queue.store, name)

        async def claiming(*args: Any, _method: Any = method, **kwargs: Any) -> Any:
            result = await _method(*args, **kwargs)
            if not (result[1] if isinstance(result, tuple) else result):
                idle.set()  # a claim found nothing: the worker waits for a wake-up now
            return result

        setattr(queue.store, name, claiming)

    @processor.handler("t")
    async def handle(job: jobq.Job[object]) -> None:
        ran.append(job.id)
        woke.set()

    await processor.start()
    try:
        await asyncio.wait_for(idle.wait(), 60)  # the worker is idle...
        deadline = time.monotonic() + 60
        while not queue.store.listening:  # ...and listening
            assert time.monotonic() < deadline, "the listener did not come up"
            await asyncio.sleep(0.02)
        async with await psycopg.AsyncConnection.connect(pg_url) as conn, conn.transaction():
            await conn.execute("SELECT 1")
            job = await queue.enqueue("t", {"order": 2}, connection=conn)
        await asyncio.wait_for(woke.wait(), 60)  # far sooner than the 300 s poll
    finally:
        await processor.stop()
    assert ran == [job.id]
    stored = await queue.get_job(job.id)
    assert stored is not None and stored.status is jobq.JobStatus.COMPLETED


async def test_autocommit_connection_outside_a_transaction_commits_at_once(
    make_pg: MakePg, pg_url: str
) -> None:
    import psycopg

    queue = await make_pg()
    async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:
        jobs = await queue.enqueue_many([jobq.NewJob("t", 1), jobq.NewJob("t", 2)], connection=conn)
    assert all([await queue.get_job(job.id) for job in jobs])


def test_sync_connection_through_connect_sync(pg_url: str) -> None:
    import psycopg

    with jobq.connect_sync(pg_url) as queue, psycopg.connect(pg_url) as conn:
        rolled_back = queue.enqueue("t", 1, connection=conn)
        conn.rollback()
        committed = queue.enqueue("t", 2, connection=conn)
        conn.commit()
        assert queue.get_job(rolled_back.id) is None
        stored = queue.get_job(committed.id)
        assert stored is not None and stored.data == 2


async def test_bad_input_and_backends_without_transactions(make_pg: MakePg, pg_url: str) -> None:
    import psycopg

    queue = await make_pg()
    async with await psycopg.AsyncConnection.connect(pg_url) as conn:
        with pytest.raises(jobq.InvalidJob):
            await queue.enqueue("", 1, connection=conn)  # checked before any SQL
        with pytest.raises(jobq.InvalidOption):
            await jobq.MemoryQueue().enqueue("t", 1, connection=conn)
        with pytest.raises(TypeError):
            await queue.enqueue("t", 1, connection=object())


async def test_a_producer_without_a_server_gets_store_unavailable_in_time(make_pg: MakePg) -> None:
    """A queue whose server went away (here: a port where nothing listens any
    more) raises StoreUnavailable within pool_timeout, never hangs."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    queue = await make_pg(pool_timeout=2)
    # The pool opens on first use: point it where no server is.
    queue.store.dsn = f"host=127.0.0.1 port={port} dbname=x connect_timeout=1"  # type: ignore[attr-defined]
    started = time.monotonic()
    with pytest.raises(jobq.StoreUnavailable):
        await queue.enqueue("t", 1)
    assert time.monotonic() - started < 6
