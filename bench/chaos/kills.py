"""Scenario 2, random SIGKILL: workers die mid-stream and are restarted.

A producer process enqueues jobs (each sleeping a random 0-2 s) at a steady
rate spread over the kill period, so the workers have spare slots and a
rescued job can start at once. Every ``interval`` seconds a random live
worker is SIGKILLed; the jobs the store then shows in ``processing`` under
its claim are its orphans (the jobs in flight at the kill). It is restarted
at once, as a new process.

Promises: 0 lost; handler executions beyond the first (duplicates) no more
than the orphans; every orphan starts again, on another worker, within
lease + sweep interval + 1 s of the kill.

Quarantine (scenario 7) would fail a job whose worker was lost 3 times,
which a long run of random kills can do to an unlucky job; this scenario
counts delivery, so it allows 20 lost leases and 25 attempts per job.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from pathlib import Path

from .harness import Backend, Fleet, Result, first_start_after, held_by, status_counts, tally, wait_until


@dataclass(frozen=True)
class Size:
    jobs: int
    kills: int
    interval: float  # seconds between kills
    lease: float
    max_sleep: float
    workers: int = 4
    concurrency: int = 8
    rescue_interval: float = 0.5


SIZES = {
    "ci": Size(jobs=150, kills=8, interval=1.5, lease=2.0, max_sleep=1.0),
    "full": Size(jobs=1_000, kills=20, interval=3.0, lease=5.0, max_sleep=2.0),
}


def run(backend: Backend, workdir: Path, size: Size, seed: int = 7) -> list[Result]:
    rng = random.Random(seed)
    url = backend.fresh_url(workdir, "kills")
    timing = {
        "lease": size.lease,
        "heartbeat_interval": size.lease / 4,
        "rescue_interval": size.rescue_interval,
        "max_lost_leases": 20,
        "concurrency": size.concurrency,
    }
    kills: list[tuple[float, str, list[str]]] = []  # (when, which worker, its orphans)
    with Fleet(workdir, url) as fleet:
        workers = [fleet.worker(f"w{i}", **timing) for i in range(size.workers)]
        fleet.wait_ready(*workers)
        rate = size.jobs / (size.kills * size.interval)
        producer = fleet.producer("producer", count=size.jobs, rate=rate, max_attempts=25,
                                  data={"sleep_range": [0, size.max_sleep]})  # fmt: skip
        next_kill = time.monotonic() + size.interval
        for _ in range(size.kills):
            time.sleep(max(0.0, next_kill - time.monotonic()))
            next_kill += size.interval
            victim = rng.choice(fleet.workers())
            at = fleet.kill(victim)
            kills.append((at, victim.name, held_by(url, victim.name)))
            fleet.restart(victim)
        wait_until(lambda: producer.popen.poll() is not None, "the producer to finish", fleet=fleet)
        wait_until(
            lambda: status_counts(url).get("completed", 0) >= size.jobs,
            f"{size.jobs} jobs to complete",
            fleet=fleet,
            timeout=600,
            interval=0.25,
        )
        # Deaths the harness did not cause, taken before the final SIGTERM
        # (a worker restarted moments earlier may still be starting then).
        fleet.wait_ready(*fleet.workers())
        unexpected = fleet.unexpected_exits()
        codes = fleet.stop_all()
        counted = tally(fleet)

    orphans = sum(len(held) for _, _, held in kills)
    recoveries: list[float] = []
    never_rerun: list[str] = []
    for at, victim, held in kills:
        for job_id in held:
            again = first_start_after(counted.runs.get(job_id, []), at, not_by=victim)
            if again is None:
                never_rerun.append(job_id)
            else:
                recoveries.append(again - at)
    bound = size.lease + size.rescue_interval + 1.0
    result = Result(
        "2 random SIGKILL",
        backend.name,
        size.jobs,
        len(kills),
        len(counted.lost),
        counted.duplicated,
        max(recoveries) if recoveries else None,
        f"{orphans} jobs in flight at the kills; lease {size.lease:g} s, bound {bound:g} s",
        details={"kills": [(round(at, 3), victim, held) for at, victim, held in kills], "exit_codes": codes},
    )
    result.check(
        len(counted.expected) == size.jobs, f"the ledger lists {len(counted.expected)} enqueued jobs"
    )
    result.check(not counted.lost, f"{len(counted.lost)} jobs lost")
    result.check(counted.duplicated <= orphans, f"{counted.duplicated} duplicates > {orphans} jobs in flight")
    result.check(not never_rerun, f"{len(never_rerun)} orphans never ran again")
    result.check(
        all(r <= bound for r in recoveries),
        f"an orphan waited {max(recoveries, default=0):.2f} s > {bound:g} s",
    )
    result.check(not unexpected, f"a child exited with an error: {unexpected[:1]}")
    return [result]
