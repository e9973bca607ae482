"""k-msg compatibility, both ways, on one database file.

The k-msg side is k-msg's SQLite job queue
(packages/messaging/src/queue/sqlite-job-queue.ts): the SQL in
``tests/kmsg_sql.py`` (used through ``proc.py``'s ``kmsg_*``) is its
statements, reproduced as facts with Python's sqlite3. k-msg workers beside
jobq workers are in ``test_kmsg_workers.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from pathlib import Path
from typing import Any

import pytest
from proc import (
    Children,
    all_completed,
    kmsg_complete,
    kmsg_connect,
    kmsg_dequeue,
    kmsg_enqueue,
    kmsg_fail,
    kmsg_init,
    kmsg_size,
    now_ms,
    read_jsonl,
    rows,
    wait_until,
)

import jobq
from jobq.clock import from_ms, to_ms

pytestmark = pytest.mark.slow

KMSG_FIELDS = (
    "id", "type", "data", "status", "priority", "attempts", "max_attempts", "delay",
    "created_at", "process_at", "completed_at", "failed_at", "error", "metadata",
)  # fmt: skip


def test_kmsg_creates_the_table_then_a_jobq_worker_runs_its_rows(
    db: Path, workdir: Path, children: Children
) -> None:
    rng = random.Random(7)
    t0 = now_ms() - 10_000
    with contextlib.closing(kmsg_connect(db)) as k:
        kmsg_init(k)
        inserted = [
            kmsg_enqueue(k, "t", {"to": "+821012345678", "text": "안녕하세요"}, now=t0, rng=rng,
                         priority=1, metadata={"tenant": "a", "tags": ["x", "y"]}),
            kmsg_enqueue(k, "t", [1, 2.5, None, True, "✓"], now=t0 + 1, rng=rng, priority=9,
                         max_attempts=5),
            kmsg_enqueue(k, "t", "plain string", now=t0 + 2, rng=rng, priority=1,
                         metadata={"nested": {"deep": [1, {"z": None}]}}),
            kmsg_enqueue(k, "t", None, now=t0 + 3, rng=rng, priority=5, delay_ms=100),
            kmsg_enqueue(k, "t", {"n": 0}, now=t0 + 4, rng=rng, priority=0, metadata={}),
        ]  # fmt: skip
    # k-msg's dequeue order: priority DESC, process_at ASC, created_at ASC.
    order = [
        row["id"]
        for row in sorted(inserted, key=lambda r: (-r["priority"], r["process_at"], r["created_at"]))
    ]
    by_id = {row["id"]: row for row in inserted}

    async def open_with_jobq() -> None:
        async with jobq.SQLiteQueue(db) as queue:  # migrates the k-msg table
            assert await queue.size() == len(inserted)
            peeked = await queue.peek()
            assert peeked is not None and peeked.id == order[0]
            for row in inserted:
                job = await queue.get_job(row["id"])
                assert job is not None
                assert job.status is jobq.JobStatus.PENDING
                assert job.type == "t" and job.data == json.loads(row["data"])
                assert job.metadata == (json.loads(row["metadata"]) if row["metadata"] else {})
                assert (job.priority, job.attempts, job.max_attempts) == (
                    row["priority"],
                    0,
                    row["max_attempts"],
                )
                assert job.delay == row["delay"] / 1000
                assert job.created_at == from_ms(row["created_at"])
                assert job.process_at == from_ms(row["process_at"])

    asyncio.run(open_with_jobq())
    with contextlib.closing(kmsg_connect(db)) as k:
        columns = [r[1] for r in k.execute("PRAGMA table_info(jobs)")]
        assert columns[: len(KMSG_FIELDS)] == list(KMSG_FIELDS)
        assert {"queue", "result", "lease_token", "lease_owner", "scheduled_at", "lost_count"} <= set(columns)
        indexes = {r[1] for r in k.execute("PRAGMA index_list(jobs)")}
        assert "idx_jobs_dequeue" in indexes

    worker = children.spawn("worker", {"db": str(db), "concurrency": 1, "handlers": {"t": "record"}}, "w")
    wait_until(all_completed(db, len(inserted)), "the k-msg rows to complete", children=children)
    worker.signal(15)
    assert worker.wait(60) == 0, worker.describe()
    assert worker.stderr() == "", worker.describe()

    runs = read_jsonl(workdir, "exec")
    assert [r["id"] for r in runs] == order  # one at a time, in k-msg's order, each once
    for run in runs:
        row = by_id[run["id"]]
        assert run["data"] == json.loads(row["data"])
        assert run["metadata"] == (json.loads(row["metadata"]) if row["metadata"] else {})
        assert run["attempts"] == 0

    # As k-msg reads them: completed, nothing left to dequeue.
    with contextlib.closing(kmsg_connect(db)) as k:
        finished = {r[0]: r[1:] for r in k.execute("SELECT id, status, completed_at, attempts FROM jobs")}
        assert set(finished) == set(by_id)
        for status, completed_at, attempts in finished.values():
            assert status == "completed" and isinstance(completed_at, int) and attempts == 0
        assert kmsg_size(k, now_ms()) == 0
        assert kmsg_dequeue(k, now_ms()) is None


async def test_jobq_creates_the_file_and_kmsg_statements_serve_its_jobs(db: Path) -> None:
    clock = jobq.FakeClock(time.time() - 60)
    async with jobq.SQLiteQueue(db, clock=clock, lease=5) as queue:
        made: dict[str, jobq.Job[Any]] = {}
        for name, priority in (("low", 0), ("high", 10), ("mid1", 5), ("mid2", 5)):
            made[name] = await queue.enqueue(
                "send", {"name": name, "text": "héllo ✓"}, priority=priority, metadata={"who": name}
            )
            clock.advance(0.001)
        later = await queue.enqueue("send", {"name": "later"}, priority=100, delay=30, max_attempts=4)
        assert later.status is jobq.JobStatus.DELAYED
        now = jobq.clock.now_ms(clock)

        with contextlib.closing(kmsg_connect(db)) as k:
            assert kmsg_size(k, now) == 4 == await queue.size()

            claimed = []
            while (row := kmsg_dequeue(k, now)) is not None:
                claimed.append(row)
            assert [r["id"] for r in claimed] == [made[n].id for n in ("high", "mid1", "mid2", "low")]
            for row in claimed:
                name = json.loads(row["data"])["name"]
                assert json.loads(row["data"]) == {"name": name, "text": "héllo ✓"}
                assert json.loads(row["metadata"]) == {"who": name}
                assert row["status"] == "processing" and row["type"] == "send"
                assert (row["attempts"], row["max_attempts"], row["delay"]) == (0, 3, 0)
                # No lease: process_at stays the time the job was due.
                assert row["process_at"] == row["created_at"] == to_ms(made[name].created_at.timestamp())
                job = await queue.get_job(row["id"])
                assert job is not None and job.status is jobq.JobStatus.PROCESSING
                assert job.lease_expires_at is None and job.lease_owner is None
            # k-msg holds them (the rescue that dequeue runs first leaves them
            # alone, long past any jobq lease); the delayed one is not due.
            clock.advance(20)
            now = jobq.clock.now_ms(clock)
            assert await queue.dequeue() is None
            for row in claimed:
                held = await queue.get_job(row["id"])
                assert held is not None and held.status is jobq.JobStatus.PROCESSING and held.attempts == 0

            # The delayed job is not k-msg's to claim before its time...
            due = to_ms(later.process_at.timestamp())
            assert due == to_ms(later.created_at.timestamp()) + 30_000
            assert kmsg_size(k, due - 1) == 0
            assert kmsg_dequeue(k, due - 1) is None
            # ...and it is at its time.
            row = kmsg_dequeue(k, due)
            assert row is not None and row["id"] == later.id and row["delay"] == 30_000
            assert row["max_attempts"] == 4 and json.loads(row["data"]) == {"name": "later"}

            # k-msg completes three and fails one with a retry.
            for row in claimed[:3]:
                assert kmsg_complete(k, row["id"], now + 5) == 1
            low = made["low"].id
            kmsg_fail(k, low, "smtp down", should_retry=True, now=now + 5)
            assert kmsg_complete(k, later.id, due + 7) == 1

        for row in claimed[:3]:
            job = await queue.get_job(row["id"])
            assert job is not None and job.status is jobq.JobStatus.COMPLETED
            assert job.completed_at == from_ms(now + 5) and job.attempts == 0
            assert job.data == json.loads(row["data"]) and job.metadata == json.loads(row["metadata"])
        finished_later = await queue.get_job(later.id)
        assert finished_later is not None and finished_later.status is jobq.JobStatus.COMPLETED
        assert finished_later.completed_at == from_ms(due + 7)

        # k-msg's retry leaves process_at as it was: due again at once.
        retried = await queue.get_job(low)
        assert retried is not None and retried.status is jobq.JobStatus.PENDING
        assert retried.attempts == 1 and retried.error == "smtp down" and retried.lost_count == 0
        assert retried.process_at == made["low"].process_at
        again = await queue.dequeue()
        assert again is not None and again.id == low and again.attempts == 1
        assert again.data == {"name": "low", "text": "héllo ✓"}
        await queue.complete(again, "sent")
        done = await queue.get_job(low)
        assert done is not None and done.status is jobq.JobStatus.COMPLETED and done.result == "sent"
        assert await queue.counts() == {
            **{s: 0 for s in jobq.JobStatus},
            jobq.JobStatus.COMPLETED: 5,
        }


def test_kmsg_producer_and_jobq_workers_share_one_file_at_once(
    db: Path, workdir: Path, children: Children
) -> None:
    total = 1000
    producer = children.spawn("kmsg_produce", {"db": str(db), "count": total}, "kmsg")
    workers = [
        children.spawn("worker", {"db": str(db), "concurrency": 8, "handlers": {"t": "record"}}, f"w{i}")
        for i in range(2)
    ]
    assert producer.wait(200) == 0, producer.describe()
    assert producer.stderr() == "", producer.describe()
    wait_until(all_completed(db, total), f"{total} k-msg jobs completed", children=children,
               alive=workers, timeout=200)  # fmt: skip
    # On a loaded machine one worker may take every job before the other is
    # up: SIGTERM only once both run (and handle it).
    wait_until(lambda: all((workdir / f"ready-{w.name}").exists() for w in workers), "both workers to start",
               children=children, alive=workers)  # fmt: skip
    for w in workers:
        w.signal(15)
    for w in workers:
        assert w.wait(60) == 0, w.describe()
        assert w.stderr() == "", w.describe()

    enqueued = {e["id"]: e["data"] for e in read_jsonl(workdir, "enq")}
    assert len(enqueued) == total
    runs = read_jsonl(workdir, "exec")
    ids = [r["id"] for r in runs]
    duplicates = {i for i in ids if ids.count(i) > 1} if len(set(ids)) != len(ids) else set()
    assert not duplicates, f"ran more than once: {sorted(duplicates)[:10]}"
    assert sorted(ids) == sorted(enqueued)
    for run in runs:
        assert run["data"] == enqueued[run["id"]]
        assert run["metadata"] == {"source": "k-msg", "n": run["data"]["n"]}
        assert run["attempts"] == 0
    final = rows(db)
    assert len(final) == total
    for row in final.values():
        assert row["status"] == "completed" and row["attempts"] == 0 and row["lost_count"] == 0, row
        assert row["lease_token"] is None and row["error"] is None, row
    with contextlib.closing(kmsg_connect(db)) as k:
        assert kmsg_size(k, now_ms() + 60_000) == 0
