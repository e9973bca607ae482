"""Cron across real worker processes on one SQLite file: however many
processes run a schedule, each slot enqueues exactly one job."""

from __future__ import annotations

import contextlib
import json
import signal
from collections import Counter
from pathlib import Path

import pytest
from proc import Children, connect_db, executed, read_jsonl, rows, wait_until

pytest.importorskip("croniter")
pytestmark = pytest.mark.slow

EVERY_SECOND = "* * * * * *"  # croniter's six-field form: seconds last
WORKERS = 3
SLOTS = 5  # slots to see run before stopping


def test_workers_enqueue_exactly_one_job_per_slot(children: Children, workdir: Path, db: Path) -> None:
    names = [f"w{i}" for i in range(WORKERS)]
    workers = [
        children.spawn(
            "worker",
            {
                "db": str(db),
                "handlers": {"tick": "record"},
                "cron": [[EVERY_SECOND, "tick"]],
                "events": ["cron_enqueued"],
                "poll_interval": 0.1,
            },
            name=name,
        )
        for name in names
    ]
    wait_until(
        lambda: all((workdir / f"ready-{n}").exists() for n in names), "workers to start", children=children
    )
    wait_until(
        lambda: len(executed(workdir)) >= SLOTS, f"{SLOTS} cron jobs to run", children=children, timeout=60
    )
    for w in workers:
        w.signal(signal.SIGTERM)
    for w in workers:
        assert w.wait(60) == 0, w.describe()

    jobs = rows(db, "type = 'tick'")
    slots = Counter(json.loads(r["metadata"])["jobq.cron_slot"] for r in jobs.values())
    assert len(slots) >= SLOTS
    doubled = {slot: n for slot, n in slots.items() if n != 1}
    assert not doubled, f"slots enqueued more than once: {doubled}"
    assert all(slot % 1000 == 0 for slot in slots)
    # Each job ran once, and was enqueued by exactly one process.
    counts = executed(workdir)
    assert all(n == 1 for n in counts.values())
    won = Counter(e["id"] for e in read_jsonl(workdir, "events") if e["event"] == "cron_enqueued")
    assert set(won) == set(jobs) and all(n == 1 for n in won.values())
    with contextlib.closing(connect_db(db)) as conn:
        (last,) = conn.execute("SELECT last_slot FROM jobq_cron").fetchone()
    assert last == max(slots)
