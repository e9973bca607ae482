"""Durability, seen from the kernel: under ``durability="full"`` an enqueue
and a completion each commit with a sync (``fsync``/``fdatasync``) before
they return, and a claim alone does not; under ``"fast"`` none of them syncs
(WAL with ``synchronous=NORMAL`` syncs at checkpoints only).

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

MARK = re.compile(r'access\("/jobq-mark-(\w+)"')
SYNC = re.compile(r"\b(fsync|fdatasync)\(")


def syncs_per_verb(tmp_path: Path, durability: str) -> dict[str, int]:
    if not os.access(STRACE, os.X_OK):
        pytest.skip(f"no strace at {STRACE} (make test installs it: apt-get install strace)")
    trace = tmp_path / "trace.txt"
    done = subprocess.run(
        [STRACE, "-f", "-qq", "-o", str(trace), "-e", "trace=fsync,fdatasync,access",
         sys.executable, "-c", CHILD, str(tmp_path / "jobs.db"), durability],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    counts: dict[str, int] = {}
    verb = None
    for line in trace.read_text().splitlines():
        if found := MARK.search(line):
            verb = found.group(1)
            counts.setdefault(verb, 0)
        elif verb is not None and SYNC.search(line):
            counts[verb] += 1
    assert set(counts) == {"enqueue", "claim", "complete", "end"}, trace.read_text()
    return counts


def test_full_durability_syncs_an_enqueue_and_a_completion_but_not_a_claim(tmp_path: Path) -> None:
    counts = syncs_per_verb(tmp_path, "full")
    assert counts["enqueue"] >= 1, counts
    assert counts["complete"] >= 1, counts
    assert counts["claim"] == 0, counts  # a claim a power loss undoes loses nothing (see connection.py)


def test_fast_durability_syncs_none_of_them(tmp_path: Path) -> None:
    counts = syncs_per_verb(tmp_path, "fast")
    assert counts["enqueue"] == counts["claim"] == counts["complete"] == 0, counts
