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

import collections
import contextlib
from pathlib import Path
from typing import Any

import pytest
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

from jobq.transitions import ABANDONED_ERROR

pytestmark = pytest.mark.slow

TOTAL = 1500
FOREIGN_TIMEOUT = 15.0  # seconds; k-msg holds a job 1 s at most unless it abandons it
SLACK = 2.0  # seconds between k-msg's claim and its log line, on a loaded machine
KMSG = {"concurrency": 4, "abandon_every": 10, "abandon_max": 5, "fail_every": 7, "hold_every": 11, "hold": 1.0}


def outcomes(workdir: Path) -> collections.Counter[str]:
    return collections.Counter(entry["outcome"] for entry in read_jsonl(workdir, "kmsg"))


def test_kmsg_workers_and_jobq_workers_share_one_file(db: Path, workdir: Path, children: Children) -> None:
    producer = children.spawn("kmsg_produce", {"db": str(db), "count": TOTAL}, "producer")
    wait_until(lambda: (workdir / "ready-producer").exists(), "the k-msg producer", children=children)
    kmsg = children.spawn("kmsg_work", {"db": str(db), **KMSG}, "kmsg")
    # A head start, so k-msg holds abandoned and held jobs while jobq starts.
    wait_until(
        lambda: outcomes(workdir)["abandoned"] >= 2 and outcomes(workdir)["failed"] >= 2,
        "k-msg to abandon and fail some jobs", children=children, alive=[kmsg],
    )  # fmt: skip
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

    enqueued = {e["id"]: e["data"]["n"] for e in read_jsonl(workdir, "enq")}
    assert len(enqueued) == TOTAL
    claims: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for entry in read_jsonl(workdir, "kmsg"):
        claims[entry["id"]].append(entry)
    runs: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for entry in read_jsonl(workdir, "exec"):
        runs[entry["id"]].append(entry)
    assert set(claims) | set(runs) == set(enqueued)
    final = rows(db)
    assert set(final) == set(enqueued)

    duplicates, never, early, overlapping = [], [], [], []
    for job_id in enqueued:
        mine, theirs = claims[job_id], runs[job_id]
        succeeded = sum(c["outcome"] in ("completed", "held") for c in mine) + len(theirs)
        if succeeded > 1:
            duplicates.append(job_id)
        elif succeeded == 0:
            never.append(job_id)
        failed = [c for c in mine if c["outcome"] == "failed"]
        abandoned = [c for c in mine if c["outcome"] == "abandoned"]
        row = final[job_id]
        assert row["status"] == "completed" and row["completed_at"] is not None, row
        assert row["lease_token"] is None, row
        # Attempts and errors as k-msg left them; one lost attempt per abandon.
        assert row["attempts"] == len(failed) + len(abandoned), (row, mine, theirs)
        assert row["lost_count"] == len(abandoned), (row, mine, theirs)
        if abandoned:
            assert row["error"] == ABANDONED_ERROR.format(timeout=FOREIGN_TIMEOUT), row
        elif failed:
            assert row["error"] == f"provider refused, by {failed[-1]['worker']}", row
        else:
            assert row["error"] is None, row
        for run in theirs:
            assert run["attempts"] == row["attempts"] and run["lost_count"] == row["lost_count"], (run, row)
            assert run["data"]["n"] == enqueued[job_id]
            for claim in mine:
                if claim["outcome"] == "abandoned":
                    # Taken back only after the timeout, counted from when a
                    # rescuer first saw the claim (after k-msg made it).
                    if run["at"] < claim["at"] + FOREIGN_TIMEOUT - SLACK:
                        early.append((job_id, run["at"] - claim["at"]))
                elif run["at"] <= claim["end"]:
                    overlapping.append((job_id, claim, run))
    assert not duplicates, f"{len(duplicates)} jobs ran twice: {duplicates[:10]}"
    assert not never, f"{len(never)} jobs never ran: {never[:10]}"
    assert not early, f"{len(early)} abandoned jobs taken back early: {early[:10]}"
    assert not overlapping, f"{len(overlapping)} jobs run by jobq while k-msg held them: {overlapping[:3]}"

    seen = outcomes(workdir)
    assert seen["abandoned"] >= 2 and seen["failed"] >= 2 and seen["held"] >= 1, seen
    by_jobq = sum(len(r) for r in runs.values())
    assert by_jobq > 0
    with contextlib.closing(kmsg_connect(db)) as k:
        assert kmsg_size(k, now_ms() + 60_000) == 0
    print(
        f"\n{TOTAL} jobs: k-msg claims {dict(seen)}, jobq runs {by_jobq}"
        f" (plain dequeue() {sum(1 for r in runs.values() for e in r if e['worker'] == 'dq')});"
        " no duplicates, none early"
    )
