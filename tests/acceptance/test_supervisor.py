"""``jobq worker APP --processes N``: a supervisor over real worker processes.

Each test writes a small app module into its work directory and runs the
``jobq`` command there; children record their pid when ready and for each
job they run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from proc import all_completed, read_jsonl, rows, wait_until

import jobq

pytestmark = pytest.mark.slow

APP = textwrap.dedent(
    """
    import asyncio, json, os
    from pathlib import Path
    import jobq

    HERE = Path(__file__).resolve().parent

    def log(kind, value):
        fd = os.open(HERE / f"{kind}-{os.getpid()}.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        os.write(fd, (json.dumps(value) + "\\n").encode())
        os.close(fd)

    def make_processor(queue):
        processor = jobq.JobProcessor(queue, concurrency=1, poll_interval=0.1, shutdown_timeout=30)

        @processor.handler("work")
        async def work(job):
            log("start", {"id": job.id, "pid": os.getpid()})
            await asyncio.sleep(job.data.get("sleep", 0))
            log("exec", {"id": job.id, "pid": os.getpid()})
            return os.getpid()

        processor.on("processor_started", lambda e: log("ready", {"pid": os.getpid()}))
        return processor
    """
)


def enqueue(db: Path, count: int, **data: Any) -> list[str]:
    async def go() -> list[str]:
        async with jobq.SQLiteQueue(db) as queue:
            jobs = await queue.enqueue_many([jobq.NewJob("work", dict(data)) for _ in range(count)])
            return [j.id for j in jobs]

    return asyncio.run(go())


def ready_pids(workdir: Path) -> list[int]:
    return [entry["pid"] for entry in read_jsonl(workdir, "ready")]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) is not alive.
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            return False
    return True


@pytest.fixture
def supervise(workdir: Path, db: Path) -> Iterator[Any]:
    """Starts ``jobq worker app:make_processor --processes ...`` in the work
    directory; kills it and every child it started at the end."""
    (workdir / "app.py").write_text(APP)
    started: list[subprocess.Popen[bytes]] = []

    def start(*flags: str) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "jobq", "--log-level", "WARNING", "worker", "app:make_processor"]
        command += ["--url", f"sqlite:///{db}", *flags]
        with open(workdir / f"supervisor-{len(started)}.err", "wb") as err:
            popen = subprocess.Popen(command, cwd=workdir, stdout=err, stderr=err, stdin=subprocess.DEVNULL)
        started.append(popen)
        return popen

    yield start
    for popen in started:
        if popen.poll() is None:
            popen.kill()
            popen.wait(30)
    for pid in ready_pids(workdir):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_a_killed_child_is_replaced_and_the_replacement_works(
    supervise: Any, workdir: Path, db: Path
) -> None:
    supervisor = supervise("--processes", "2")
    first = wait_until(lambda: len(ready_pids(workdir)) >= 2 and ready_pids(workdir), "two children")
    victim, survivor = first[:2]
    os.kill(victim, signal.SIGKILL)
    replaced = wait_until(
        lambda: [p for p in ready_pids(workdir) if p not in (victim, survivor)], "a replacement child"
    )
    replacement = replaced[0]
    assert supervisor.poll() is None and alive(survivor) and not alive(victim)
    ids = enqueue(db, 30, sleep=0.02)
    wait_until(all_completed(db, len(ids)), "the jobs to complete")
    ran_by = {entry["pid"] for entry in read_jsonl(workdir, "exec")}
    assert replacement in ran_by and victim not in ran_by
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(60) == 0
    assert not alive(survivor) and not alive(replacement)


def test_sigterm_stops_every_child_gracefully(supervise: Any, workdir: Path, db: Path) -> None:
    supervisor = supervise("--processes", "3")
    children = wait_until(lambda: len(ready_pids(workdir)) >= 3 and ready_pids(workdir), "three children")
    ids = enqueue(db, 3, sleep=1.0)
    wait_until(lambda: len(read_jsonl(workdir, "start")) >= 3, "the three jobs to start")
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(60) == 0, (workdir / "supervisor-0.err").read_text()
    # Jobs in flight were finished, not dropped or released.
    assert {r["status"] for r in rows(db).values()} == {"completed"}
    assert sorted(e["id"] for e in read_jsonl(workdir, "exec")) == sorted(ids)
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in children)


def test_max_jobs_per_child_recycles_children(supervise: Any, workdir: Path, db: Path) -> None:
    supervisor = supervise("--processes", "1", "--max-jobs-per-child", "3")
    wait_until(lambda: ready_pids(workdir), "the first child")
    ids = enqueue(db, 12)
    wait_until(all_completed(db, len(ids)), "the jobs to complete", timeout=60)
    per_child: dict[int, int] = {}
    for entry in read_jsonl(workdir, "exec"):
        per_child[entry["pid"]] = per_child.get(entry["pid"], 0) + 1
    # A child stops claiming once it has finished 3 jobs (one claimed
    # meanwhile still finishes), so 12 jobs need at least 3 children.
    assert len(per_child) >= 3, per_child
    assert max(per_child.values()) <= 4, per_child
    assert sum(per_child.values()) == len(ids)
    supervisor.send_signal(signal.SIGTERM)
    assert supervisor.wait(60) == 0


def test_a_bad_target_fails_once_without_starting_children(supervise: Any, workdir: Path) -> None:
    (workdir / "app.py").write_text("raise ImportError('broken app')\n")
    supervisor = supervise("--processes", "2")
    assert supervisor.wait(60) == 1
    assert "broken app" in (workdir / "supervisor-0.err").read_text()
    assert ready_pids(workdir) == []


def test_children_stop_when_their_supervisor_is_killed(supervise: Any, workdir: Path) -> None:
    supervisor = supervise("--processes", "2")
    children = wait_until(lambda: len(ready_pids(workdir)) >= 2 and ready_pids(workdir), "two children")
    supervisor.kill()
    supervisor.wait(30)
    wait_until(lambda: not any(alive(pid) for pid in children), "the orphaned children to stop", timeout=30)
