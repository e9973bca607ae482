"""A worker's duties (claim loop, rescuer, lease renewal, outcome writes)
hold up against what used to stop them, with real worker processes on one
SQLite file (see ``duties_proc.py``).

Regressions, each seen with real workers:

- rows another program wrote with the wrong types (a text ``created_at``
  left ``processing`` by a dead worker, a text ``process_at``, text in an
  integer column) stopped the rescuer, ended the claim loop of a worker that
  stayed alive, or made a claim raise after it committed, stranding the
  good jobs of its batch;
- a duty that cannot recover now stops its worker with a non-zero exit;
- an ``async`` handler blocking the event loop past the lease stopped the
  heartbeat: its job ran three times across two workers and failed;
- a completion whose write met ``StoreUnavailable`` was dropped, so the
  finished job ran again after its lease;
- good jobs claimed beside a job that kills its worker lost a lease at each
  crash, and could be quarantined with it.

Every job is counted (each execution is logged by the handler), waits are
generous deadlines on what the store and the logs say, never fixed sleeps
that a slow machine could outrun.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from duties_proc import BOOT
from proc import Child, Children, connect_db, read_jsonl, rows, touch, wait_until

import jobq

pytestmark = pytest.mark.slow

LOOP_BLOCKED = "the event loop has not run for"


def spawn(children: Children, db: Path, name: str, **cfg: Any) -> Child:
    """A worker process (``duties_proc.worker``) named ``name`` on ``db``."""
    cfg = {"dir": str(children.workdir), "db": str(db), "name": name, **cfg}
    out, err = children.workdir / f"{name}.out", children.workdir / f"{name}.err"
    with open(out, "wb") as out_file, open(err, "wb") as err_file:
        popen = subprocess.Popen(
            [sys.executable, "-c", BOOT, json.dumps(cfg)],
            stdout=out_file,
            stderr=err_file,
            stdin=subprocess.DEVNULL,
        )
    child = Child(name, popen, out, err)
    children.all.append(child)
    return child


def enqueue(db: Path, *specs: jobq.NewJob) -> list[str]:
    async def go() -> list[str]:
        async with jobq.SQLiteQueue(db) as queue:
            return [job.id for job in await queue.enqueue_many(list(specs))]

    return asyncio.run(go())


def ready(children: Children, *workers: Child) -> None:
    wait_until(
        lambda: all((children.workdir / f"ready-{w.name}").exists() for w in workers),
        "the workers to start",
        children=children,
        alive=workers,
    )


def runs(workdir: Path, log: str = "exec") -> collections.Counter[str]:
    """How many times a handler finished (``exec``) or started (``start``) each job."""
    return collections.Counter(entry["id"] for entry in read_jsonl(workdir, log))


def terminate(*workers: Child) -> None:
    """SIGTERM; each must exit 0 on its own."""
    for worker in workers:
        worker.signal(signal.SIGTERM)
    for worker in workers:
        assert worker.wait(60) == 0, worker.describe()


def now_ms() -> int:
    return int(time.time() * 1000)


def insert_raw(db: Path, **values: Any) -> str:
    """A row written by another program (a k-msg producer, a script), any
    value in any column; returns its id."""
    row = {
        "type": "t", "data": "{}", "status": "pending", "priority": 0, "attempts": 0, "max_attempts": 3,
        "delay": 0, "created_at": now_ms(), "process_at": now_ms(), "metadata": None, **values,
    }  # fmt: skip
    with contextlib.closing(connect_db(db)) as conn:
        conn.execute(
            f"INSERT INTO jobs ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})", tuple(row.values())
        )
    return str(row["id"])


def open_schema(db: Path) -> None:
    async def go() -> None:
        async with jobq.SQLiteQueue(db):
            pass

    asyncio.run(go())


# -- 1. rows that cannot be read -------------------------------------------------


def test_unreadable_rows_fail_alone_and_every_duty_goes_on(
    children: Children, workdir: Path, db: Path
) -> None:
    open_schema(db)
    expired = now_ms() - 60_000
    dead = {"status": "processing", "lease_owner": "dead-worker", "scheduled_at": expired - 1000}
    # Left processing by a worker that died: one readable, three not.
    lost_good = insert_raw(db, id="lost-good", process_at=expired, lease_token="t1", **dead)
    bad_created = insert_raw(
        db, id="bad-created", created_at="abc", process_at=expired, lease_token="t2", **dead
    )
    bad_lease_end = insert_raw(
        db, id="bad-lease-end", process_at="2024-01-01 00:00:00", lease_token="t3", **dead
    )
    bad_lost = insert_raw(db, id="bad-lost", lost_count="none", process_at=expired, lease_token="t4", **dead)
    # Waiting: one that no claim can take, two that a claim takes among good ones.
    bad_due = insert_raw(db, id="bad-due", process_at="2024-01-01 00:00:00")
    bad_priority = insert_raw(db, id="bad-priority", priority="high", process_at=now_ms() - 5000)
    bad_attempts = insert_raw(db, id="bad-attempts", attempts="x", process_at=now_ms() - 5000)
    good = enqueue(db, *(jobq.NewJob("t", {"n": i, "sleep": 0.05}) for i in range(12)))

    worker = spawn(children, db, "w1", concurrency=8, rescue_interval=0.2, poll_interval=0.2)
    ready(children, worker)
    expected_errors = {
        bad_created: "column created_at holds 'abc', not a time in ms",
        bad_lease_end: "column process_at holds '2024-01-01 00:00:00', not a time in ms",
        bad_lost: "column lost_count holds 'none', not a number",
        bad_due: "column process_at holds '2024-01-01 00:00:00', not a time in ms",
        bad_priority: "column priority holds 'high', not a number",
        bad_attempts: "column attempts holds 'x', not a number",
    }

    def settled() -> bool:
        stored = rows(db)
        return all(stored[i]["status"] == "completed" for i in [*good, lost_good]) and all(
            stored[i]["status"] == "failed" for i in expected_errors
        )

    wait_until(
        settled,
        "the good jobs to complete and the unreadable ones to fail",
        children=children,
        alive=[worker],
    )
    # The claim loop still claims: jobs enqueued now run too.
    later = enqueue(db, *(jobq.NewJob("t", {"n": i}) for i in range(5)))
    wait_until(
        lambda: all(rows(db)[i]["status"] == "completed" for i in later),
        "jobs enqueued later to complete",
        children=children,
        alive=[worker],
    )
    assert worker.alive()
    terminate(worker)

    stored = rows(db)
    for job_id, error in expected_errors.items():
        assert stored[job_id]["status"] == "failed", (job_id, stored[job_id])
        assert error in stored[job_id]["error"], (job_id, stored[job_id]["error"])
    executions = runs(workdir)
    assert executions == {i: 1 for i in [*good, *later, lost_good]}  # each once, the bad ones never
    assert stored[lost_good]["lost_count"] == 1 and stored[lost_good]["attempts"] == 1
    stderr = worker.stderr()
    assert "Task exception was never retrieved" not in stderr and "Traceback" not in stderr, stderr


def test_a_duty_that_cannot_recover_stops_its_worker_non_zero(
    children: Children, workdir: Path, db: Path
) -> None:
    """The rescuer fails on every sweep with an error jobq does not know:
    each failure is logged with its traceback, and after ``give_up_after``
    in a row the worker stops and exits non-zero (its supervisor restarts
    it), rather than living on without a rescuer."""
    open_schema(db)
    worker = spawn(children, db, "w1", break_rescue=True, give_up_after=3, rescue_interval=0.1)
    ready(children, worker)
    started = time.monotonic()
    code = worker.wait(60)
    stderr = worker.stderr()
    assert code != 0, stderr
    assert stderr.count("rescue failed unexpectedly") == 2, stderr
    assert "a rescue sweep that always fails" in stderr and "WorkerFailed" in stderr, stderr
    assert time.monotonic() - started < 60


# -- 2. a handler that blocks the event loop -----------------------------------------


def test_a_blocked_event_loop_loses_no_lease(children: Children, workdir: Path, db: Path) -> None:
    """Two workers, leases of 2 s renewed every 0.5 s, and async handlers
    that block the loop for 6 s (three leases): every job runs once and
    completes, and each worker names the job that blocked its loop."""
    open_schema(db)
    options = {"lease": 2.0, "heartbeat_interval": 0.5, "rescue_interval": 0.5, "concurrency": 2}
    workers = [spawn(children, db, f"w{i}", **options) for i in range(2)]
    ready(children, *workers)
    blocking = enqueue(db, *(jobq.NewJob("t", {"do": "block_loop", "seconds": 6}) for _ in range(3)))
    quick = enqueue(db, *(jobq.NewJob("t", {"n": i}) for i in range(10)))
    wait_until(
        lambda: all(r["status"] == "completed" for r in rows(db).values()),
        "every job to complete",
        children=children,
        alive=workers,
    )
    terminate(*workers)
    stored = rows(db)
    assert runs(workdir, "start") == {i: 1 for i in [*blocking, *quick]}  # no job started twice
    assert runs(workdir) == {i: 1 for i in [*blocking, *quick]}
    assert all(stored[i]["attempts"] == 0 and stored[i]["lost_count"] == 0 for i in stored), stored
    blocked_by = {
        entry["id"]: entry["worker"] for entry in read_jsonl(workdir, "start") if entry["id"] in blocking
    }
    for job_id, name in blocked_by.items():
        stderr = next(w for w in workers if w.name == name).stderr()
        assert f"{LOOP_BLOCKED}" in stderr and f"job {job_id} (type t) is blocking it" in stderr, stderr


# -- 10. outcomes that could not be written at once -----------------------------------


def test_a_completion_is_written_once_the_store_is_back(children: Children, workdir: Path, db: Path) -> None:
    """The store refuses every write for a while (another process holds the
    write lock past the worker's busy timeout): the completion is tried
    again while the job's lease stands, and written once the lock is gone;
    the job runs once."""
    open_schema(db)
    worker = spawn(children, db, "w1", lease=20.0, heartbeat_interval=1.0, busy_timeout=0.5, concurrency=2)
    ready(children, worker)
    (job_id,) = enqueue(db, jobq.NewJob("t", {"do": "wait_go"}))
    wait_until(
        lambda: runs(workdir, "start")[job_id] == 1, "the job to start", children=children, alive=[worker]
    )
    with contextlib.closing(sqlite3.connect(str(db), isolation_level=None, timeout=30)) as lock:
        lock.execute("BEGIN IMMEDIATE")  # every write of the worker now waits, then fails
        touch(workdir / "go")
        wait_until(
            lambda: runs(workdir)[job_id] == 1, "the handler to return", children=children, alive=[worker]
        )
        wait_until(
            # (Before the fix: "could not record the result", and dropped.)
            lambda: any(seen in worker.stderr() for seen in ("outcomes failed", "could not record")),
            "the worker to meet the refused write",
            children=children,
            alive=[worker],
        )
        time.sleep(1.5)  # a few refused tries more (the lease is 20 s)
        lock.execute("ROLLBACK")
    wait_until(
        lambda: rows(db)[job_id]["status"] == "completed", "the completion", children=children, alive=[worker]
    )
    terminate(worker)
    assert "could not record the result" not in worker.stderr()  # never dropped
    done = rows(db)[job_id]
    assert done["attempts"] == 0 and done["lost_count"] == 0 and json.loads(done["result"]) == {"by": "w1"}
    assert runs(workdir, "start") == {job_id: 1} and runs(workdir) == {job_id: 1}


def test_good_jobs_beside_a_crashing_job_are_not_quarantined(
    children: Children, workdir: Path, db: Path
) -> None:
    """A job that kills its worker (``os._exit``) is claimed in a batch with
    good jobs, which lose a lease with it. A job one lost worker away from
    quarantine runs alone, so the crashing job is quarantined after three
    lost workers and no good job is: every good job completes."""
    open_schema(db)
    options = {"lease": 1.5, "heartbeat_interval": 0.4, "rescue_interval": 0.3, "concurrency": 4}
    crash = enqueue(db, jobq.NewJob("t", {"do": "crash"}, priority=1, max_attempts=9))[0]
    good = enqueue(db, *(jobq.NewJob("t", {"n": i, "sleep": 0.3}, priority=1) for i in range(7)))
    good += enqueue(db, *(jobq.NewJob("t", {"n": i, "sleep": 0.05}) for i in range(30)))
    incarnation = collections.Counter[str]()
    live = [spawn(children, db, f"w{i}-0", **options) for i in range(2)]
    deaths = 0

    def settled() -> bool:
        nonlocal deaths
        for i, worker in enumerate(live):
            if not worker.alive():
                assert worker.popen.returncode == 1, worker.describe()  # only the poison kills
                deaths += 1
                incarnation[f"w{i}"] += 1
                live[i] = spawn(children, db, f"w{i}-{incarnation[f'w{i}']}", **options)
        stored = rows(db)
        return all(r["status"] in ("completed", "failed") for r in stored.values())

    wait_until(settled, "every job to complete or fail", interval=0.1)
    ready(children, *live)
    terminate(*live)
    stored = rows(db)
    assert stored[crash]["status"] == "failed" and stored[crash]["lost_count"] == 3
    assert stored[crash]["error"].startswith("quarantined after 3"), stored[crash]["error"]
    assert deaths == 3
    assert all(stored[i]["status"] == "completed" for i in good), [
        stored[i] for i in good if stored[i]["status"] != "completed"
    ]
    assert max(stored[i]["lost_count"] for i in good) <= 2  # never a third time: never quarantined
    executions = runs(workdir)
    assert set(executions) == set(good) and executions[crash] == 0
    # A good job runs again only if it was in flight at a crash.
    assert all(executions[i] == 1 for i in good if stored[i]["lost_count"] == 0)
