"""Scenario 14, async handlers that block the event loop.

Some jobs' ``async`` handlers block their worker's event loop with
``time.sleep`` (as CPU-bound code or a synchronous client call does) for
twice the lease; other jobs run beside them. Leases are renewed from a
thread of the worker's own (``jobq.processor.leases``), so a blocked loop
stops no renewal.

Promises: no job runs twice (0 extra runs) and none is lost; no job loses a
lease (``lost_count`` 0) or spends an attempt; every worker whose loop was
blocked logged a warning naming the job that blocked it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jobq

from .harness import Backend, Fleet, Result, enqueue, store_jobs, tally, wait_until


@dataclass(frozen=True)
class Size:
    blocking: int  # jobs that block the loop
    others: int
    workers: int
    lease: float = 2.0
    concurrency: int = 4
    rescue_interval: float = 0.5


SIZES = {
    "ci": Size(blocking=4, others=40, workers=2),
    "full": Size(blocking=12, others=400, workers=4),
}


def run(backend: Backend, workdir: Path, size: Size) -> list[Result]:
    url = backend.fresh_url(workdir, "blocked")
    config = {
        "lease": size.lease,
        "heartbeat_interval": size.lease / 4,
        "rescue_interval": size.rescue_interval,
        "concurrency": size.concurrency,
    }
    with Fleet(workdir, url) as fleet:
        workers = [fleet.worker(f"w{i}", **config) for i in range(size.workers)]
        fleet.wait_ready(*workers)
        blocking = enqueue(url, fleet.ledger, [{"block": 2 * size.lease}] * size.blocking, priority=1)
        others = enqueue(url, fleet.ledger, [{"sleep_range": [0.01, 0.1]}] * size.others)
        ids = blocking + others

        def done() -> bool:
            return all(j.status is jobq.JobStatus.COMPLETED for j in store_jobs(url).values())

        wait_until(done, "every job to complete", fleet=fleet, alive=workers, interval=0.2)
        codes = fleet.stop_all()
        store = store_jobs(url)
        counted = tally(fleet, ids, store)
        warnings = fleet.stderr_lines("the event loop has not run for")
        named = {i for i in blocking if any(f"job {i} " in line for line in warnings)}

    lost_leases = sum(store[i].lost_count for i in ids)
    result = Result(
        "14 blocked event loop",
        backend.name,
        len(ids),
        size.blocking,
        len(counted.lost),
        counted.duplicated,
        None,
        f"{size.blocking} handlers block the loop {2 * size.lease:g} s (lease {size.lease:g} s), {size.others}"
        f" others; {lost_leases} lost leases; {len(named)} of {size.blocking} blockers named in a warning",
        details={"exit_codes": codes},
    )
    result.check(not counted.lost, f"{len(counted.lost)} jobs lost")
    result.check(counted.duplicated == 0, f"{counted.duplicated} extra runs")
    result.check(lost_leases == 0, f"{lost_leases} lost leases")
    result.check(all(store[i].attempts == 0 for i in ids), "no attempt spent")
    result.check(
        named == set(blocking), f"only {len(named)} of {size.blocking} blocking jobs named in a warning"
    )
    result.check(all(code == 0 for code in codes.values()), f"exit codes {codes}")
    return [result]
