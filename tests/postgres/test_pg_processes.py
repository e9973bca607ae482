"""Worker processes on PostgreSQL: 4 processes x concurrency 16 on 20,000
jobs complete each exactly once, and every job still completes when the
server is crashed and restarted (``pg_ctl restart -m immediate``) mid-run.

The restart uses ``bash .ci/postgres.sh restart-immediate`` on the server
``.ci/postgres.sh start`` made for ``JOBQ_TEST_POSTGRES_URL`` (the port is
taken from the URL); set ``JOBQ_TEST_POSTGRES_RESTART`` to another shell
command to restart a server managed otherwise.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import pgproc
import pytest

import jobq

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
JOBS = 20_000
WORKERS = 4
CONCURRENCY = 16
DEADLINE = 240.0  # seconds; generous, a pass takes a fraction of it


def session_url(server_url: str, schema: str) -> str:
    """The server URL with ``schema`` first on the search_path and commits
    that are durable once acknowledged (the test server runs with
    ``synchronous_commit=off``, which may lose the last commits in a crash)."""
    parts = urlsplit(server_url)
    option = "options=" + quote(f"-csearch_path={schema} -csynchronous_commit=on", safe="")
    return urlunsplit(parts._replace(query=f"{parts.query}&{option}" if parts.query else option))


@pytest.fixture
def schema(server_url: str) -> Iterator[str]:
    """A fresh schema, dropped on a fresh connection (the server may have
    restarted meanwhile)."""
    import psycopg
    from psycopg import sql

    name = f"jobq_pp_{secrets.token_hex(6)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    yield name
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def workers() -> Iterator[list[pgproc.Worker]]:
    started: list[pgproc.Worker] = []
    try:
        yield started
    finally:
        pgproc.kill_all(started)


def enqueue(url: str, total: int) -> list[str]:
    async def go() -> list[str]:
        async with jobq.PostgresQueue(url) as queue:
            ids: list[str] = []
            for start in range(0, total, 2000):
                jobs = await queue.enqueue_many(
                    [jobq.NewJob("t", n) for n in range(start, min(total, start + 2000))]
                )
                ids += [job.id for job in jobs]
            return ids

    return asyncio.run(go())


def status_counts(server_url: str, schema: str) -> dict[str, int]:
    """Job counts by stored status; ``{}`` while the server is unreachable."""
    import psycopg

    try:
        with psycopg.connect(server_url, autocommit=True, connect_timeout=2) as conn:
            rows = conn.execute(
                f'SELECT status, count(*) FROM "{schema}".kmsg_jobs GROUP BY status'
            ).fetchall()
    except psycopg.OperationalError:
        return {}
    return {status: int(n) for status, n in rows}


def start_workers(workdir: Path, url: str, workers: list[pgproc.Worker], **config: Any) -> None:
    for n in range(WORKERS):
        workers.append(pgproc.spawn(workdir, f"w{n}", {"url": url, "concurrency": CONCURRENCY, **config}))
    wait_for(
        lambda: all((workdir / f"ready-{w.name}").exists() for w in workers), "workers to start", workers
    )


def wait_for(predicate: Any, what: str, workers: list[pgproc.Worker], timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        for worker in workers:
            assert worker.alive(), f"worker {worker.name} exited while waiting for {what}:\n{worker.stderr()}"
        assert time.monotonic() < deadline, f"timed out after {timeout:g} s waiting for {what}"
        time.sleep(0.1)


def stop_workers(workers: list[pgproc.Worker]) -> None:
    """SIGTERM; each must exit 0 on its own, with no traceback."""
    for worker in workers:
        assert worker.alive(), f"worker {worker.name} exited early:\n{worker.stderr()}"
        worker.popen.send_signal(signal.SIGTERM)
    for worker in workers:
        code = worker.popen.wait(60)
        assert code == 0, f"worker {worker.name} exited {code}:\n{worker.stderr()}"
        assert "Traceback" not in worker.stderr(), worker.stderr()


def restart_server(server_url: str) -> None:
    command = os.environ.get("JOBQ_TEST_POSTGRES_RESTART")
    env = dict(os.environ)
    if command is None:
        command = f"bash {ROOT / '.ci' / 'postgres.sh'} restart-immediate"
        env["JOBQ_PG_PORT"] = str(urlsplit(server_url).port or 5432)
    result = subprocess.run(
        command, shell=True, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, (
        f"could not restart the test server with {command!r} (set JOBQ_TEST_POSTGRES_RESTART to a"
        f" command that does):\n{result.stdout}{result.stderr}"
    )


def test_four_processes_complete_20000_jobs_exactly_once(
    server_url: str, schema: str, tmp_path: Path, workers: list[pgproc.Worker]
) -> None:
    url = session_url(server_url, schema)
    ids = enqueue(url, JOBS)
    started = time.monotonic()
    start_workers(tmp_path, url, workers)
    wait_for(lambda: status_counts(server_url, schema).get("completed", 0) >= JOBS, "every job", workers)
    elapsed = time.monotonic() - started
    stop_workers(workers)

    assert status_counts(server_url, schema) == {"completed": JOBS}
    executed = pgproc.counts(tmp_path, "exec")
    assert set(executed) == set(ids)
    assert [job for job, n in executed.items() if n != 1] == []
    done = pgproc.counts(tmp_path, "done")
    assert set(done) == set(ids) and set(done.values()) == {1}
    print(f"\n{JOBS} jobs, {WORKERS} processes x {CONCURRENCY}: {elapsed:.1f} s, {JOBS / elapsed:.0f} jobs/s")


def test_every_job_completes_through_an_immediate_server_restart(
    server_url: str, schema: str, tmp_path: Path, workers: list[pgproc.Worker]
) -> None:
    url = session_url(server_url, schema)
    ids = enqueue(url, JOBS)
    started = time.monotonic()
    # A short lease, so jobs claimed by a claim whose reply was lost in the
    # crash come back within seconds.
    start_workers(tmp_path, url, workers, lease=8.0, heartbeat_interval=2.0)
    wait_for(lambda: status_counts(server_url, schema).get("completed", 0) >= JOBS // 4, "a quarter", workers)
    before = status_counts(server_url, schema).get("completed", 0)
    restarted_at = time.monotonic()
    restart_server(server_url)
    back_at = time.monotonic()
    wait_for(lambda: status_counts(server_url, schema).get("completed", 0) >= JOBS, "every job", workers)
    finished = time.monotonic()
    stop_workers(workers)

    assert status_counts(server_url, schema) == {"completed": JOBS}
    executed = pgproc.counts(tmp_path, "exec")
    done = pgproc.counts(tmp_path, "done")
    assert set(executed) == set(ids)
    # Each job's completion was confirmed exactly once; a job ran more than
    # once only when a run's completion could not be written (the crash cut
    # it off), and then ran again after its lease.
    assert set(done) == set(ids) and set(done.values()) == {1}
    again = {job: n for job, n in executed.items() if n > 1}
    lost_writes = sum(executed.values()) - sum(done.values())
    assert sum(n - 1 for n in again.values()) == lost_writes
    print(
        f"\nrestart at {before}/{JOBS} completed; server down {back_at - restarted_at:.1f} s;"
        f" all completed {finished - back_at:.1f} s after it was back; total {finished - started:.1f} s;"
        f" jobs run twice (completion lost in the crash): {len(again)}"
    )
