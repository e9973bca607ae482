"""Scenario 3, kills at exact points of a job's life.

For each point, ``runs`` victim workers (concurrency 1) start together, each
with one job in a queue of its own; each claims its job and SIGKILLs itself
at the point:

- ``after_claim``: the claim committed, the handler has not started;
- ``in_handler``: the handler started (its execution is in the ledger);
- ``before_complete``: the handler returned, the completion is not written;
- ``after_complete``: the completion is written.

Victims never sweep expired leases (their rescue interval is an hour), and
a victim's own queue holds nothing else for a claim that carries its
completion to pick up. Once every victim is dead, one healthy worker starts,
rescues the expired claims and runs what is left.
Promises: after the first three points each job is claimed once more and
its handler finishes exactly once more (the re-run), with one lost lease
counted; after ``after_complete`` the job is never claimed again and keeps
the victim's result. No job is lost, and each re-run starts within lease +
sweep interval + 1 s of the healthy worker being ready.
"""

from __future__ import annotations

import collections
import time
from dataclasses import dataclass
from pathlib import Path

import jobq

from .child import KILL_POINTS
from .harness import Backend, Child, Fleet, Result, enqueue, store_jobs, tally, wait_until

RERUN_EXPECTED = {"after_claim": 1, "in_handler": 1, "before_complete": 1, "after_complete": 0}
# Handler executions per job before the re-run: the victim's, if its handler started.
VICTIM_EXECUTIONS = {"after_claim": 0, "in_handler": 1, "before_complete": 1, "after_complete": 1}


@dataclass(frozen=True)
class Size:
    runs: int  # victims (and jobs) per kill point
    lease: float = 1.0
    rescue_interval: float = 0.5


SIZES = {"ci": Size(runs=5), "full": Size(runs=20)}


def run(backend: Backend, workdir: Path, size: Size, points: tuple[str, ...] = KILL_POINTS) -> list[Result]:
    results = []
    for point in points:
        point_dir = workdir / point
        point_dir.mkdir(parents=True, exist_ok=True)
        results.append(run_point(backend, point_dir, size, point))
    return results


def describe_victims(fleet: Fleet, victims: list[Child]) -> str:
    """Which victims are still alive, and what the ledger says they did."""
    claimed = {c.worker for c in fleet.ledger.claims()}
    started = {e.worker for e in fleet.ledger.executions()}
    completing = {c.worker for c in fleet.ledger.completions()}
    return "; ".join(
        f"{v.name} (pid {v.pid}) alive, claimed={v.name in claimed}, handler started={v.name in started},"
        f" completion logged={v.name in completing}, stderr={v.stderr()[-300:]!r}"
        for v in victims
        if v.alive()
    )


def run_point(backend: Backend, workdir: Path, size: Size, point: str) -> Result:
    url = backend.fresh_url(workdir, f"kill_{point}")
    timing = {
        "lease": size.lease,
        "heartbeat_interval": size.lease / 3,
        "rescue_interval": size.rescue_interval,
    }
    with Fleet(workdir, url) as fleet:
        # One queue per victim: a victim's completion may travel with its next
        # claim, which must find nothing, or it would orphan a second job.
        queues = [f"v{i}" for i in range(size.runs)]
        ids = enqueue(url, fleet.ledger, [{} for _ in queues], queues=queues, max_attempts=5)
        victims = [
            fleet.worker(
                f"victim{i}",
                concurrency=1,
                kill_at=point,
                queues=[q],
                **{**timing, "rescue_interval": 3600.0},
            )
            for i, q in enumerate(queues)
        ]
        wait_until(
            lambda: all(not v.alive() for v in victims),
            f"the {point} victims to die",
            timeout=300,
            explain=lambda: describe_victims(fleet, victims),
        )
        healthy = fleet.worker("healthy", concurrency=4, **timing)
        fleet.wait_ready(healthy)
        ready_at = time.time()
        wait_until(
            lambda: all(s.status is jobq.JobStatus.COMPLETED for s in store_jobs(url).values()),
            f"the jobs killed {point} to complete",
            fleet=fleet,
            alive=[healthy],
        )
        if RERUN_EXPECTED[point] == 0:
            time.sleep(size.lease + size.rescue_interval + 1.0)  # room for a wrong re-run to show
        codes = fleet.stop_all()
        store = store_jobs(url)
        counted = tally(fleet, ids, store)
        claims = fleet.ledger.claims()
        completions = fleet.ledger.completions()

    victim_claims = collections.Counter(c.job_id for c in claims if c.worker.startswith("victim"))
    reruns = collections.Counter(c.job_id for c in claims if c.worker == "healthy")
    victim_runs = collections.Counter(
        e.job_id for r in counted.runs.values() for e in r if e.worker.startswith("victim")
    )
    recoveries = [
        min(e.started for e in counted.runs[job_id] if e.worker == "healthy") - ready_at
        for job_id in ids
        if any(e.worker == "healthy" for e in counted.runs.get(job_id, []))
    ]
    expected_rerun = RERUN_EXPECTED[point]
    result = Result(
        f"3 kill {point}",
        backend.name,
        size.runs,
        size.runs,
        len(counted.lost),
        counted.duplicated,
        max(recoveries) if recoveries else None,
        f"re-runs per job: {sorted(set(reruns[i] for i in ids))}; lost leases: "
        f"{sorted(set(store[i].lost_count for i in ids))}",
        details={
            "victim_exit_codes": [v.popen.returncode for v in victims],
            "healthy_exit": codes.get("healthy"),
        },
    )
    bound = size.lease + size.rescue_interval + 1.0
    result.check(all(v.popen.returncode == -9 for v in victims), "every victim died by SIGKILL at its point")
    result.check(all(victim_claims[i] == 1 for i in ids), "each job was claimed by exactly one victim")
    result.check(not counted.lost, f"{len(counted.lost)} jobs lost")
    result.check(
        all(reruns[i] == expected_rerun for i in ids), f"each job claimed {expected_rerun} more time(s)"
    )
    result.check(
        all(victim_runs[i] == VICTIM_EXECUTIONS[point] for i in ids),
        f"the victim's handler ran {VICTIM_EXECUTIONS[point]} time(s) per job",
    )
    result.check(all(store[i].lost_count == expected_rerun for i in ids), f"lost_count == {expected_rerun}")
    result.check(all(r <= bound for r in recoveries), f"every re-run started within {bound:g} s of the sweep")
    if point == "after_complete":
        victim_ok = {c.job_id for c in completions if c.worker.startswith("victim") and c.what == "ok"}
        result.check(victim_ok == set(ids), "every victim's completion was written")
        result.check(
            all((store[i].result or {}).get("by", "").startswith("victim") for i in ids),
            "each job keeps its victim's result",
        )
    else:
        written = [c for c in completions if c.worker.startswith("victim")]
        result.check(not written, f"{len(written)} victim completions were written")
    result.check(codes.get("healthy") == 0, f"the healthy worker exited {codes.get('healthy')}")
    return result
