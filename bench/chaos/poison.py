"""Scenario 7, poison jobs among good ones.

``crash`` jobs call ``os._exit(1)`` in their handler, killing whichever
worker runs them (the parent restarts dead workers at once, as a
supervisor would); ``raise`` jobs raise on every attempt. They are enqueued
ahead of ``good`` jobs, which keep arriving while the poison is handled.

Promises: each crash job is quarantined after 3 lost leases (``failed``,
``lost_count`` 3, a ``quarantined after 3`` error, a ``job_quarantined``
event) and so kills at most 3 workers; each raising job fails after
``max_attempts`` (3) attempts, each an execution that raised or a lease lost
when a crashing job claimed in the same batch killed the worker; every good
job completes (0 lost).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import jobq

from .harness import Backend, Fleet, Result, enqueue, store_jobs, tally, wait_until

MAX_LOST = 3
RAISE_ATTEMPTS = 3


@dataclass(frozen=True)
class Size:
    good: int
    crash: int
    raising: int
    workers: int
    lease: float
    concurrency: int = 4
    rescue_interval: float = 0.5


SIZES = {
    "ci": Size(good=60, crash=1, raising=1, workers=2, lease=1.0),
    "full": Size(good=1_000, crash=3, raising=3, workers=4, lease=2.0),
}


def run(backend: Backend, workdir: Path, size: Size) -> list[Result]:
    url = backend.fresh_url(workdir, "poison")
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
        crash = enqueue(
            url, fleet.ledger, [{"poison": "exit"}] * size.crash, max_attempts=MAX_LOST * 3, priority=1
        )
        raising = enqueue(
            url, fleet.ledger, [{"poison": "raise"}] * size.raising, max_attempts=RAISE_ATTEMPTS, priority=1
        )
        # Good jobs arrive in waves while the poison is being handled.
        waves = 10
        good: list[str] = []
        deaths = 0

        def settled() -> bool:
            nonlocal deaths
            for child in list(fleet.children):
                if not child.alive() and not child.killed:
                    child.killed = True  # its death was the poison's doing, not an error
                    deaths += 1
                    fleet.restart(child)
            if len(good) < size.good:
                return False
            jobs = store_jobs(url)
            return all(j.status in (jobq.JobStatus.COMPLETED, jobq.JobStatus.FAILED) for j in jobs.values())

        for wave in range(waves):
            count = size.good // waves + (wave < size.good % waves)
            good += enqueue(url, fleet.ledger, [{"sleep_range": [0.01, 0.1]}] * count)
            time.sleep(size.lease / 2)
            settled()
        wait_until(settled, "every job to complete or fail", interval=0.2)
        codes = fleet.stop_all()
        store = store_jobs(url)
        counted = tally(fleet, good, store)
        quarantined_events = {e.job_id for e in fleet.ledger.events("job_quarantined")}

    collateral = [i for i in good if store[i].lost_count > 0]
    result = Result(
        "7 poison jobs",
        backend.name,
        size.good + size.crash + size.raising,
        deaths,
        len(counted.lost),
        counted.duplicated,
        None,
        f"{size.crash} crashing, {size.raising} raising, {size.good} good jobs; {deaths} workers killed"
        f" by poison; {len(collateral)} good jobs lost a lease beside it",
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
    result.check(quarantined_events >= set(crash), "a job_quarantined event for every crash job")
    result.check(deaths <= MAX_LOST * size.crash, f"{deaths} workers died for {size.crash} crash jobs")
    for i in raising:
        job = store[i]
        runs = len(counted.runs.get(i, []))
        # Each attempt either ran and raised, or was lost beside a crashing
        # job claimed in the same batch (a worker's death costs every job it
        # held a lease: see the README's note on quarantine).
        result.check(
            job.status is jobq.JobStatus.FAILED
            and job.attempts == RAISE_ATTEMPTS
            and runs <= RAISE_ATTEMPTS <= runs + job.lost_count,
            f"raising job {i}: {job.status}, {job.attempts} attempts, {runs} executions, {job.lost_count} lost",
        )
    result.check(not counted.lost, f"{len(counted.lost)} good jobs lost")
    return [result]
