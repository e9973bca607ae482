"""Scenario 4, graceful shutdown: SIGTERM with short and long jobs in flight.

Worker A runs ``short`` jobs (ending a quarter of the grace period after
the signal) and
``long`` jobs (an hour, on A only) when it gets SIGTERM; worker B is idle
beside it. Right after the signal, ``late`` jobs are enqueued.

Promises: A claims nothing after the signal; its short jobs complete on A;
its long jobs are released (no attempt spent, no lost lease) and run again on
B long before their 30 s lease could expire; A exits 0 within the grace
period (``shutdown_timeout``) plus 2 s; nothing is lost.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from .harness import Backend, Fleet, Result, enqueue, status_counts, store_jobs, tally, wait_until

LEASE = 30.0  # seconds: far longer than the run, so a quick re-run cannot be a lease expiry


@dataclass(frozen=True)
class Size:
    short: int
    long: int
    late: int
    grace: float  # the worker's shutdown_timeout, seconds


SIZES = {"ci": Size(short=2, long=2, late=5, grace=2.0), "full": Size(short=4, long=4, late=20, grace=5.0)}


def run(backend: Backend, workdir: Path, size: Size) -> list[Result]:
    url = backend.fresh_url(workdir, "shutdown")
    common = {
        "lease": LEASE,
        "heartbeat_interval": 5.0,
        "rescue_interval": 0.5,
        "concurrency": size.short + size.long,
    }
    with Fleet(workdir, url) as fleet:
        a = fleet.worker("A", shutdown_timeout=size.grace, **common)
        fleet.wait_ready(a)
        # Short jobs are still running at the signal: they wait for this file.
        signal_file = workdir / "signalled"
        short = enqueue(
            url, fleet.ledger, [{"sleep": size.grace / 4, "after_file": str(signal_file)}] * size.short
        )
        long = enqueue(url, fleet.ledger, [{"sleep": 0.1, "sleep_by_worker": {"A": 3600}}] * size.long)
        wait_until(
            lambda: {e.job_id for e in fleet.ledger.executions()} >= set(short + long),
            "A to start every job",
            fleet=fleet,
        )
        b = fleet.worker("B", **common)
        fleet.wait_ready(b)
        signalled = fleet.terminate(a)
        signal_file.touch()
        late = enqueue(url, fleet.ledger, [{"sleep": 0.1}] * size.late)
        wait_until(lambda: not a.alive(), "A to exit", timeout=size.grace + 60, interval=0.01)
        exited_after = time.time() - signalled
        total = size.short + size.long + size.late
        wait_until(
            lambda: status_counts(url).get("completed", 0) >= total, "every job to complete", fleet=fleet
        )
        codes = fleet.stop_all()
        store = store_jobs(url)
        counted = tally(fleet, store=store)
        claims_after = [c for c in fleet.ledger.claims() if c.worker == "A" and c.at > signalled]
        completions = fleet.ledger.completions()

    reruns = [min(e.started for e in counted.runs[i] if e.worker == "B") - signalled for i in long
              if any(e.worker == "B" for e in counted.runs.get(i, []))]  # fmt: skip
    a_completed = {c.job_id for c in completions if c.worker == "A" and c.what == "ok"}
    result = Result(
        "4 graceful shutdown",
        backend.name,
        total,
        1,
        len(counted.lost),
        counted.duplicated,
        max(reruns) if reruns else None,
        f"A exited {exited_after:.2f} s after SIGTERM (grace {size.grace:g} s);"
        f" {size.short} short, {size.long} long, {size.late} late jobs",
        details={"exit_codes": codes, "claims_after_signal": [c.job_id for c in claims_after]},
    )
    result.check(not counted.lost, f"{len(counted.lost)} jobs lost")
    result.check(not claims_after, f"A claimed {len(claims_after)} jobs after the signal")
    result.check(set(short) <= a_completed, "every short job completed on A")
    result.check(
        all(e.worker == "B" for i in late for e in counted.runs.get(i, [])), "every late job ran on B only"
    )
    result.check(len(reruns) == size.long, f"{size.long - len(reruns)} long jobs never ran on B")
    result.check(all(r < LEASE / 2 for r in reruns), "every long job ran again long before its lease expired")
    result.check(
        all(store[i].attempts == 0 and store[i].lost_count == 0 for i in long), "no attempt spent on release"
    )
    result.check(counted.duplicated == size.long, f"{counted.duplicated} duplicates, not {size.long}")
    result.check(exited_after <= size.grace + 2.0, f"A exited {exited_after:.2f} s after SIGTERM")
    result.check(codes.get("A") == 0, f"A exited with {codes.get('A')}")
    return [result]
