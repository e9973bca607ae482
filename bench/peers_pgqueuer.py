"""pgqueuer with PostgreSQL through the same workloads as jobq.

Configuration: pgqueuer's own schema (``Queries.install()``, durability
"durable": every table logged) installed into the measurement's fresh
PostgreSQL schema (the URL puts it first on the ``search_path``), an
asyncpg connection (``AsyncpgDriver``, pgqueuer's fast path, as its own
benchmarks use; enqueues and the drain watch go through psycopg in
autocommit), one ``QueueManager`` with an async no-op entrypoint,
``run(batch_size=10)`` and ``run(batch_size=100)``, each measured
(pgqueuer's other defaults: no concurrency cap, LISTEN/NOTIFY wake-ups, a
completion log buffered up to the batch size). ``enqueue`` with lists is its
batch insert.

Every function here runs in a child interpreter (``bench.child``) except
:func:`produce_steady`, which the parent runs as the producer of the latency
workload. Importing this module needs pgqueuer: the runner checks
:func:`available` first.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import time
from typing import Any

from .pg import admin_dsn
from .workloads import _emit

ENTRYPOINT = "bench"
WARMUP = 20
BATCH_SIZE = 100  # jobs a QueueManager dequeues at once (latency workload)
BATCH_SIZES = (10, 100)  # the process workload's, each measured: pgqueuer at its best
PRELOAD_BATCH = 1_000
QUEUE_TABLE = "pgqueuer"  # pgqueuer's default table name (no PGQUEUER_PREFIX)
STOP_GRACE = 1.0  # seconds
POLL = 0.01  # seconds between checks that the queue table is empty


def available() -> bool:
    return importlib.util.find_spec("pgqueuer") is not None


async def _queries(url: str, install: bool = False) -> tuple[Any, Any]:
    import psycopg
    from pgqueuer import Queries
    from pgqueuer.db import PsycopgDriver

    conn = await psycopg.AsyncConnection.connect(admin_dsn(url), autocommit=True)
    queries = Queries(PsycopgDriver(conn))
    if install:
        await queries.install()
    return conn, queries


def _payload(i: int) -> bytes:
    return json.dumps({"i": i}).encode()


async def enqueue_single(url: str, n: int) -> dict[str, Any]:
    conn, queries = await _queries(url, install=True)
    async with conn:
        for i in range(WARMUP):
            await queries.enqueue(ENTRYPOINT, _payload(-i))
        started = time.perf_counter()
        for i in range(n):
            await queries.enqueue(ENTRYPOINT, _payload(i))
        seconds = time.perf_counter() - started
    return {"n": n, "seconds": seconds, "rate": n / seconds}


async def _asyncpg_queries(url: str) -> tuple[Any, Any]:
    """pgqueuer on asyncpg. asyncpg takes unknown URL options as server
    settings, so the URL's ``options=-csearch_path=...`` becomes the
    ``search_path`` setting it stands for."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    import asyncpg
    from pgqueuer import Queries
    from pgqueuer.db import AsyncpgDriver

    parts = urlsplit(admin_dsn(url))
    settings: dict[str, str] = {}
    rest = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "options":
            for option in value.split():
                name, _, setting = option.removeprefix("-c").partition("=")
                settings[name] = setting
        else:
            rest.append((key, value))
    dsn = urlunsplit(parts._replace(query=urlencode(rest)))
    conn = await asyncpg.connect(dsn, server_settings=settings)
    return conn, Queries(AsyncpgDriver(conn))


async def _enqueue_many(queries: Any, start: int, stop: int) -> None:
    count = stop - start
    await queries.enqueue([ENTRYPOINT] * count, [_payload(i) for i in range(start, stop)], [0] * count)


async def enqueue_batch(url: str, n: int, size: int) -> dict[str, Any]:
    conn, queries = await _queries(url, install=True)
    async with conn:
        await _enqueue_many(queries, -1, 0)
        started = time.perf_counter()
        for start in range(0, n, size):
            await _enqueue_many(queries, start, min(n, start + size))
        seconds = time.perf_counter() - started
    return {"n": n, "batch": size, "seconds": seconds, "rate": n / seconds}


async def process(url: str, n: int, timeout: float, batch: int = BATCH_SIZE) -> dict[str, Any]:
    """Timed from ``QueueManager.run`` until the queue table is empty: the
    manager deletes a finished job when it flushes its completion log, so
    that is when the last completion is stored (jobq's figure ends at its
    last stored completion too). The manager's own shutdown afterwards
    (seconds of timers winding down) is not counted."""
    from pgqueuer import QueueManager

    conn, queries = await _queries(url, install=True)
    async with conn:
        for start in range(0, n, PRELOAD_BATCH):
            await _enqueue_many(queries, start, min(n, start + PRELOAD_BATCH))
    conn, queries = await _asyncpg_queries(url)
    watch_conn, _ = await _queries(url)
    async with watch_conn:
        qm = QueueManager(queries)
        ran = 0

        @qm.entrypoint(ENTRYPOINT)
        async def noop(job: Any) -> None:
            nonlocal ran
            ran += 1

        async def drained() -> float:
            # Queued and picked rows alike: a row goes only once its completion is logged.
            while True:
                cur = await watch_conn.execute(f"SELECT EXISTS (SELECT 1 FROM {QUEUE_TABLE})")
                row = await cur.fetchone()
                if ran >= n and row is not None and not row[0]:
                    return time.perf_counter()
                await asyncio.sleep(POLL)

        started = time.perf_counter()
        worker = asyncio.create_task(qm.run(batch_size=batch))
        try:
            finished = await asyncio.wait_for(drained(), timeout)
        except TimeoutError:
            raise RuntimeError(f"only {ran} of {n} pgqueuer jobs ran within {timeout:g} s") from None
        finally:
            await _stop(qm, worker)
        seconds = finished - started
        try:
            left = await queries.queued_work([ENTRYPOINT])
        finally:
            await conn.close()
    if left:
        raise RuntimeError(f"{left} pgqueuer jobs still queued")
    return {"n": n, "batch": batch, "driver": "asyncpg", "seconds": seconds, "rate": n / seconds}


async def _stop(qm: Any, worker: asyncio.Task[None]) -> None:
    """Asks the manager to stop; cancels it if it is still winding down its
    timers after a second (every job has run by then; the figures are taken)."""
    qm.shutdown.set()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(worker, STOP_GRACE)


async def latency_worker(url: str, n: int, timeout: float) -> dict[str, Any]:
    """An idle QueueManager, woken by pgqueuer's LISTEN/NOTIFY trigger."""
    from pgqueuer import QueueManager

    conn, queries = await _queries(url)
    latencies: list[float] = []
    async with conn:
        qm = QueueManager(queries)

        @qm.entrypoint(ENTRYPOINT)
        async def record(job: Any) -> None:
            latencies.append(time.time() - json.loads(job.payload)["t"])
            if len(latencies) == n:
                qm.shutdown.set()  # run() returns

        async def ready() -> None:
            await asyncio.sleep(0.3)  # let the manager start listening and find the queue empty
            _emit("READY")

        announce = asyncio.create_task(ready())
        worker = asyncio.create_task(qm.run(batch_size=BATCH_SIZE))
        try:
            await asyncio.wait_for(asyncio.shield(worker), timeout)
        except TimeoutError:
            raise RuntimeError(f"only {len(latencies)} of {n} pgqueuer jobs ran within {timeout:g} s") from None
        finally:
            await _stop(qm, worker)
        await announce
    return {"n": n, "latencies": latencies}


async def install(url: str) -> None:
    conn, _ = await _queries(url, install=True)
    await conn.close()


async def produce_steady(url: str, n: int, rate: float) -> float:
    """The producer side of the latency workload (in the parent)."""
    conn, queries = await _queries(url)
    async with conn:
        interval = 1.0 / rate
        loop = asyncio.get_running_loop()
        first = loop.time()
        for i in range(n):
            wait = first + i * interval - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            await queries.enqueue(ENTRYPOINT, json.dumps({"t": time.time(), "i": i}).encode())
        elapsed = loop.time() - first
    return n / elapsed if elapsed > 0 else float("inf")
