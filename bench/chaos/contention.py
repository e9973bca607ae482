"""Scenario 1, contention: many worker and producer processes on one store.

SQLite: 8 worker processes and 4 producer processes share one file.
PostgreSQL: 4 worker processes with concurrency 16, and 4 producers.
Promises: every enqueued job completes exactly once (0 lost, 0 duplicated),
and no "database is locked" (or any other error) reaches code outside jobq:
every producer and worker exits 0 and none logs it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from .harness import Backend, Fleet, Result, status_counts, tally, wait_until


@dataclass(frozen=True)
class Size:
    jobs: int
    producers: int = 4


SIZES = {"ci": Size(jobs=3_000), "full": Size(jobs=50_000)}
SHAPES = {"sqlite": (8, 4), "postgres": (4, 16)}  # worker processes, concurrency of each


def run(backend: Backend, workdir: Path, size: Size) -> list[Result]:
    processes, concurrency = SHAPES[backend.name]
    url = backend.fresh_url(workdir, "contention")
    with Fleet(workdir, url) as fleet:
        began = time.monotonic()
        workers = [fleet.worker(f"w{i}", concurrency=concurrency, lease=30.0, heartbeat_interval=5.0)
                   for i in range(processes)]  # fmt: skip
        share = [
            size.jobs // size.producers + (i < size.jobs % size.producers) for i in range(size.producers)
        ]
        producers = [fleet.producer(f"p{i}", count=n, data={}) for i, n in enumerate(share)]
        wait_until(
            lambda: all(p.popen.poll() is not None for p in producers),
            "the producers to finish",
            fleet=fleet,
            timeout=1800,
            interval=0.5,
        )
        wait_until(
            lambda: status_counts(url).get("completed", 0) >= size.jobs,
            f"{size.jobs} jobs to complete",
            fleet=fleet,
            alive=workers,
            timeout=1800,
            interval=0.5,
        )
        elapsed = time.monotonic() - began
        codes = fleet.stop_all()
        counted = tally(fleet)
        locked = fleet.stderr_lines("database is locked")
        tracebacks = fleet.stderr_lines("Traceback")
    result = Result(
        "1 contention",
        backend.name,
        size.jobs,
        0,
        len(counted.lost),
        counted.duplicated,
        None,
        f"{processes} workers x {concurrency} + {size.producers} producers; {size.jobs / elapsed:,.0f} jobs/s;"
        f" {len(locked)} 'database is locked'",
        details={"elapsed_s": round(elapsed, 1), "exit_codes": codes, "locked": locked[:20]},
    )
    result.check(
        len(counted.expected) == size.jobs, f"the ledger lists {len(counted.expected)} enqueued jobs"
    )
    result.check(not counted.lost, f"{len(counted.lost)} jobs lost")
    result.check(counted.duplicated == 0, f"{counted.duplicated} duplicate executions")
    result.check(not locked, f"{len(locked)} 'database is locked' lines in the children's stderr")
    result.check(not tracebacks, f"{len(tracebacks)} tracebacks in the children's stderr")
    result.check(all(code == 0 for code in codes.values()), f"exit codes {codes}")
    return [result]
