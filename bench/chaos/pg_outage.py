"""Scenario 6, PostgreSQL restarts and an outage, on a server of the scenario's own.

The scenario starts a private PostgreSQL server with the project's script
(``JOBQ_PG_PORT=54331 JOBQ_PG_DIR=/tmp/jobq-chaos-pg bash .ci/postgres.sh
start``; ``JOBQ_CHAOS_PG_PORT`` and ``JOBQ_CHAOS_PG_DIR`` change them), never
touching the shared test server, and stops it (deleting its data) at the end.
Faults, spread over the run while a producer enqueues and workers run:

- ``restarts`` times ``postgres.sh restart-immediate`` (``pg_ctl restart -m
  immediate``: a crash, every connection cut, the server back about a second
  later);
- one outage: ``pg_ctl stop -m fast`` (connections refused), ``outage``
  seconds down, then ``postgres.sh start`` again (same data).

The database gets ``synchronous_commit=on`` (postgres.sh keeps it on; with
it off a crash loses commits the server had acknowledged: see
``PrivateServer.make_durable``). Every process uses ``pool_timeout`` (in the URL) shorter than the outage, so
a verb that cannot reach the server raises ``jobq.StoreUnavailable`` while
it is down. The producer (:mod:`bench.chaos.child_extra`) records each such
refusal and enqueues the same batch again afterwards; only acknowledged jobs
are in the ledger. The workers are the harness's (:mod:`bench.chaos.child`).

Promises: 0 lost (every acknowledged job completed); no worker process
exits (each is alive at the end, stops with status 0 on SIGTERM, and started
once); the producer was refused during the outage, only ever with
``StoreUnavailable``; duplicates no more than the jobs the workers could
hold at the faults (each worker holds at most ``concurrency`` running jobs
and as many finished ones whose completion is not written yet; a job whose
lease expires during the outage runs again, by design). Recovery is the time
from the server accepting connections again to the first completion after
it, and to the producer's first acknowledged enqueue after it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .child_extra import spawn
from .harness import DEADLINE, ROOT, Backend, Fleet, Result, status_counts, tally, wait_until

SCRIPT = ROOT / ".ci" / "postgres.sh"
PORT = int(os.environ.get("JOBQ_CHAOS_PG_PORT", "54331"))
DIRECTORY = os.environ.get("JOBQ_CHAOS_PG_DIR", "/tmp/jobq-chaos-pg")


@dataclass(frozen=True)
class Size:
    jobs: int
    restarts: int
    outage: float  # seconds the server is down
    rate: float  # jobs/s the producer aims at
    pool_timeout: float  # seconds a verb retries before StoreUnavailable
    lease: float
    workers: int = 2
    concurrency: int = 8
    batch: int = 20


SIZES = {
    "ci": Size(jobs=2_000, restarts=1, outage=5.0, rate=200.0, pool_timeout=2.0, lease=3.0),
    "full": Size(jobs=20_000, restarts=3, outage=30.0, rate=250.0, pool_timeout=5.0, lease=5.0),
}


def postgres_bin() -> str | None:
    """Where the PostgreSQL server binaries are, as .ci/postgres.sh finds them; None if absent."""
    if os.environ.get("PG_BIN"):
        return os.environ["PG_BIN"]
    found = sorted(
        (d for d in glob.glob("/usr/lib/postgresql/*/bin") if os.access(f"{d}/initdb", os.X_OK)),
        key=lambda d: [int(p) if p.isdigit() else p for p in d.split("/")[3].split(".")],
    )
    if found:
        return found[-1]
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


class PrivateServer:
    """A PostgreSQL server of this scenario's own, through .ci/postgres.sh."""

    def __init__(self, port: int = PORT, directory: str = DIRECTORY) -> None:
        self.port, self.directory = port, directory
        self.env = {**os.environ, "JOBQ_PG_PORT": str(port), "JOBQ_PG_DIR": directory}
        self.url = ""

    def _script(self, command: str) -> str:
        done = subprocess.run(
            ["bash", str(SCRIPT), command], env=self.env, capture_output=True, text=True, timeout=180
        )
        if done.returncode != 0:
            raise AssertionError(f"postgres.sh {command} failed ({done.returncode}): {done.stderr.strip()}")
        return done.stdout.strip()

    def start(self) -> str:
        self.url = self._script("start")
        return self.url

    def make_durable(self) -> None:
        """With ``synchronous_commit=off`` a commit returns before its WAL
        record is written, and a crash (``restart -m immediate``) then loses
        the last few hundred milliseconds of acknowledged commits, enqueues
        included. postgres.sh keeps it on; whatever the server's settings,
        this scenario measures jobq, not that trade-off: its database gets
        ``synchronous_commit=on`` (a per-database setting, which overrides
        the server's command line for every new session). ``fsync=off``
        stays: it matters only when the operating system crashes."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            database = conn.info.dbname
            conn.execute("SET synchronous_commit = on")  # this very change must not be lost either
            conn.execute(f'ALTER DATABASE "{database}" SET synchronous_commit = on')

    def restart_immediate(self) -> None:
        self._script("restart-immediate")

    def stop_keeping_data(self) -> None:
        """``pg_ctl stop -m fast`` (postgres.sh's ``stop`` would delete the data)."""
        pg_bin = postgres_bin()
        assert pg_bin is not None
        command = [f"{pg_bin}/pg_ctl", "-D", f"{self.directory}/data", "-w", "-t", "60", "stop", "-m", "fast"]
        if os.geteuid() == 0:  # as postgres.sh does: the server runs as the postgres user
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, cwd="/", capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise AssertionError(f"pg_ctl stop failed ({done.returncode}): {done.stderr.strip()}")

    def destroy(self) -> None:
        self._script("stop")


def run(backend: Backend, workdir: Path, size: Size) -> list[Result]:
    if backend.name != "postgres":
        return []  # a PostgreSQL scenario; its server is its own, not the backend's
    return [run_private(workdir, size)]


def run_private(workdir: Path, size: Size) -> Result:
    server = PrivateServer()
    try:
        url = server.start()
        server.make_durable()
        return _run(server, url, workdir, size)
    finally:
        with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
            server.destroy()


def _run(server: PrivateServer, server_url: str, workdir: Path, size: Size) -> Result:
    faults: list[dict[str, Any]] = []
    with Backend("postgres", server_url) as backend:
        url = backend.fresh_url(workdir, "pg_outage") + f"&pool_timeout={size.pool_timeout:g}"
        config = {
            "lease": size.lease,
            "heartbeat_interval": size.lease / 3,
            "rescue_interval": 0.5,
            "concurrency": size.concurrency,
            "max_lost_leases": 20,
        }
        import psycopg

        with psycopg.connect(server_url, autocommit=True) as conn:
            synchronous_commit = str(conn.execute("SHOW synchronous_commit").fetchone()[0])  # type: ignore[index]
        with Fleet(workdir, url) as fleet:
            workers = [fleet.worker(f"w{i}", **config) for i in range(size.workers)]
            fleet.wait_ready(*workers)
            producer = spawn(
                fleet, "producer", "producer", count=size.jobs, batch=size.batch, rate=size.rate,
                max_attempts=25, retry_pause=0.2, data={"sleep_range": [0, 0.02]},
            )  # fmt: skip
            plan = ["restart"] * size.restarts + ["outage"]
            if size.restarts >= 2:  # the outage between restarts, not only after them
                plan = ["restart"] * (size.restarts - 1) + ["outage", "restart"]
            for i, kind in enumerate(plan):
                goal = size.jobs * (i + 1) // (len(plan) + 2)
                wait_until(lambda: len(fleet.ledger.enqueued()) >= goal, f"{goal} jobs enqueued", fleet=fleet)  # noqa: B023 - called before the loop moves on
                began = time.time()
                if kind == "restart":
                    server.restart_immediate()
                else:
                    server.stop_keeping_data()
                    time.sleep(size.outage)
                    server.start()
                faults.append({"kind": kind, "began": began, "up": time.time()})
                fleet.check_alive()

            wait_until(lambda: producer.popen.poll() is not None, "the producer to finish", fleet=fleet,
                       timeout=DEADLINE + size.jobs / 50)  # fmt: skip
            wait_until(
                lambda: status_counts(url).get("completed", 0) >= size.jobs,
                f"{size.jobs} jobs to complete",
                fleet=fleet,
                timeout=600,
                interval=0.25,
            )
            alive = [w.name for w in workers if w.alive()]
            codes = fleet.stop_all()
            counted = tally(fleet)
            refusals = fleet.ledger.events("enqueue_failed")
            completions = sorted(r.at for r in fleet.ledger.completions() if r.what == "ok")
            enqueues = sorted(r.at for r in fleet.ledger.enqueued())
            starts = fleet.ledger.events("processor_started")
            unexpected = fleet.unexpected_exits()
            not_recorded = len(fleet.stderr_lines("could not record the result"))

    recoveries: list[float] = []
    never: list[str] = []
    for fault in faults:
        fault["refused"] = sum(1 for r in refusals if fault["began"] <= r.at <= fault["up"] + 1.0)
        after = [next((at for at in stamps if at >= fault["up"]), None) for stamps in (completions, enqueues)]
        if after[0] is None:
            never.append(fault["kind"])
        else:
            # The producer may have finished before the last fault: only the workers must resume.
            recoveries.append(max(at for at in after if at is not None) - fault["up"])
    outage = next(f for f in faults if f["kind"] == "outage")
    bound = len(faults) * size.workers * 2 * size.concurrency
    kinds = [r.error.split(":", 1)[0] if r.error else "?" for r in refusals]
    result = Result(
        "6 PostgreSQL restarts and outage",
        "postgres",
        size.jobs,
        len(faults),
        len(counted.lost),
        counted.duplicated,
        max(recoveries) if recoveries else None,
        f"{size.restarts} x restart -m immediate, {size.outage:g} s outage; {len(refusals)} enqueues refused"
        f" ({outage['refused']} in the outage); {not_recorded} results not recorded",
        details={
            "faults": faults,
            "refusals": len(refusals),
            "refusal_kinds": sorted(set(kinds)),
            "refusal_sample": sorted({r.error or "" for r in refusals})[:3],
            "results_not_recorded": not_recorded,
            "exit_codes": codes,
            "workers_alive_at_end": alive,
            "synchronous_commit": synchronous_commit,
        },
    )
    result.check(
        len(counted.expected) == size.jobs, f"the ledger lists {len(counted.expected)} enqueued jobs"
    )
    result.check(synchronous_commit == "on", f"the server runs with synchronous_commit={synchronous_commit}")
    result.check(not counted.lost, f"{len(counted.lost)} jobs lost")
    result.check(len(alive) == size.workers, f"only {alive} of {size.workers} workers alive at the end")
    result.check(
        all(codes.get(w) == 0 for w in (f"w{i}" for i in range(size.workers))), f"worker exit codes {codes}"
    )
    result.check(len(starts) == size.workers, f"{len(starts)} processor starts for {size.workers} workers")
    result.check(outage["refused"] >= 1, "the producer was never refused during the outage")
    result.check(set(kinds) <= {"StoreUnavailable"}, f"enqueues raised {sorted(set(kinds))}")
    result.check(not never, f"no completion after {never}")
    result.check(
        counted.duplicated <= bound, f"{counted.duplicated} duplicates > {bound} jobs held at the faults"
    )
    result.check(not unexpected, "a child exited with an error")
    return result
