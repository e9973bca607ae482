"""Job counts for the default and the ``--quick`` run, and the backends."""

from __future__ import annotations

from dataclasses import dataclass, field

#: Backend name -> URL template ({path} is a fresh database file per measurement).
BACKENDS: dict[str, str] = {
    "memory": "memory://",
    "sqlite": "sqlite:///{path}",
    "sqlite-fast": "sqlite:///{path}?durability=fast",
}
SQLITE_BACKENDS = ("sqlite", "sqlite-fast")
#: The optional column: a PostgreSQL server named by JOBQ_BENCH_POSTGRES_URL
#: (or JOBQ_TEST_POSTGRES_URL), a fresh schema per measurement (see bench/pg.py).
POSTGRES = "postgres"


@dataclass(frozen=True)
class Counts:
    #: jobs enqueued one ``await queue.enqueue`` at a time, per backend
    #: (sqlite full syncs the WAL on every commit, so it gets fewer; postgres
    #: pays a network round trip per statement)
    enqueue: dict[str, int]
    #: jobs enqueued through ``enqueue_many`` in batches of ``batch_size``
    batch_jobs: int
    batch_size: int
    #: jobs pre-enqueued and drained by one processor, per concurrency
    process_jobs: int
    concurrencies: tuple[int, ...]
    #: enqueue-to-start latency: jobs, at a steady rate (jobs per second)
    latency_jobs: int
    latency_rate: float
    #: raw sqlite3 reference: jobs per synchronous mode
    raw_insert: dict[str, int]
    raw_claim: dict[str, int]
    runs: int = 3
    timeouts: dict[str, float] = field(default_factory=dict)


DEFAULT = Counts(
    enqueue={"memory": 20_000, "sqlite": 2_000, "sqlite-fast": 5_000, "postgres": 3_000},
    batch_jobs=20_000,
    batch_size=100,
    process_jobs=20_000,
    concurrencies=(16, 32),
    latency_jobs=1_000,
    latency_rate=200.0,
    raw_insert={"FULL": 2_000, "NORMAL": 10_000},
    raw_claim={"FULL": 1_000, "NORMAL": 5_000},
)

QUICK = Counts(
    enqueue={"memory": 2_000, "sqlite": 200, "sqlite-fast": 500, "postgres": 300},
    batch_jobs=2_000,
    batch_size=100,
    process_jobs=1_000,
    concurrencies=(16, 32),
    latency_jobs=100,
    latency_rate=200.0,
    raw_insert={"FULL": 200, "NORMAL": 1_000},
    raw_claim={"FULL": 100, "NORMAL": 500},
)
