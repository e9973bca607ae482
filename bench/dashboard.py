"""``python -m bench.dashboard``: what an operator waits for at a million jobs.

python -m bench.dashboard                  # 1,000,000 jobs, SQLite (and PostgreSQL when its URL is set)
python -m bench.dashboard --jobs 100000    # fewer jobs
python -m bench.dashboard --no-postgres

Fills one job table with ``--jobs`` jobs in one statement (90 % completed,
5 % failed, 3 % ready, 1 % delayed, 1 % processing; ten types over three
named queues; one job every 10 ms, so the last hour holds 360,000 at a
million) and its attempt history (a failed attempt for each failed job, and
a retried one before each of 5 % of the completed ones), then times, each
``--runs`` times (the median is printed):

- ``GET /api/overview``: its first call, the polls while the first count
  per queue and type still runs, and (once it ended) the later polls; ``GET
  /`` (the overview page), through the dashboard's ASGI app; and that full
  count, which the overview redoes in the background every 30 s,
- ``GET /queues/mail`` (the queue page) and ``GET /metrics`` (a scrape),
- ``GET /jobs`` at its deepest page (the last page, by ``offset``, as an old
  link reaches it), a page by its cursor (``after``, as the page's links now
  go), and a page of failed jobs,
- ``jobq stats``: its reads in process, and the command (a new process each
  time: Python's start and imports included, printed apart).

With ``JOBQ_BENCH_POSTGRES_URL`` (or ``JOBQ_TEST_POSTGRES_URL``) set, the same
on PostgreSQL, in a fresh schema dropped afterwards. Nothing here asserts a
speed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import pg

JOBS = 1_000_000
RUNS = 5
TOKEN = "bench-token"


def _rows_select(n: int, now_ms: int, series: str) -> str:
    """The SELECT producing ``n`` job rows from the integer column ``i`` of
    ``series``; created one every 10 ms up to ``now_ms``."""
    created = f"({now_ms} - ({n} - i) * 10)"
    status = (
        "CASE WHEN i % 100 < 90 THEN 'completed' WHEN i % 100 < 95 THEN 'failed'"
        " WHEN i % 100 < 99 THEN 'pending' ELSE 'processing' END"
    )
    process_at = f"CASE WHEN i % 100 = 98 THEN {now_ms} + 3600000 ELSE {created} END"
    completed = f"CASE WHEN i % 100 < 90 THEN {created} + 5 END"
    failed = f"CASE WHEN i % 100 BETWEEN 90 AND 94 THEN {created} + 5 END"
    error = "CASE WHEN i % 100 BETWEEN 90 AND 94 THEN 'boom' END"
    queue = "CASE i % 3 WHEN 0 THEN 'default' WHEN 1 THEN 'mail' ELSE 'reports' END"
    return (
        "SELECT 'job' || i, 'type' || (i % 10), '{\"n\":' || i || '}', "
        f"{status}, 0, 0, 3, 0, {created}, {process_at}, {completed}, {failed}, {error}, '{{}}', {queue}"
        f" FROM {series}"
    )


def _attempts_select(table: str) -> str:
    """The attempt history of the filled jobs: a failed attempt for each
    failed job, and a retried attempt before each of 5 % of the completed
    ones (their job rows keep the completed attempt)."""
    failed = (
        f"SELECT id, 1, 'w1', created_at + 1, failed_at, 'failed', 'RuntimeError', 'boom' FROM {table}"
        " WHERE status = 'failed'"
    )
    retried = (
        f"SELECT id, 1, 'w1', created_at + 1, completed_at - 2, 'retry', 'RuntimeError', 'flaky' FROM {table}"
        " WHERE status = 'completed' AND CAST(substr(id, 4) AS INTEGER) % 100 < 5"
    )
    return f"{failed} UNION ALL {retried}"


_ATTEMPT_COLUMNS = "job_id, attempt, worker, started_at, ended_at, outcome, error_type, error"

_COLUMNS = (
    "id, type, data, status, priority, attempts, max_attempts, delay, created_at, process_at,"
    " completed_at, failed_at, error, metadata, queue"
)


async def _create(url: str) -> None:
    import jobq

    async with await jobq.connect(url):
        pass


def fill_sqlite(path: Path, n: int) -> str:
    url = f"sqlite:///{path}"
    asyncio.run(_create(url))
    now_ms = int(time.time() * 1000)
    conn = sqlite3.connect(path)
    series = f"(WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n}) SELECT i FROM s)"
    conn.execute(f"INSERT INTO jobs ({_COLUMNS}) {_rows_select(n, now_ms, series)}")
    conn.execute(f"INSERT INTO jobq_jobs_attempts ({_ATTEMPT_COLUMNS}) {_attempts_select('jobs')}")
    conn.commit()
    conn.execute("ANALYZE")
    conn.close()
    return url


def fill_postgres(url: str, n: int) -> None:
    import psycopg

    asyncio.run(_create(url))
    now_ms = int(time.time() * 1000)
    with psycopg.connect(pg.admin_dsn(url), autocommit=True) as conn:
        series = f"generate_series(1, {n}) AS i"
        conn.execute(f"INSERT INTO kmsg_jobs ({_COLUMNS}) {_rows_select(n, now_ms, series)}")
        conn.execute(f"INSERT INTO kmsg_jobs_jobq_attempts ({_ATTEMPT_COLUMNS}) {_attempts_select('kmsg_jobs')}")
        conn.execute("VACUUM ANALYZE kmsg_jobs")
        conn.execute("VACUUM ANALYZE kmsg_jobs_jobq_attempts")


def _median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 1)


async def _time_app(url: str, runs: int, n: int) -> dict[str, float]:
    import httpx

    import jobq
    from jobq.web import create_app

    results: dict[str, float] = {}
    async with await jobq.connect(url) as queue:
        app = create_app(queue, auth=TOKEN)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost", headers=headers) as client:
            # The first overview starts the count of every job per queue and
            # type, waits for it 0.25 s at most, and answers with the
            # unfinished jobs alone meanwhile; later ones (the page polls
            # every 2 s) answer from the last count while it is redone in
            # the background (jobq.admin.figures).
            started = time.perf_counter()
            response = await client.get("/api/overview")
            results["GET /api/overview (first)"] = round((time.perf_counter() - started) * 1000, 1)
            # Polls while that first count still runs: answered with the
            # unfinished jobs alone, beside the count (which holds a core).
            samples = []
            for _ in range(runs):
                started = time.perf_counter()
                response = await client.get("/api/overview")
                samples.append(time.perf_counter() - started)
            results["GET /api/overview (polls during the first count)"] = _median_ms(samples)
            await _until_counted(client)
            last = (n - 1) // 50 * 50
            first_page = await client.get("/api/jobs", params={"limit": 50})
            cursor = ""
            if first_page.status_code == 200:
                cursor = first_page.json().get("next_cursor") or ""
            paths: dict[str, tuple[str, dict[str, Any]]] = {
                "GET /api/overview (later polls)": ("/api/overview", {}),
                "GET / (overview page)": ("/", {}),
                "GET /jobs (deepest page, offset)": ("/jobs", {"offset": last}),
                "GET /jobs?status=failed": ("/jobs", {"status": "failed"}),
                "GET /queues/mail (queue page)": ("/queues/mail", {}),
                "GET /metrics (a scrape)": ("/metrics", {}),
            }
            if cursor:
                paths["GET /jobs (next page, after=cursor)"] = ("/jobs", {"after": cursor})
            for name, (path, params) in paths.items():
                samples = []
                for _ in range(runs):
                    started = time.perf_counter()
                    response = await client.get(path, params=params)
                    samples.append(time.perf_counter() - started)
                    if response.status_code != 200:
                        raise RuntimeError(f"{name}: HTTP {response.status_code}: {response.text[:200]}")
                results[name] = _median_ms(samples)
    return results


async def _until_counted(client: Any, timeout: float = 120.0) -> None:
    """Waits for the overview's first whole count (its ``breakdown`` turns
    ``"all"``), so later polls are timed as an open dashboard sees them."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (await client.get("/api/overview")).json().get("breakdown") == "all":
            return
        await asyncio.sleep(0.2)
    raise RuntimeError("the overview's first count did not end")


async def _time_full_count(url: str, runs: int) -> float:
    """The count per queue and type the overview redoes in the background."""
    import jobq
    from jobq import admin

    samples = []
    async with await jobq.connect(url) as queue:
        for _ in range(runs):
            started = time.perf_counter()
            await admin.breakdown(queue, minutes=admin.THROUGHPUT_MINUTES)
            samples.append(time.perf_counter() - started)
    return _median_ms(samples)


async def _time_stats_in_process(url: str, runs: int) -> float:
    """What ``jobq stats`` reads, without starting a process."""
    import jobq
    from jobq import admin

    samples = []
    async with await jobq.connect(url) as queue:
        for _ in range(runs):
            started = time.perf_counter()
            await admin.stats(queue)
            await queue.size()
            samples.append(time.perf_counter() - started)
    return _median_ms(samples)


def _time_stats(url: str, runs: int, src: str) -> float:
    env = {**os.environ, "PYTHONPATH": src}
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "jobq", "stats", "--url", url], env=env, check=True, stdout=subprocess.DEVNULL
        )
        samples.append(time.perf_counter() - started)
    return _median_ms(samples)


def _time_import(runs: int, src: str) -> float:
    """A process that imports jobq's command line and exits: what every
    ``jobq`` command pays before it reads anything."""
    env = {**os.environ, "PYTHONPATH": src}
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import jobq.cli"], env=env, check=True)
        samples.append(time.perf_counter() - started)
    return _median_ms(samples)


def measure(url: str, runs: int, n: int, src: str) -> dict[str, float]:
    out = asyncio.run(_time_app(url, runs, n))
    out["full count per queue and type (background)"] = asyncio.run(_time_full_count(url, runs))
    out["jobq stats: its reads (in process)"] = asyncio.run(_time_stats_in_process(url, runs))
    out["jobq stats (a process)"] = _time_stats(url, runs, src)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dashboard", description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=JOBS, help=f"jobs in the table (default {JOBS:,})")
    parser.add_argument("--runs", type=int, default=RUNS, help=f"times each figure, median printed (default {RUNS})")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only, even when a PostgreSQL URL is set")
    parser.add_argument("--dir", default=None, help="where the SQLite file goes (default: the system temp dir)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    src = str(Path(__import__("jobq").__file__).resolve().parent.parent)
    columns: dict[str, dict[str, float]] = {}

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    with tempfile.TemporaryDirectory(dir=args.dir, prefix="jobq-bench-dashboard-") as tmp:
        log(f"filling SQLite with {args.jobs:,} jobs")
        url = fill_sqlite(Path(tmp) / "jobs.db", args.jobs)
        log("timing SQLite")
        columns["sqlite"] = measure(url, args.runs, args.jobs, src)
    found = None if args.no_postgres else pg.server_url()
    if found is not None:
        server = pg.Server(*found)
        schema, url = server.fresh()
        try:
            log(f"filling PostgreSQL with {args.jobs:,} jobs")
            fill_postgres(url, args.jobs)
            log("timing PostgreSQL")
            columns["postgres"] = measure(url, args.runs, args.jobs, src)
        finally:
            server.drop(schema)
            server.close()
    baseline = _time_import(args.runs, src)
    names = list(next(iter(columns.values())))
    width = max(len(name) for name in names) + 2
    print(f"jobq dashboard bench: {args.jobs:,} jobs, median of {args.runs} run(s), milliseconds")
    print("".ljust(width) + "".join(name.rjust(12) for name in columns))
    for name in names:
        print(name.ljust(width) + "".join(f"{col.get(name, float('nan')):12.1f}" for col in columns.values()))
    print(f"(a process importing jobq.cli alone: {baseline:.1f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
