"""Scenario 5, a paused worker: SIGSTOP for longer than two leases, then SIGCONT.

Worker A starts ``jobs`` jobs (each sleeping one lease on A), then is frozen
with SIGSTOP for 2.5 leases while worker B runs beside it. B's sweep finds
A's leases expired and B runs the jobs again. After SIGCONT, A's handlers
return and A tries to complete the jobs it no longer holds.

Promises: every job is completed once, with B's result; every completion A
tries is rejected with ``LeaseLost`` (counted in the ledger, from the outcome
jobq returned to A's processor); B starts each job within lease + sweep
interval + 1 s of the pause; nothing is lost.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from .harness import Backend, Fleet, Result, enqueue, store_jobs, tally, wait_until


@dataclass(frozen=True)
class Size:
    jobs: int
    lease: float
    rescue_interval: float = 0.5


SIZES = {"ci": Size(jobs=2, lease=1.5), "full": Size(jobs=8, lease=3.0)}


def run(backend: Backend, workdir: Path, size: Size) -> list[Result]:
    url = backend.fresh_url(workdir, "paused")
    common = {
        "lease": size.lease,
        "heartbeat_interval": size.lease / 3,
        "rescue_interval": size.rescue_interval,
        "concurrency": size.jobs,
    }
    pause = 2.5 * size.lease
    with Fleet(workdir, url) as fleet:
        a = fleet.worker("A", **common)
        fleet.wait_ready(a)
        ids = enqueue(url, fleet.ledger, [{"sleep": 0.1, "sleep_by_worker": {"A": size.lease}}] * size.jobs)
        wait_until(
            lambda: {e.job_id for e in fleet.ledger.executions()} >= set(ids),
            "A to start every job",
            fleet=fleet,
        )
        b = fleet.worker("B", **common)
        fleet.wait_ready(b)
        fleet.stop(a)
        stopped = time.time()
        wait_until(
            lambda: (
                {c.job_id for c in fleet.ledger.completions() if c.worker == "B" and c.what == "ok"}
                >= set(ids)
            ),
            "B to complete every job",
            fleet=fleet,
            alive=[b],
        )
        time.sleep(max(0.0, stopped + pause - time.time()))
        fleet.cont(a)
        paused_for = time.time() - stopped
        wait_until(
            lambda: len([c for c in fleet.ledger.completions() if c.worker == "A"]) >= size.jobs,
            "A to try its completions",
            fleet=fleet,
        )
        codes = fleet.stop_all()
        store = store_jobs(url)
        counted = tally(fleet, ids, store)
        a_outcomes = [c.what for c in fleet.ledger.completions() if c.worker == "A"]

    recoveries = [min(e.started for e in counted.runs[i] if e.worker == "B") - stopped for i in ids]
    rejected = a_outcomes.count("LeaseLost")
    bound = size.lease + size.rescue_interval + 1.0
    result = Result(
        "5 paused worker",
        backend.name,
        size.jobs,
        1,
        len(counted.lost),
        counted.duplicated,
        max(recoveries),
        f"paused {paused_for:.1f} s (lease {size.lease:g} s); {rejected} of {len(a_outcomes)}"
        " late completions rejected (LeaseLost)",
        details={"a_outcomes": a_outcomes, "exit_codes": codes},
    )
    result.check(not counted.lost, f"{len(counted.lost)} jobs lost")
    result.check(paused_for > 2 * size.lease, "A was paused for more than two leases")
    result.check(rejected == size.jobs == len(a_outcomes), f"A's completions: {a_outcomes}")
    result.check(all((store[i].result or {}).get("by") == "B" for i in ids), "every job keeps B's result")
    result.check(
        all(r <= bound for r in recoveries), f"B started a job {max(recoveries):.2f} s after the pause"
    )
    result.check(all(code == 0 for code in codes.values()), f"exit codes {codes}")
    return [result]
