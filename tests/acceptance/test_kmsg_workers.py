"""k-msg workers beside jobq workers on one SQLite file, in real processes.

A k-msg producer enqueues 1,500 jobs while a k-msg worker (four threads)
runs them with k-msg's own statements (``tests/kmsg_sql.py``: its dequeue
takes no lease) and, beside it, two jobq processors and a process calling
the plain ``dequeue()``. The k-msg worker fails some jobs (with a retry),
holds some for a while, and abandons a few in ``processing`` for good.

Every job and every run is counted: no job held by k-msg is taken or run by
jobq; each job completes exactly once; attempts and errors are as k-msg left
them; a job k-msg abandoned is taken back by jobq only after
``foreign_claim_timeout`` and completed once.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import kmsg_sql
import pytest
from kmsg_sql import outcomes
from proc import (
    Children,
    all_completed,
    kmsg_connect,
    kmsg_size,
    now_ms,
    read_jsonl,
    rows,
    touch,
    wait_until,
)

pytestmark = pytest.mark.slow

TOTAL = 1500
FOREIGN_TIMEOUT = 15.0  # seconds; k-msg holds a job 1 s at most unless it abandons it
SLACK = 2.0  # seconds between k-msg's claim and its log line, on a loaded machine
KMSG = {"concurrency": 4, "abandon_every": 10, "abandon_max": 5, "fail_every": 7, "hold_every": 5, "hold": 1.0}


def head_start(workdir: Path) -> bool:
    """k-msg has abandoned, failed and held some jobs (each thread does all
    three within its first ten claims)."""
    seen = outcomes(workdir)
    return seen.get("abandoned", 0) >= 2 and seen.get("failed", 0) >= 2 and seen.get("held", 0) >= 2


def test_kmsg_workers_and_jobq_workers_share_one_file(db: Path, workdir: Path, children: Children) -> None:
    producer = children.spawn("kmsg_produce", {"db": str(db), "count": TOTAL}, "producer")
    wait_until(lambda: (workdir / "ready-producer").exists(), "the k-msg producer", children=children)
    kmsg = children.spawn("kmsg_work", {"db": str(db), **KMSG}, "kmsg")
    # A head start, so k-msg holds abandoned jobs while jobq starts.
    wait_until(lambda: head_start(workdir), "k-msg to abandon, fail and hold jobs", children=children, alive=[kmsg])
    jobq_side = [
        children.spawn(
            "worker",
            {"db": str(db), "concurrency": 4, "handlers": {"t": "record"}, "foreign_claim_timeout": FOREIGN_TIMEOUT},
            f"w{i}",
        )
        for i in range(2)
    ]
    loop = children.spawn("dequeue_loop", {"db": str(db), "foreign_claim_timeout": FOREIGN_TIMEOUT}, "dq")
    assert producer.wait(240) == 0, producer.describe()
    wait_until(all_completed(db, TOTAL), f"{TOTAL} jobs completed", children=children,
               alive=[kmsg, loop, *jobq_side], timeout=300)  # fmt: skip
    touch(workdir / "stop-kmsg")
    touch(workdir / "stop-dq")
    for worker in jobq_side:
        worker.signal(15)
    for child in (kmsg, loop, *jobq_side):
        assert child.wait(60) == 0, child.describe()
    assert producer.stderr() == kmsg.stderr() == loop.stderr() == "", (producer.describe(), kmsg.describe())
    for worker in jobq_side:
        for line in worker.stderr().splitlines():
            # The processors report each job they took back from k-msg.
            assert "was rescued: held in processing without a lease" in line, worker.describe()

    summary = kmsg_sql.audit(workdir, rows(db), foreign_timeout=FOREIGN_TIMEOUT, slack=SLACK)
    by_dequeue = sum(1 for e in read_jsonl(workdir, "exec") if e["worker"] == "dq")
    with contextlib.closing(kmsg_connect(db)) as k:
        assert kmsg_size(k, now_ms() + 60_000) == 0
    print(f"\n{summary} (plain dequeue(): {by_dequeue})")
