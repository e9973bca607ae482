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
#: Peers, measured beside jobq when installed (``pip install '.[bench]'``):
#: peer column -> the jobq column it is compared with.
PEERS: dict[str, str] = {"huey": "sqlite", "pgqueuer": POSTGRES}
#: The raw-engine reference of each jobq column: a SQLite synchronous mode, or psycopg.
RAW_MODES: dict[str, str] = {"sqlite": "FULL", "sqlite-fast": "NORMAL", POSTGRES: POSTGRES}
#: Columns of the claim-cost-at-scale and RSS figures. SQLite runs them at
#: durability fast: with a sync per commit, the disk would hide the cost of
#: the statements themselves.
SCALE_BACKENDS = ("sqlite-fast", POSTGRES)


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
    #: raw-engine references: jobs per synchronous mode (FULL, NORMAL) or
    #: "postgres"; one row/job per transaction, and ``batch_size`` per transaction
    raw_insert: dict[str, int]
    raw_claim: dict[str, int]
    raw_claim_batch: dict[str, int]
    #: ``jobq worker --processes N`` draining ``process_jobs``, each process at
    #: the first of ``concurrencies``
    processes: int = 2
    #: claim cost: finished rows in the big table, dequeue+complete cycles timed
    scale_rows: int = 1_000_000
    scale_cycles: dict[str, int] = field(default_factory=dict)
    #: concurrent producers, each enqueuing one job per call: tasks in one
    #: process, and processes (``enqueue`` jobs in all)
    producer_tasks: int = 8
    producer_processes: int = 4
    #: scheduled backlog: jobs not yet due (of a higher priority than the
    #: ready ones) in the big table; ready jobs a processor drains beside it
    #: (and beside none); delayed jobs whose start is timed, due ``delayed_by`` s
    #: after their enqueue, at ``delayed_rate`` per second
    backlog_rows: int = 1_000_000
    backlog_process_jobs: int = 5_000
    delayed_jobs: int = 200
    delayed_rate: float = 100.0
    delayed_by: float = 0.1
    #: worker RSS: jobs fed to one worker, and the completed counts at which RSS is sampled
    rss_jobs: int = 1_000_000
    rss_checkpoints: tuple[int, ...] = (10_000, 100_000, 1_000_000)
    runs: int = 3
    timeouts: dict[str, float] = field(default_factory=dict)


DEFAULT = Counts(
    enqueue={
        "memory": 20_000, "sqlite": 2_000, "sqlite-fast": 5_000, "postgres": 3_000,
        "huey": 2_000, "pgqueuer": 3_000,
    },  # fmt: skip
    batch_jobs=20_000,
    batch_size=100,
    process_jobs=20_000,
    concurrencies=(16, 32, 64),
    latency_jobs=1_000,
    latency_rate=200.0,
    raw_insert={"FULL": 2_000, "NORMAL": 10_000, "postgres": 3_000},
    raw_claim={"FULL": 1_000, "NORMAL": 5_000, "postgres": 2_000},
    raw_claim_batch={"FULL": 20_000, "NORMAL": 20_000, "postgres": 20_000},
    scale_cycles={"sqlite-fast": 2_000, "postgres": 1_000},
)

QUICK = Counts(
    enqueue={"memory": 2_000, "sqlite": 200, "sqlite-fast": 500, "postgres": 300, "huey": 200, "pgqueuer": 300},
    batch_jobs=2_000,
    batch_size=100,
    process_jobs=1_000,
    concurrencies=(16, 32),
    latency_jobs=100,
    latency_rate=200.0,
    raw_insert={"FULL": 200, "NORMAL": 1_000, "postgres": 300},
    raw_claim={"FULL": 100, "NORMAL": 500, "postgres": 200},
    raw_claim_batch={"FULL": 2_000, "NORMAL": 2_000, "postgres": 2_000},
    scale_rows=10_000,
    backlog_rows=10_000,
    backlog_process_jobs=500,
    delayed_jobs=50,
    scale_cycles={"sqlite-fast": 200, "postgres": 100},
    rss_jobs=20_000,
    rss_checkpoints=(2_000, 20_000),
    # One run: a smoke test of every workload (peers included) in about a
    # minute; --runs asks for more.
    runs=1,
)
