"""Durability, seen from the kernel: under ``durability="full"`` an enqueue
and a completion each commit with a sync (``fsync``/``fdatasync``) before
they return, and a claim alone does not; under ``"fast"`` none of them syncs
(WAL with ``synchronous=NORMAL`` syncs at checkpoints only). A processor's
completion, committed along with its next claim and synced apart, is
reported (``job_completed``) only after that sync.

A child process runs the verbs under ``strace -f`` (its database thread
commits), marking where each verb starts with an ``access()`` call on a path
that names it; the syncs between two marks are that verb's.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

STRACE = "/usr/bin/strace"  # make test installs it (.ci/test.sh), as apt-get install strace does

CHILD = """
import asyncio, os, sys
import jobq

def mark(name):
    os.access("/jobq-mark-" + name, os.F_OK)

async def main(path, durability):
    async with jobq.SQLiteQueue(path, durability=durability) as queue:
        await queue.size()  # the schema is made before the first mark
        mark("enqueue")
        await queue.enqueue("t", {"n": 1})
        mark("claim")
        job = await queue.dequeue()
        mark("complete")
        await queue.complete(job, {"ok": True})
        mark("end")

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""

PROCESSOR_CHILD = """
import asyncio, os, sys
import jobq

def mark(name):
    os.access("/jobq-mark-" + name, os.F_OK)

async def main(path, durability):
    async with jobq.SQLiteQueue(path, durability=durability) as queue:
        done = asyncio.Event()

        async def handler(job):
            if job.data["n"] == 0:
                mark("handled")

        def completed(event):
            if not done.is_set():
                mark("reported")
                done.set()

        # One at a time: the first job's completion is written with the
        # claim of the next, in one transaction.
        processor = jobq.JobProcessor(queue, concurrency=1)
        processor.handle("t", handler)
        processor.on("job_completed", completed)
        await processor.start()
        await asyncio.sleep(0.5)  # its start-up writes (the worker registry) are done
        await queue.enqueue_many([jobq.NewJob("t", {"n": n}) for n in range(3)])
        await asyncio.wait_for(done.wait(), 30)
        mark("end")
        await processor.stop()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""

MARK = re.compile(r'access\("/jobq-mark-(\w+)"')
SYNC = re.compile(r"\b(fsync|fdatasync)\(")


def syncs_per_verb(
    tmp_path: Path, durability: str, child: str = CHILD, path: Path | None = None, synced: str = ""
) -> dict[str, int]:
    """Syncs between the child's marks; with ``synced``, only syncs of a
    file whose path ends so (strace ``-y`` names each descriptor's file)."""
    if not os.access(STRACE, os.X_OK):
        pytest.skip(f"no strace at {STRACE} (make test installs it: apt-get install strace)")
    trace = tmp_path / "trace.txt"
    done = subprocess.run(
        [STRACE, "-f", "-qq", "-y", "-o", str(trace), "-e", "trace=fsync,fdatasync,access",
         sys.executable, "-c", child, str(path or tmp_path / "jobs.db"), durability],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    counts: dict[str, int] = {}
    verb = None
    for line in trace.read_text().splitlines():
        if found := MARK.search(line):
            verb = found.group(1)
            counts.setdefault(verb, 0)
        elif verb is not None and SYNC.search(line) and f"{synced}>)" in line:
            counts[verb] += 1
    return counts


def test_full_durability_syncs_an_enqueue_and_a_completion_but_not_a_claim(tmp_path: Path) -> None:
    counts = syncs_per_verb(tmp_path, "full")
    assert set(counts) == {"enqueue", "claim", "complete", "end"}, counts
    assert counts["enqueue"] >= 1, counts
    assert counts["complete"] >= 1, counts
    assert counts["claim"] == 0, counts  # a claim a power loss undoes loses nothing (see connection.py)


def test_fast_durability_syncs_none_of_them(tmp_path: Path) -> None:
    counts = syncs_per_verb(tmp_path, "fast")
    assert set(counts) == {"enqueue", "claim", "complete", "end"}, counts
    assert counts["enqueue"] == counts["claim"] == counts["complete"] == 0, counts


def test_a_processor_reports_a_completion_only_after_its_sync(tmp_path: Path) -> None:
    counts = syncs_per_verb(tmp_path, "full", PROCESSOR_CHILD)
    assert set(counts) == {"handled", "reported", "end"}, counts
    # Between the handler's return and job_completed: the settle's commit
    # and the sync that made it durable.
    assert counts["handled"] >= 1, counts


def test_a_processor_at_fast_durability_reports_without_a_sync(tmp_path: Path) -> None:
    counts = syncs_per_verb(tmp_path, "fast", PROCESSOR_CHILD)
    assert counts["handled"] == 0, counts


def test_a_completion_on_a_symlinked_database_is_synced_in_the_real_wal(tmp_path: Path) -> None:
    # SQLite keeps the WAL beside the file the link points to, not the link.
    (tmp_path / "data").mkdir()
    link = tmp_path / "link.db"
    link.symlink_to(tmp_path / "data" / "real.db")
    counts = syncs_per_verb(tmp_path, "full", PROCESSOR_CHILD, path=link, synced="real.db-wal")
    assert counts["handled"] >= 1, counts
