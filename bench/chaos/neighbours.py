"""Scenario 15, good jobs beside a job that kills its worker.

``crash`` jobs call ``os._exit(1)`` in their handler; they are enqueued
among good jobs that sleep long enough to share a worker with them, and
claimed in the same batches. Each crash costs every job in flight on that
worker a lease (the parent restarts dead workers at once, as a supervisor
would). A job one lost worker away from quarantine runs alone
(``jobq.processor.producer``), so the good jobs that lost leases beside a
crashing job are never quarantined with it.

Promises: each crash job is quarantined after 3 lost leases, killing at
most 3 workers; 0 good jobs quarantined, every good job completes (0 lost); a
good job runs again only after a crash took it down.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import jobq

from .harness import Backend, Fleet, Result, enqueue, store_jobs, tally, wait_until

MAX_LOST = 3


@dataclass(frozen=True)
class Size:
    good: int
    crash: int
    workers: int
    lease: float
    concurrency: int = 4
    rescue_interval: float = 0.5


SIZES = {
    "ci": Size(good=60, crash=2, workers=2, lease=1.0),
    "full": Size(good=400, crash=6, workers=4, lease=2.0),
}


def run(backend: Backend, workdir: Path, size: Size) -> list[Result]:
    url = backend.fresh_url(workdir, "neighbours")
    config = {
        "lease": size.lease,
        "heartbeat_interval": size.lease / 3,
        "rescue_interval": size.rescue_interval,
        "concurrency": size.concurrency,
        "max_lost_leases": MAX_LOST,
        "retry_delays": [0.05],
    }
    with Fleet(workdir, url) as fleet:
        workers = [fleet.worker(f"w{i}", **config) for i in range(size.workers)]
        fleet.wait_ready(*workers)
        deaths = 0

        def restart_the_dead() -> None:
            nonlocal deaths
            for child in list(fleet.children):
                if child.role == "worker" and not child.alive() and not child.killed:
                    child.killed = True  # the poison's doing, not an error
                    deaths += 1
                    fleet.restart(child)

        # Waves: a crash job at the head of each, good jobs that run long
        # enough to share its worker behind it.
        crash: list[str] = []
        good: list[str] = []
        for wave in range(size.crash):
            crash += enqueue(url, fleet.ledger, [{"poison": "exit"}], priority=1, max_attempts=MAX_LOST * 3)
            count = size.good // size.crash + (wave < size.good % size.crash)
            good += enqueue(url, fleet.ledger, [{"sleep_range": [0.2, 0.6]}] * count, priority=1)
            time.sleep(size.lease)
            restart_the_dead()

        def settled() -> bool:
            restart_the_dead()
            jobs = store_jobs(url)
            return all(j.status in (jobq.JobStatus.COMPLETED, jobq.JobStatus.FAILED) for j in jobs.values())

        wait_until(settled, "every job to complete or fail", interval=0.2)
        codes = fleet.stop_all()
        store = store_jobs(url)
        counted = tally(fleet, good, store)

    quarantined = [i for i in good if store[i].status is jobq.JobStatus.FAILED]
    beside = [i for i in good if store[i].lost_count > 0]
    result = Result(
        "15 crash neighbours",
        backend.name,
        size.good + size.crash,
        deaths,
        len(counted.lost),
        counted.duplicated,
        None,
        f"{size.crash} crashing among {size.good} good jobs; {deaths} workers killed; {len(beside)} good jobs"
        f" lost a lease beside it (at most {max((store[i].lost_count for i in good), default=0)} each);"
        f" {len(quarantined)} good jobs quarantined",
        details={"exit_codes": codes},
    )
    for i in crash:
        job = store[i]
        result.check(
            job.status is jobq.JobStatus.FAILED
            and job.lost_count == MAX_LOST
            and (job.error or "").startswith(f"quarantined after {MAX_LOST}"),
            f"crash job {i} was not quarantined: {job.status}, lost {job.lost_count}, {job.error!r}",
        )
    # Three crashes per crash job, fewer when two shared a worker (each then
    # lost a lease to the other's crash).
    result.check(
        size.crash <= deaths <= MAX_LOST * size.crash, f"{deaths} workers died for {size.crash} crash jobs"
    )
    result.check(not quarantined, f"{len(quarantined)} good jobs quarantined")
    result.check(not counted.lost, f"{len(counted.lost)} good jobs lost")
    result.check(
        all(counted.extra_runs(i) <= store[i].lost_count for i in good),
        "a good job ran again only after a crash took it down",
    )
    return [result]
