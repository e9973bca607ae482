"""Scenario 9, disk full (SQLite): the database cannot grow, then it can again.

How the disk fills: every process of the run caps the queue's file with
``PRAGMA max_page_count`` (``cap_pages``, room for every job of the run with
a wide margin). The limit belongs to a connection, not to the file, so the
worker and the producer are :mod:`bench.chaos.child_extra` children that set
it on each connection jobq opens to the file (``cap_sqlite``), and the
parent's own connection sets it too. The parent then fills the file to the
cap with rows of a table of its own (``chaos_filler``; 64 KiB rows, then
4 KiB, then 256 bytes, each until SQLite answers ``SQLITE_FULL``,
"database or disk is full"). From then on, any statement of any process
that needs one more page fails exactly as on a full disk, until the
parent deletes the filler rows ("space returns": the freed pages go to the
file's free list, and every connection allocates from it under the same
cap). A real full disk can also fail a commit's WAL append or a
checkpoint; the cap cannot, so this scenario covers the statements'
``SQLITE_FULL`` (the common case: the file grows inside a statement).

One worker (concurrency 8) runs the jobs; one producer enqueues ``jobs``
jobs (256-byte payloads, batches of 10) at a steady rate, and when an
enqueue raises a ``jobq`` error it records it and tries the same batch again
later, so every job it was told was stored is in the ledger once. The disk
fills ``episodes`` times, spread over the run; each time it stays full until
the producer has been refused and then ``hold`` seconds more, and the next
episode waits until both the producer and the worker succeeded again. Jobs
sleep 50 ms, so the worker usually lags the producer and a backlog waits
when the disk fills: the worker then meets the full disk too (its claims
fail; the table's notes count them). A worker that has caught up meets it
only if it writes, and with nothing ready it does not.

Promises: every refused enqueue raised ``jobq.StoreUnavailable`` (a raw
``sqlite3`` error would kill the producer); every acknowledged job
completes (0 lost); the worker process never exits, does not spin while the
disk is full (under half a core of CPU), and resumes once space returns
(both the producer and the worker succeed again); duplicates are no more
than the completions the worker could not record while full (each such job
runs again after its lease: documented behaviour); ``PRAGMA
integrity_check`` says ``ok``.

With ``durabilities=("full", "fast")`` (the runner's default) it runs twice,
on the default ``durability="full"`` and on ``?durability=fast``, whose
writes take another code path (``SQLiteStore._run_now``).
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from .child_extra import spawn, sqlite_path
from .harness import Backend, Fleet, Result, status_counts, tally, wait_until

FILLER = "chaos_filler"
FILL_SIZES = (65_536, 4_096, 256)  # bytes per filler row, largest first
STORE_RETRY_MAX = 5.0  # the worker's longest pause after a store error (jobq.processor.maintenance)


@dataclass(frozen=True)
class Size:
    jobs: int
    episodes: int
    hold: float  # seconds the disk stays full after the producer was first refused
    rate: float  # jobs/s the producer aims at
    lease: float
    batch: int = 10
    concurrency: int = 8
    payload: int = 256  # bytes of padding per job
    sleep: float = 0.05  # seconds per job: the worker (8 x 20 jobs/s) lags the producer, so a backlog waits

    @property
    def cap_pages(self) -> int:
        return 512 + self.jobs  # 4 KiB pages: about 4 KiB per job, several times what a job takes


SIZES = {
    "ci": Size(jobs=600, episodes=1, hold=3.0, rate=200.0, lease=3.0),
    "full": Size(jobs=6_000, episodes=3, hold=10.0, rate=300.0, lease=5.0),
}


def fill(path: str, cap_pages: int) -> int:
    """Fills the file up to ``cap_pages`` with filler rows; returns the bytes written."""
    written = 0
    with contextlib.closing(sqlite3.connect(path, timeout=60, isolation_level=None)) as conn:
        conn.execute("PRAGMA busy_timeout = 60000")
        conn.execute(f"PRAGMA max_page_count = {cap_pages}")
        conn.execute(f"CREATE TABLE IF NOT EXISTS {FILLER} (b BLOB NOT NULL)")
        for size in FILL_SIZES:
            blob = b"\0" * size
            while True:
                try:
                    conn.execute(f"INSERT INTO {FILLER} (b) VALUES (?)", (blob,))
                except sqlite3.OperationalError as exc:
                    if "full" not in str(exc).lower():
                        raise
                    break
                written += size
    return written


def free(path: str) -> None:
    """Deletes the filler rows: their pages go to the free list."""
    with contextlib.closing(sqlite3.connect(path, timeout=60, isolation_level=None)) as conn:
        conn.execute("PRAGMA busy_timeout = 60000")
        conn.execute(f"DELETE FROM {FILLER}")


def integrity(path: str) -> str:
    with contextlib.closing(sqlite3.connect(path, timeout=60)) as conn:
        return "; ".join(str(row[0]) for row in conn.execute("PRAGMA integrity_check").fetchall())


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def run(
    backend: Backend, workdir: Path, size: Size, durabilities: tuple[str, ...] = ("full", "fast")
) -> list[Result]:
    if backend.name != "sqlite":
        return []  # a SQLite scenario: PostgreSQL's disk is the server's
    results = []
    for durability in durabilities:
        try:
            results.append(run_one(backend, workdir / durability, size, durability))
        except AssertionError as exc:  # a wait that timed out, or a child that died: a row that says so
            name = "sqlite" if durability == "full" else f"sqlite-{durability}"
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            why = lines[0] if len(lines) < 3 else f"{lines[0]} ... {lines[-2]}"  # a child's last error line
            results.append(
                Result("9 disk full", name, size.jobs, 0, 0, 0, None, failures=[why],
                       details={"error": str(exc)[-3000:]})
            )  # fmt: skip
    return results


def run_one(backend: Backend, workdir: Path, size: Size, durability: str) -> Result:
    workdir.mkdir(parents=True)  # a directory of its own: the ledger files must start empty
    base = backend.fresh_url(workdir, "disk_full")
    url = base if durability == "full" else f"{base}?durability={durability}"
    path = sqlite_path(url)
    assert path is not None
    cap = size.cap_pages
    common = {"cap_pages": cap, "max_lost_leases": 20}
    episodes: list[dict[str, Any]] = []
    with Fleet(workdir, url) as fleet:
        worker = spawn(
            fleet, "worker", "w0", lease=size.lease, heartbeat_interval=size.lease / 3,
            rescue_interval=0.5, concurrency=size.concurrency, **common,
        )  # fmt: skip
        fleet.wait_ready(worker)
        producer = spawn(
            fleet, "producer", "producer", count=size.jobs, batch=size.batch, rate=size.rate,
            data={"pad": "x" * size.payload, "sleep": size.sleep}, max_attempts=20, retry_pause=0.2, **common,
        )  # fmt: skip

        def acknowledged() -> int:
            return len(fleet.ledger.enqueued())

        def refusals_since(moment: float) -> list[str]:
            return [e.error or "" for e in fleet.ledger.events("enqueue_failed") if e.at >= moment]

        for episode in range(size.episodes):
            goal = size.jobs * (episode + 1) // (size.episodes + 1)
            wait_until(lambda: acknowledged() >= goal, f"{goal} jobs enqueued", fleet=fleet)  # noqa: B023 - called before the loop moves on
            if not producer.alive():
                raise AssertionError(f"the producer finished before episode {episode + 1} could refuse it")
            full_at = time.time()
            filled = fill(path, cap)
            wait_until(lambda: refusals_since(full_at), "the producer to be refused", fleet=fleet)  # noqa: B023 - called before the loop moves on
            cpu_before, wall_before = cpu_seconds(worker.pid), time.monotonic()
            time.sleep(size.hold)
            cpu = (cpu_seconds(worker.pid) - cpu_before) / (time.monotonic() - wall_before)
            free_at = time.time()
            free(path)
            episodes.append(
                {"full_at": full_at, "free_at": free_at, "filler_bytes": filled, "worker_cpu": round(cpu, 3),
                 "worker_alive": worker.alive()}
            )  # fmt: skip

            def resumed(since: float = free_at) -> bool:
                return any(r.at >= since for r in fleet.ledger.enqueued()) and any(
                    r.at >= since and r.what == "ok" for r in fleet.ledger.completions()
                )

            # The next episode only once both sides resumed, so each recovery is measured on its own.
            wait_until(resumed, "the producer and the worker to resume after space returned", fleet=fleet)

        wait_until(lambda: producer.popen.poll() is not None, "the producer to finish", fleet=fleet)
        wait_until(
            lambda: status_counts(url).get("completed", 0) >= size.jobs,
            f"{size.jobs} jobs to complete",
            fleet=fleet,
            timeout=600,
            interval=0.25,
        )
        alive_at_end = worker.alive()
        codes = fleet.stop_all()
        counted = tally(fleet)
        dropped = len(fleet.stderr_lines("could not record the result"))
        claim_failures = len(fleet.stderr_lines("claim failed"))
        refusal_rows = fleet.ledger.events("enqueue_failed")
        refusals = [e.error or "" for e in refusal_rows]
        completions_ok = sorted(r.at for r in fleet.ledger.completions() if r.what == "ok")
        enqueues = sorted(r.at for r in fleet.ledger.enqueued())
        unexpected = fleet.unexpected_exits()
    checked = integrity(path)

    recoveries: list[float | None] = []
    for ep in episodes:
        # Both the worker (a completion) and the producer (an acknowledged enqueue) succeed again.
        resumed = [[at for at in stamps if at >= ep["free_at"]][:1] for stamps in (completions_ok, enqueues)]
        ep["refused"] = sum(1 for e in refusal_rows if ep["full_at"] <= e.at <= ep["free_at"])
        recoveries.append(max(r[0] for r in resumed) - ep["free_at"] if all(resumed) else None)
    done = [r for r in recoveries if r is not None]
    messages = sorted({m.split(": ", 1)[-1].replace(path, "<db>") for m in refusals})
    name = "sqlite" if durability == "full" else f"sqlite-{durability}"
    result = Result(
        "9 disk full",
        name,
        size.jobs,
        len(episodes),
        len(counted.lost),
        counted.duplicated,
        max(done) if done else None,
        f"{len(refusals)} enqueues refused; {claim_failures} worker claims failed and"
        f" {dropped} results not recorded while full; "
        f"cap {cap} pages; error: {messages[0] if messages else '-'}",
        details={
            "episodes": episodes,
            "refusals": len(refusals),
            "refusal_messages": messages,
            "claim_failures_logged": claim_failures,
            "results_not_recorded": dropped,
            "integrity_check": checked,
            "exit_codes": codes,
        },
    )
    result.check(
        len(counted.expected) == size.jobs, f"the ledger lists {len(counted.expected)} enqueued jobs"
    )
    result.check(not counted.lost, f"{len(counted.lost)} jobs lost")
    result.check(all(ep["refused"] >= 1 for ep in episodes), "an episode in which no enqueue was refused")
    result.check(
        all(m.startswith("StoreUnavailable: ") for m in refusals),
        f"an enqueue raised something else than StoreUnavailable: {sorted(set(refusals))[:3]}",
    )
    result.check(
        all(ep["worker_alive"] for ep in episodes) and alive_at_end and codes.get(worker.name) == 0,
        f"the worker exited (exit code {codes.get(worker.name)})",
    )
    result.check(
        all(ep["worker_cpu"] < 0.5 for ep in episodes),
        f"the worker used {max(ep['worker_cpu'] for ep in episodes):.0%} of a core while the disk was full",
    )
    result.check(None not in recoveries, "the producer or the worker did not resume after space returned")
    bound = STORE_RETRY_MAX + size.lease + 10.0
    result.check(
        all(r <= bound for r in done),
        f"resumed {max(done, default=0):.2f} s after space returned > {bound:g} s",
    )
    result.check(
        counted.duplicated <= dropped, f"{counted.duplicated} duplicates > {dropped} results not recorded"
    )
    result.check(checked == "ok", f"integrity_check: {checked}")
    result.check(not unexpected, "a child exited with an error")
    return result
