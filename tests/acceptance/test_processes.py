"""Many worker processes on one SQLite file: exactly-once completion, lost
workers, concurrent producers, graceful SIGTERM.

Workers are real OS processes (see ``proc.py``); the parent polls the
database for completion with generous deadlines, never sleeps a fixed time.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest
from proc import (
    Child,
    Children,
    all_completed,
    executed,
    read_jsonl,
    rows,
    touch,
    wait_until,
)

import jobq

pytestmark = pytest.mark.slow


def enqueue(db: Path, specs: Sequence[jobq.NewJob], chunk: int = 250) -> list[jobq.Job[Any]]:
    async def go() -> list[jobq.Job[Any]]:
        async with jobq.SQLiteQueue(db) as queue:
            jobs: list[jobq.Job[Any]] = []
            for start in range(0, len(specs), chunk):
                jobs += await queue.enqueue_many(specs[start : start + chunk])
            return jobs

    return asyncio.run(go())


def wait_ready(children: Children, workdir: Path, names: Iterable[str]) -> None:
    names = list(names)
    wait_until(
        lambda: all((workdir / f"ready-{n}").exists() for n in names),
        f"workers {names} to start",
        children=children,
    )


def stop(workers: Iterable[Child], timeout: float = 60) -> None:
    """SIGTERM, then each must exit 0 on its own."""
    workers = list(workers)
    for w in workers:
        w.signal(signal.SIGTERM)
    for w in workers:
        code = w.wait(timeout)
        assert code == 0, w.describe()


def assert_clean_stderr(workers: Iterable[Child]) -> None:
    for w in workers:
        text = w.stderr()
        lowered = text.lower()
        assert "locked" not in lowered and "busy" not in lowered, w.describe()
        assert text == "", w.describe()


def assert_exactly_once(workdir: Path, ids: Iterable[str]) -> None:
    ids = list(ids)
    assert len(set(ids)) == len(ids), "the queue handed out a duplicate id"
    counts = executed(workdir)
    duplicates = {job_id: n for job_id, n in counts.items() if n != 1}
    assert not duplicates, f"{len(duplicates)} jobs ran more than once: {list(duplicates.items())[:10]}"
    missing = set(ids) - set(counts)
    unexpected = set(counts) - set(ids)
    assert not missing, f"{len(missing)} jobs never ran, e.g. {sorted(missing)[:5]}"
    assert not unexpected, f"{len(unexpected)} unknown jobs ran, e.g. {sorted(unexpected)[:5]}"
    assert sorted(counts.elements()) == sorted(ids)


def assert_all_completed_first_try(db: Path, workdir: Path, ids: Iterable[str]) -> None:
    by_id = rows(db)
    ran_by = {e["id"]: e["worker"] for e in read_jsonl(workdir, "exec")}
    for job_id in ids:
        row = by_id[job_id]
        assert row["status"] == "completed", row
        assert row["attempts"] == 0 and row["lost_count"] == 0 and row["error"] is None, row
        # The claim is gone; the worker that completed it stays (the history's last attempt).
        assert row["lease_token"] is None and row["lease_owner"] == ran_by[job_id], row
        assert row["completed_at"] is not None, row
        # The stored result is the one returned by the worker that ran it.
        assert json.loads(row["result"]) == {"by": ran_by[job_id]}, row
    assert len(by_id) == len(list(ids))


def test_four_worker_processes_drain_4000_jobs_exactly_once(
    db: Path, workdir: Path, children: Children
) -> None:
    total = 4000
    names = [f"w{i}" for i in range(4)]
    workers = [
        children.spawn("worker", {"db": str(db), "concurrency": 8, "handlers": {"t": "record"}}, n)
        for n in names
    ]
    wait_ready(children, workdir, names)

    jobs = enqueue(db, [jobq.NewJob("t", {"n": n}, priority=n % 3) for n in range(total)])
    ids = [j.id for j in jobs]

    wait_until(all_completed(db, total), f"{total} jobs completed", children=children, timeout=200)
    stop(workers)

    assert_exactly_once(workdir, ids)
    assert_all_completed_first_try(db, workdir, ids)
    data = {e["id"]: e["data"] for e in read_jsonl(workdir, "exec")}
    assert {data[j.id]["n"] for j in jobs} == set(range(total))
    assert_clean_stderr(workers)


def test_sigkilled_worker_job_is_rescued_and_completed_by_another_worker(
    db: Path, workdir: Path, children: Children
) -> None:
    lease = {"lease": 1.0, "heartbeat_interval": 0.3, "rescue_interval": 0.2, "concurrency": 2}
    (job,) = enqueue(db, [jobq.NewJob("t", {"payload": "survives"})])

    a = children.spawn("worker", {"db": str(db), "handlers": {"t": "block"}, **lease}, "worker-A")
    wait_until(
        lambda: (workdir / f"started-{job.id}").exists(), "worker A to start the job", children=children
    )
    held = rows(db)[job.id]
    assert held["status"] == "processing" and held["lease_owner"] == "worker-A", held

    os.kill(a.pid, signal.SIGKILL)
    assert a.wait(30) == -signal.SIGKILL

    b = children.spawn("worker", {"db": str(db), "handlers": {"t": "record"}, **lease}, "worker-B")
    wait_until(all_completed(db, 1), "worker B to complete the rescued job", alive=[b], children=children)
    stop([b])

    row = rows(db)[job.id]
    assert row["status"] == "completed", row
    assert row["attempts"] == 1 and row["lost_count"] == 1, row
    assert row["lease_token"] is None and row["lease_owner"] == "worker-B", row
    assert json.loads(row["result"]) == {"by": "worker-B"}

    # A started it once and never finished; B finished it once, seeing one lost attempt.
    starts = read_jsonl(workdir, "start")
    assert [(s["worker"], s["id"]) for s in starts] == [("worker-A", job.id)]
    runs = read_jsonl(workdir, "exec")
    assert len(runs) == 1, runs
    assert runs[0]["worker"] == "worker-B" and runs[0]["id"] == job.id
    assert runs[0]["attempts"] == 1 and runs[0]["lost_count"] == 1
    assert runs[0]["data"] == {"payload": "survives"}

    # Before it was completed, the job's error named the lost worker.
    lost = [e for e in read_jsonl(workdir, "events") if e["event"] == "job_lost"]
    assert len(lost) == 1, lost
    assert lost[0]["id"] == job.id and lost[0]["status"] == "pending", lost
    assert lost[0]["attempts"] == 1 and lost[0]["lost_count"] == 1, lost
    assert "worker-A" in lost[0]["error"] and "lost" in lost[0]["error"], lost
    assert b.stderr().count("WARNING") == 1 and "was rescued" in b.stderr(), b.describe()


def test_eight_processes_enqueue_and_work_at_once_without_lock_errors(
    db: Path, workdir: Path, children: Children
) -> None:
    per_process, names = 500, [f"p{i}" for i in range(8)]
    workers = [
        children.spawn(
            "worker",
            {"db": str(db), "concurrency": 4, "produce": per_process, "handlers": {"t": "record"}},
            n,
        )
        for n in names
    ]
    wait_until(
        lambda: all((workdir / f"produced-{n}").exists() for n in names),
        "every producer to finish enqueueing",
        children=children,
        timeout=200,
    )
    total = per_process * len(names)
    wait_until(all_completed(db, total), f"{total} jobs completed", children=children, timeout=200)
    stop(workers)

    enqueued = read_jsonl(workdir, "enq")
    ids = [e["id"] for e in enqueued]
    assert len(ids) == total
    assert_exactly_once(workdir, ids)
    assert_all_completed_first_try(db, workdir, ids)
    produced = {(e["data"]["producer"], e["data"]["n"]) for e in read_jsonl(workdir, "exec")}
    assert produced == {(n, i) for n in names for i in range(per_process)}
    assert_clean_stderr(workers)


def test_sigterm_finishes_short_jobs_and_releases_long_ones(
    db: Path, workdir: Path, children: Children
) -> None:
    jobs = enqueue(
        db,
        [
            jobq.NewJob("short", {"i": 0}, priority=10),
            jobq.NewJob("long", {"i": 1}, priority=10),
            jobq.NewJob("short", {"i": 2}, priority=10),
            jobq.NewJob("long", {"i": 3}, priority=10),
            # Waiting behind the four above: never started before the stop.
            jobq.NewJob("short", {"i": 4}, priority=0),
            jobq.NewJob("long", {"i": 5}, priority=0),
        ],
    )
    short, long, queued = jobs[0:3:2], jobs[1:4:2], jobs[4:]
    first = children.spawn(
        "worker",
        {
            "db": str(db),
            "concurrency": 4,
            "shutdown_timeout": 2.0,
            "handlers": {"short": "wait_go", "long": "block"},
        },
        "first",
    )
    wait_ready(children, workdir, ["first"])
    wait_until(
        lambda: all((workdir / f"started-{j.id}").exists() for j in short + long),
        "the four urgent jobs to start",
        children=children,
    )
    before = rows(db)
    assert all(before[j.id]["status"] == "processing" for j in short + long), before
    assert all(before[j.id]["status"] == "pending" for j in queued), before

    sent = time.monotonic()
    first.signal(signal.SIGTERM)
    touch(workdir / "go")  # the short jobs finish only once SIGTERM was sent
    assert first.wait(60) == 0, first.describe()
    took = time.monotonic() - sent
    assert took >= 1.9, f"exited {took:.2f} s after SIGTERM, before its 2 s grace period"
    assert (workdir / "stopped-first").exists()
    assert first.stderr() == "", first.describe()

    after = rows(db)
    for j in short:
        assert after[j.id]["status"] == "completed", after[j.id]
        assert after[j.id]["attempts"] == 0 and json.loads(after[j.id]["result"]) == {"by": "first"}
    for j in long + queued:
        row = after[j.id]
        assert row["status"] == "pending", row
        assert row["attempts"] == 0 and row["lost_count"] == 0 and row["error"] is None, row
        assert row["lease_token"] is None and row["lease_owner"] is None, row
        assert row["scheduled_at"] is None, row
        # Back in its old place in line: due when it was first due.
        assert row["process_at"] == row["created_at"], row
    starts = read_jsonl(workdir, "start")
    assert sorted(s["id"] for s in starts if not s.get("cancelled")) == sorted(j.id for j in short + long)
    assert sorted(s["id"] for s in starts if s.get("cancelled")) == sorted(j.id for j in long)

    # A fresh worker with a 30 s lease runs the released jobs at once: had they
    # been left claimed, they could only run after that lease expired.
    second = children.spawn(
        "worker",
        {"db": str(db), "concurrency": 4, "handlers": {"short": "record", "long": "record"}},
        "second",
    )
    started = time.monotonic()
    wait_until(
        all_completed(db, len(jobs)),
        "the released jobs to complete",
        children=children,
        alive=[second],
        timeout=20,
    )
    assert time.monotonic() - started < 20
    stop([second])

    assert_exactly_once(workdir, [j.id for j in jobs])
    final = rows(db)
    for j in long + queued:
        assert final[j.id]["status"] == "completed" and final[j.id]["attempts"] == 0, final[j.id]
        assert json.loads(final[j.id]["result"]) == {"by": "second"}
    assert second.stderr() == "", second.describe()
