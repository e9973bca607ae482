"""What only the PostgreSQL backend does: SKIP LOCKED claims, LISTEN/NOTIFY
wake-ups, concurrent migrations, the database clock, the schema itself.

Every test here needs a server (``JOBQ_TEST_POSTGRES_URL``) and skips without
one; ``tests/contract`` runs the shared suite on PostgreSQL as well.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from suite_parts import NO_POSTGRES, POSTGRES_URL

if not POSTGRES_URL:
    pytest.skip(NO_POSTGRES, allow_module_level=True)

import jobq
from jobq.job import RECORD_FIELDS
from jobq.store import postgres as pg_store
from jobq.store.postgres import sql as postgres_sql
from jobq.store.postgres.schema import AUTOVACUUM, LATEST_VERSION, migrate_url

MakePg = Callable[..., Awaitable[jobq.PostgresQueue]]

LEASE_S = 30.0
WAKE_WAIT = 120.0  # seconds a wait_for_change may last: only a notification ends it sooner


def store_of(queue: jobq.Queue) -> pg_store.PostgresStore:
    store = queue.store
    assert isinstance(store, pg_store.PostgresStore)
    return store


async def listening(queue: jobq.Queue) -> None:
    """Starts the queue's listener and waits until it listens."""
    store = store_of(queue)
    deadline = time.monotonic() + 10
    while not store.listening:
        assert time.monotonic() < deadline, "the listener did not come up"
        await queue.wait_for_change(0.2)
    await queue.wait_for_change(0.01)  # consume a wake-up left from (re)connecting


async def woken_within(queue: jobq.Queue, action: Any) -> float:
    """Seconds from ``action()`` to the end of a ``wait_for_change(WAKE_WAIT)``
    that was already waiting; fails unless a notification woke it (rather
    than its timeout). No bound on the time: a loaded machine is slow."""
    waiter = asyncio.create_task(queue.wait_for_change(WAKE_WAIT))
    await asyncio.sleep(0.05)
    assert not waiter.done(), "wait_for_change returned before anything changed"
    started = time.monotonic()
    await action()
    woken = await asyncio.wait_for(waiter, WAKE_WAIT + 30)
    elapsed = time.monotonic() - started
    assert woken is True and elapsed < WAKE_WAIT, f"not woken: returned {woken!r} after {elapsed:.3f} s"
    return elapsed


# -- claims --------------------------------------------------------------------------


async def test_concurrent_claimers_never_double_claim(make_pg: MakePg) -> None:
    producer = await make_pg()
    total = 400
    await producer.enqueue_many([jobq.NewJob("t", i, priority=i % 7) for i in range(total)])
    queues = [await make_pg(pool_size=3) for _ in range(8)]
    claimed: list[str] = []
    batches: list[int] = []

    async def claimer(queue: jobq.Queue) -> None:
        while jobs := await queue.claim(5):
            batches.append(len(jobs))
            priorities = [job.priority for job in jobs]
            assert priorities == sorted(priorities, reverse=True)  # each batch in dequeue order
            claimed.extend(job.id for job in jobs)
            await asyncio.sleep(0)

    await asyncio.gather(*(claimer(q) for q in queues for _ in range(3)))  # 24 claimers, 8 pools
    assert len(claimed) == total
    assert len(set(claimed)) == total
    assert max(batches) == 5
    counts = await producer.counts()
    assert counts[jobq.JobStatus.PROCESSING] == total and await producer.size() == 0


async def test_claim_skips_rows_locked_by_another_transaction(make_pg: MakePg, pg_url: str) -> None:
    import psycopg

    queue = await make_pg()
    first = await queue.enqueue("t", "first", priority=9)
    second = await queue.enqueue("t", "second")
    with psycopg.connect(pg_url) as locker:  # holds a row lock until closed
        locker.execute("SELECT id FROM kmsg_jobs WHERE id = %s FOR UPDATE", (first.id,))
        claimed = await asyncio.wait_for(queue.dequeue(), 5)
        assert claimed is not None and claimed.id == second.id
        assert await asyncio.wait_for(queue.dequeue(), 5) is None
    again = await queue.dequeue()
    assert again is not None and again.id == first.id


# -- wake-ups ------------------------------------------------------------------------


async def test_enqueue_elsewhere_wakes_a_waiter(make_pg: MakePg) -> None:
    worker, producer = await make_pg(), await make_pg()
    await listening(worker)
    await woken_within(worker, lambda: producer.enqueue("t", 1))


async def test_retry_and_release_wake_a_waiter(make_pg: MakePg) -> None:
    worker, other = await make_pg(), await make_pg()
    await other.enqueue("t", 1)
    await other.enqueue("t", 2)
    await listening(worker)
    first, second = await other.dequeue(), await other.dequeue()
    assert first is not None and second is not None
    await worker.wait_for_change(0.01)
    await woken_within(worker, lambda: other.fail(first, "again", jobq.RetryDirective(True, 0)))
    await woken_within(worker, lambda: other.release(second))


async def test_a_rolled_back_change_sends_no_notification(make_pg: MakePg) -> None:
    worker, other = await make_pg(), await make_pg()
    await listening(worker)
    with pytest.raises(jobq.InvalidJob):  # NUL in a type: PostgreSQL refuses the row
        await other.enqueue_many([jobq.NewJob("ok", 1), jobq.NewJob("bad\x00type", 2)])
    started = time.monotonic()
    await worker.wait_for_change(0.3)
    assert time.monotonic() - started >= 0.25
    assert await other.size() == 0


async def test_listener_comes_back_after_its_connection_is_killed(make_pg: MakePg, pg_admin: Any) -> None:
    worker, producer = await make_pg(), await make_pg()
    await listening(worker)
    store = store_of(worker)
    old_pid = store.listener_pid
    pg_admin.execute("SELECT pg_terminate_backend(%s)", (old_pid,))
    await asyncio.wait_for(worker.wait_for_change(10), 3)  # the drop itself wakes waiters
    await listening(worker)
    assert store.listener_pid not in (None, old_pid)
    await woken_within(worker, lambda: producer.enqueue("t", 1))


async def test_without_a_listener_waits_fall_back_to_polling(make_pg: MakePg) -> None:
    worker = await make_pg()
    store = store_of(worker)
    store.dsn = store.dsn + " port=1"  # the listener cannot connect; the pool was never opened
    started = time.monotonic()
    await worker.wait_for_change(10)
    elapsed = time.monotonic() - started
    assert not store.listening
    assert elapsed < pg_store.LISTEN_FALLBACK_POLL + 1.5


# -- schema --------------------------------------------------------------------------


def test_migrate_concurrently_and_twice(pg_url: str, pg_admin: Any, pg_schema: str) -> None:
    barrier = threading.Barrier(6)
    found: list[int] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            found.append(migrate_url(pg_url, "jobs_m"))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(found) == [0] + [LATEST_VERSION] * 5
    assert migrate_url(pg_url, "jobs_m") == LATEST_VERSION
    row = pg_admin.execute(
        f'SELECT version FROM "{pg_schema}".jobq_schema WHERE tbl = %s', ("jobs_m",)
    ).fetchone()
    assert row == (LATEST_VERSION,)


@pytest.mark.parametrize(
    "table", ["jobs; DROP TABLE kmsg_jobs", "1jobs", "my-jobs", "", 'a"b', "x" * 64, "schema.jobs"]
)
async def test_bad_table_name_is_rejected(pg_url: str, table: str) -> None:
    with pytest.raises(jobq.InvalidOption):
        jobq.PostgresQueue(pg_url, table=table)


async def test_bad_table_name_in_the_url_is_rejected(pg_url: str) -> None:
    with pytest.raises(jobq.InvalidOption):
        await jobq.connect(pg_url + "&table=my-jobs")


async def test_schema_columns_indexes_and_autovacuum(make_pg: MakePg, pg_admin: Any, pg_schema: str) -> None:
    await make_pg()  # the default table
    columns = dict(
        pg_admin.execute(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = 'kmsg_jobs'",
            (pg_schema,),
        ).fetchall()
    )
    assert columns == {
        "id": "text", "type": "text", "data": "text", "status": "text", "priority": "integer",
        "attempts": "integer", "max_attempts": "integer", "delay": "bigint", "created_at": "bigint",
        "process_at": "bigint", "completed_at": "bigint", "failed_at": "bigint", "error": "text",
        "metadata": "text", "queue": "text", "result": "text", "lease_token": "text",
        "lease_owner": "text", "scheduled_at": "bigint", "started_at": "bigint", "lost_count": "integer",
        # schema version 2
        "unique_key": "text", "progress": "double precision", "progress_message": "text",
        "cancelled_at": "bigint", "cancel_requested_at": "bigint",
        # schema version 3
        "error_type": "text",
    }  # fmt: skip
    # The many-row insert casts its arrays to these types.
    assert columns == {f: postgres_sql.ARRAY_TYPES.get(f, "text") for f in RECORD_FIELDS}
    indexes = dict(
        pg_admin.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = 'kmsg_jobs'",
            (pg_schema,),
        ).fetchall()
    )
    ready = indexes["kmsg_jobs_jobq_ready"]
    assert "priority DESC, process_at, created_at" in ready and "WHERE (status = 'pending'::text)" in ready
    assert "WHERE (status = 'processing'::text)" in indexes["kmsg_jobs_jobq_leases"]
    (options,) = pg_admin.execute(
        "SELECT reloptions FROM pg_class WHERE oid = %s::regclass", (f"{pg_schema}.kmsg_jobs",)
    ).fetchone()
    assert {f"{key}={value}" for key, value in AUTOVACUUM} <= set(options)


async def test_a_kmsg_table_gains_jobq_columns_and_kmsg_rows_run(
    pg_url: str, pg_admin: Any, pg_schema: str, make_pg: MakePg
) -> None:
    pg_admin.execute(
        f'CREATE TABLE "{pg_schema}".kmsg_jobs (id TEXT PRIMARY KEY, type TEXT NOT NULL, data TEXT NOT NULL,'
        " status TEXT NOT NULL DEFAULT 'pending', priority INTEGER NOT NULL DEFAULT 0,"
        " attempts INTEGER NOT NULL DEFAULT 0, max_attempts INTEGER NOT NULL DEFAULT 3,"
        " delay BIGINT NOT NULL DEFAULT 0, created_at BIGINT NOT NULL, process_at BIGINT NOT NULL,"
        " completed_at BIGINT, failed_at BIGINT, error TEXT, metadata TEXT)"
    )
    now_ms = int(time.time() * 1000)
    pg_admin.execute(
        f'INSERT INTO "{pg_schema}".kmsg_jobs (id, type, data, status, priority, attempts, max_attempts,'
        " delay, created_at, process_at, metadata) VALUES ('k1', 'send', '{\"to\": \"x\"}', 'pending',"
        " 5, 0, 3, 0, %s, %s, '{}')",
        (now_ms - 1000, now_ms - 1000),
    )
    queue = await make_pg()
    job = await queue.dequeue()
    assert job is not None and job.id == "k1" and job.data == {"to": "x"} and job.queue == "default"
    await queue.complete(job, "ok")


# -- the database clock ----------------------------------------------------------------


class SkewedClock(jobq.SystemClock):
    """The system clock, wrong by ``offset`` seconds (a worker with bad NTP)."""

    def __init__(self, offset: float) -> None:
        self.offset = offset

    def now(self) -> float:
        return time.time() + self.offset


async def test_database_clock_ignores_a_skewed_caller_clock(make_pg: MakePg) -> None:
    ahead = await make_pg(clock=SkewedClock(3600))
    behind = await make_pg(clock=SkewedClock(-3600))
    job = await ahead.enqueue("t", 1)
    assert abs(job.created_at.timestamp() - time.time()) < 60  # stamped by the database
    stored = await behind.get_job(job.id)
    assert stored is not None and stored.created_at == job.created_at
    # Ready at once for a worker an hour behind.
    assert await behind.size() == 1
    claimed = await behind.dequeue()
    assert claimed is not None and claimed.id == job.id
    assert claimed.lease_expires_at is not None
    assert abs(claimed.lease_expires_at.timestamp() - (time.time() + LEASE_S)) < 60
    # A worker an hour ahead does not take the lease for expired.
    assert await ahead.rescue_expired() == []
    assert await ahead.extend_leases([claimed]) == set()
    renewed = await ahead.get_job(job.id)
    assert renewed is not None and renewed.lease_expires_at is not None
    assert abs(renewed.lease_expires_at.timestamp() - (time.time() + LEASE_S)) < 60
    await ahead.complete(claimed)
    # A delay counts from the database's now, and next_due answers on the caller's clock.
    delayed = await behind.enqueue("t", 2, delay=5)
    assert await ahead.size() == 0 and await ahead.dequeue() is None
    due = await ahead.next_due()
    assert due is not None and abs(due - (time.time() + 3600 + 5)) < 30
    assert delayed.process_at == delayed.created_at + (delayed.process_at - delayed.created_at)


async def test_database_clock_stamps_a_batch_with_one_time(make_pg: MakePg) -> None:
    ahead = await make_pg(clock=SkewedClock(3600))
    jobs = await ahead.enqueue_many([jobq.NewJob("t", i, delay=i) for i in range(5)])
    assert len({j.created_at for j in jobs}) == 1
    assert abs(jobs[0].created_at.timestamp() - time.time()) < 60
    for i, job in enumerate(jobs):
        assert (job.process_at - job.created_at).total_seconds() == i
        stored = await ahead.get_job(job.id)
        # Read back on a clock an hour ahead, every job is due by now.
        assert stored is not None and dataclasses.replace(stored, status=job.status) == job
    assert [j.status for j in jobs] == [jobq.JobStatus.PENDING] + [jobq.JobStatus.DELAYED] * 4


async def test_an_injected_clock_is_used_as_given(make_pg: MakePg) -> None:
    clock = jobq.FakeClock(1_000_000)
    queue = await make_pg(clock=clock)
    job = await queue.enqueue("t", 1)
    assert job.created_at.timestamp() == 1_000_000
    claimed = await queue.dequeue()
    assert claimed is not None and claimed.lease_expires_at is not None
    assert claimed.lease_expires_at.timestamp() == 1_000_000 + LEASE_S
    clock.advance(LEASE_S)
    rescued = await queue.rescue_expired()
    assert [r.id for r in rescued] == [job.id]


async def test_url_options_and_libpq_parameters(pg_url: str) -> None:
    async with jobq.connect(pg_url + "&table=other_jobs&lease=7&pool_size=2") as queue:
        assert isinstance(queue, jobq.PostgresQueue)
        assert store_of(queue).table == "other_jobs" and store_of(queue).pool_size == 2
        assert queue.lease == 7
        await queue.enqueue("t", 1)
        assert await queue.size() == 1
