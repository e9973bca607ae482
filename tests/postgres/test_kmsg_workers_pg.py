"""k-msg workers beside jobq workers on PostgreSQL's ``kmsg_jobs``, in real
processes: the test of ``tests/acceptance/test_kmsg_workers.py`` with k-msg's
PostgreSQL statements (``tests/kmsg_sql.py``: its dequeue, like its SQLite
one, sets the status and takes no lease).

A k-msg producer enqueues 1,500 jobs while a k-msg worker (four threads)
runs them, failing some (with a retry), holding some, abandoning a few in
``processing``; two jobq processors run beside it. No job k-msg holds is
taken or run by jobq, each job completes exactly once, attempts and errors
are as k-msg left them, and an abandoned claim is taken back only after
``foreign_claim_timeout`` and completed once.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kmsg_sql
import pgproc
import pytest
from test_pg_processes import wait_for

import jobq

pytestmark = pytest.mark.slow

TOTAL = 1500
FOREIGN_TIMEOUT = 15.0  # seconds; k-msg holds a job 1 s at most unless it abandons it
KMSG = {"concurrency": 4, "abandon_every": 10, "abandon_max": 5, "fail_every": 7, "hold_every": 5, "hold": 1.0}
DEADLINE = 300.0  # seconds; generous, a pass takes a fraction of it


@pytest.fixture
def children() -> Iterator[list[pgproc.Worker]]:
    started: list[pgproc.Worker] = []
    try:
        yield started
    finally:
        pgproc.kill_all(started)


def final_rows(server_url: str, schema: str) -> dict[str, dict[str, Any]]:
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(server_url, autocommit=True, row_factory=dict_row) as conn:
        return {row["id"]: row for row in conn.execute(f'SELECT * FROM "{schema}".kmsg_jobs').fetchall()}


def completed(server_url: str, schema: str) -> int:
    return sum(row["status"] == "completed" for row in final_rows(server_url, schema).values())


def test_kmsg_workers_and_jobq_workers_share_kmsg_jobs(
    server_url: str, pg_schema: str, pg_url: str, tmp_path: Path, children: list[pgproc.Worker]
) -> None:
    url, schema, workers = pg_url, pg_schema, children

    async def create_table() -> None:  # jobq migrate, as docs/sharing-with-kmsg.md says
        async with jobq.PostgresQueue(url):
            pass

    asyncio.run(create_table())
    workers.append(pgproc.spawn(tmp_path, "producer", {"command": "produce", "url": url, "count": TOTAL}))
    kmsg = pgproc.spawn(tmp_path, "kmsg", {"command": "work", "url": url, **KMSG})
    workers.append(kmsg)

    def head_start() -> bool:
        seen = kmsg_sql.outcomes(tmp_path)
        return seen.get("abandoned", 0) >= 2 and seen.get("failed", 0) >= 2 and seen.get("held", 0) >= 2

    wait_for(head_start, "k-msg to abandon, fail and hold jobs", [kmsg], timeout=DEADLINE)
    jobq_side = [
        pgproc.spawn(tmp_path, f"w{n}", {"url": url, "concurrency": 4, "foreign_claim_timeout": FOREIGN_TIMEOUT})
        for n in range(2)
    ]
    workers.extend(jobq_side)
    wait_for(lambda: completed(server_url, schema) >= TOTAL, f"{TOTAL} jobs completed", [kmsg, *jobq_side],
             timeout=DEADLINE)  # fmt: skip

    (tmp_path / "stop-kmsg").touch()
    for worker in jobq_side:
        worker.popen.send_signal(signal.SIGTERM)
    for worker in workers:
        code = worker.popen.wait(60)
        assert code == 0, f"{worker.name} exited {code}:\n{worker.stderr()}"
        assert "Traceback" not in worker.stderr(), worker.stderr()
    for worker in jobq_side:
        for line in worker.stderr().splitlines():
            assert "was rescued: held in processing without a lease" in line, worker.stderr()

    print("\n" + kmsg_sql.audit(tmp_path, final_rows(server_url, schema), foreign_timeout=FOREIGN_TIMEOUT))
