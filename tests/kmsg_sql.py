"""k-msg's job queues as their SQL writes rows, for tests that share a
database between k-msg and jobq: the statements, and a k-msg worker process
built on them.

The statements are those of k-msg (github.com/k-otp/k-msg), reproduced as
facts with Python's drivers:

- SQLite: ``SQLiteJobQueue`` in packages/messaging/src/queue/sqlite-job-queue.ts
  (commit ec2e63ce): ``dequeue`` sets ``status = 'processing'`` and nothing
  else (no lease: ``process_at`` stays the time the job was due);
  ``complete`` sets the status and ``completed_at``; ``fail`` reads the job,
  then writes ``attempts + 1`` and the error, back to ``pending`` (its
  ``process_at`` unchanged) when asked to retry with attempts left, else
  ``failed`` with ``failed_at``.
- PostgreSQL: ``HyperdriveJobQueue`` in
  packages/messaging/src/adapters/cloudflare/hyperdrive-job-queue.ts (commit
  22f8cca4), on the ``kmsg_jobs`` table: the same writes, the dequeue with
  ``FOR UPDATE SKIP LOCKED``.

The worker (:func:`work`) behaves as k-msg's ``JobProcessor``
(packages/messaging/src/queue/job.processor.ts): it takes a job with
``dequeue``, runs it, then calls ``complete``, or ``fail`` with a retry
while ``attempts < maxAttempts``. k-msg's connections have no busy timeout on
SQLite; this worker's have one (30 s), the retry a k-msg app sharing a file
with jobq needs (see docs/sharing-with-kmsg.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

COLUMNS = (
    "id", "type", "data", "status", "priority", "attempts", "max_attempts", "delay",
    "created_at", "process_at", "completed_at", "failed_at", "error", "metadata",
)  # fmt: skip
_COLS = ", ".join(COLUMNS)
_QCOLS = ", ".join(f'"{c}"' for c in COLUMNS)
DUE_ORDER = "priority DESC, process_at ASC, created_at ASC"
BUSY_TIMEOUT = 30.0  # seconds; the SQLITE_BUSY retry of a k-msg app beside jobq


@dataclass(frozen=True)
class Statements:
    """One store's statements; ``{t}`` is the table, ``%s`` / ``?`` the values."""

    enqueue: str
    dequeue: str  # values: now
    complete: str  # values: now, id
    get: str  # values: id
    fail_retry: str  # values: attempts, error, id
    fail: str  # values: attempts, failed_at, error, id


SQLITE = Statements(
    enqueue=f"INSERT INTO {{t}} ({_COLS}) VALUES ({', '.join('?' * len(COLUMNS))})",
    dequeue=(
        "UPDATE {t} SET status = 'processing' WHERE id = (SELECT id FROM {t}"
        f" WHERE status = 'pending' AND process_at <= ? ORDER BY {DUE_ORDER} LIMIT 1) RETURNING {_COLS}"
    ),
    complete="UPDATE {t} SET status = 'completed', completed_at = ? WHERE id = ?",
    get=f"SELECT {_COLS} FROM {{t}} WHERE id = ?",
    fail_retry="UPDATE {t} SET status = 'pending', attempts = ?, error = ? WHERE id = ?",
    fail="UPDATE {t} SET status = 'failed', attempts = ?, failed_at = ?, error = ? WHERE id = ?",
)

POSTGRES = Statements(
    enqueue=f"INSERT INTO {{t}} ({_QCOLS}) VALUES ({', '.join(['%s'] * len(COLUMNS))})",
    dequeue=(
        'WITH next_job AS (SELECT "id" FROM {t} WHERE "status" = \'pending\' AND "process_at" <= %s'
        ' ORDER BY "priority" DESC, "process_at" ASC, "created_at" ASC LIMIT 1 FOR UPDATE SKIP LOCKED)'
        ' UPDATE {t} SET "status" = \'processing\' WHERE "id" = (SELECT "id" FROM next_job)'
        f" RETURNING {_QCOLS}"
    ),
    complete='UPDATE {t} SET "status" = \'completed\', "completed_at" = %s WHERE "id" = %s',
    get=f'SELECT {_QCOLS} FROM {{t}} WHERE "id" = %s LIMIT 1',
    fail_retry='UPDATE {t} SET "status" = \'pending\', "attempts" = %s, "error" = %s WHERE "id" = %s',
    fail='UPDATE {t} SET "status" = \'failed\', "attempts" = %s, "failed_at" = %s, "error" = %s WHERE "id" = %s',
)

_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def now_ms() -> int:
    """``Date.now()``: epoch milliseconds, floored."""
    return time.time_ns() // 1_000_000


class KmsgQueue:
    """k-msg's queue verbs on one connection (autocommit statements)."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        if "url" in cfg:
            import psycopg

            # Unqualified, as k-msg names it: the URL's search_path picks the schema.
            self.sql, self.table = POSTGRES, f'"{cfg.get("table", "kmsg_jobs")}"'
            self.conn: Any = psycopg.connect(cfg["url"], autocommit=True)
        else:
            import sqlite3

            self.sql, self.table = SQLITE, cfg.get("table", "jobs")
            self.conn = sqlite3.connect(cfg["db"], timeout=BUSY_TIMEOUT, isolation_level=None)

    def _run(self, statement: str, values: tuple[Any, ...]) -> Any:
        return self.conn.execute(statement.replace("{t}", self.table), values)

    def enqueue(self, job_type: str, data: Any, *, rng: random.Random, **options: Any) -> dict[str, Any]:
        now = now_ms()
        delay = options.get("delay", 0)
        row = {
            "id": f"job_{now}_{''.join(rng.choice(_BASE36) for _ in range(9))}",
            "type": job_type, "data": json.dumps(data), "status": "pending",
            "priority": options.get("priority", 0), "attempts": 0, "max_attempts": options.get("max_attempts", 3),
            "delay": delay, "created_at": now, "process_at": now + delay, "completed_at": None,
            "failed_at": None, "error": None, "metadata": json.dumps(options.get("metadata", {})),
        }  # fmt: skip
        self._run(self.sql.enqueue, tuple(row.values()))
        return row

    def dequeue(self) -> dict[str, Any] | None:
        row = self._run(self.sql.dequeue, (now_ms(),)).fetchone()
        return None if row is None else dict(zip(COLUMNS, row, strict=True))

    def complete(self, job_id: str) -> None:
        self._run(self.sql.complete, (now_ms(), job_id))

    def fail(self, job_id: str, error: str, should_retry: bool) -> None:
        row = self._run(self.sql.get, (job_id,)).fetchone()
        job = dict(zip(COLUMNS, row, strict=True))
        attempts = job["attempts"] + 1
        if should_retry and attempts < job["max_attempts"]:
            self._run(self.sql.fail_retry, (attempts, error, job_id))
        else:
            self._run(self.sql.fail, (attempts, now_ms(), error, job_id))

    def close(self) -> None:
        self.conn.close()


@contextlib.contextmanager
def kmsg_queue(cfg: dict[str, Any]) -> Iterator[KmsgQueue]:
    queue = KmsgQueue(cfg)
    try:
        yield queue
    finally:
        queue.close()


class Log:
    """One unbuffered ``O_APPEND`` file of JSON lines: a SIGKILL loses nothing written."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.lock = threading.Lock()

    def write(self, value: dict[str, Any]) -> None:
        with self.lock:
            os.write(self.fd, (json.dumps(value) + "\n").encode())


def produce(cfg: dict[str, Any]) -> None:
    """A k-msg producer: ``count`` jobs of type ``t``, one ``enqueue`` each,
    logged to ``enq-<name>.jsonl`` (id and data) once stored."""
    workdir, name = Path(cfg["dir"]), cfg["name"]
    log = Log(workdir / f"enq-{name}.jsonl")
    rng = random.Random(name)
    with kmsg_queue(cfg) as queue:
        for n in range(int(cfg["count"])):
            data = {"producer": name, "n": n, "text": "안녕하세요 ✓"}
            row = queue.enqueue(
                "t", data, rng=rng, priority=rng.randint(0, 5), delay=rng.choice((0, 0, 0, 20, 100)),
                metadata={"source": "k-msg", "n": n},
            )  # fmt: skip
            log.write({"id": row["id"], "data": data})
    (workdir / f"produced-{name}").touch()


def work(cfg: dict[str, Any]) -> None:
    """A k-msg worker of ``concurrency`` threads (k-msg's processor runs that
    many jobs at once), until the file ``stop-<name>`` exists. Each job it
    claims with attempts 0 is, by the count of claims in its thread:

    - every ``abandon_every``-th (up to ``abandon_max`` in all): abandoned,
      left ``processing`` for good (a worker that died, or whose complete
      failed);
    - every ``fail_every``-th: failed, with a retry, as a handler that threw;
    - every ``hold_every``-th: run for ``hold`` seconds, then completed;
    - any other, and any job with attempts > 0: completed at once.

    ``kmsg-<name>.jsonl`` gets one line per claim: the job, its attempts as
    claimed, the outcome, when it was claimed (``at``, after the dequeue
    returned) and when its outcome was written (``end``, taken before the
    statement, so before anyone else can see it; none when abandoned)."""
    workdir, name = Path(cfg["dir"]), cfg["name"]
    log = Log(workdir / f"kmsg-{name}.jsonl")
    stop = workdir / f"stop-{name}"
    abandoned = [0]
    lock = threading.Lock()
    errors: list[BaseException] = []

    def thread(index: int) -> None:
        claims = 0
        try:
            with kmsg_queue(cfg) as queue:
                while not stop.exists():
                    job = queue.dequeue()
                    if job is None:
                        time.sleep(cfg.get("poll_interval", 0.05))
                        continue
                    at = time.time()
                    entry = {"id": job["id"], "attempts": job["attempts"], "worker": f"{name}.{index}", "at": at}
                    fresh = job["attempts"] == 0
                    claims += 1 if fresh else 0
                    if fresh and claims % cfg.get("abandon_every", 10**9) == 0:
                        with lock:
                            give_up = abandoned[0] < cfg.get("abandon_max", 0)
                            abandoned[0] += give_up
                        if give_up:
                            log.write({**entry, "outcome": "abandoned"})
                            continue
                    if fresh and claims % cfg.get("fail_every", 10**9) == 0:
                        end = time.time()
                        queue.fail(job["id"], f"provider refused, by {name}.{index}", should_retry=True)
                        log.write({**entry, "outcome": "failed", "end": end})
                        continue
                    held = fresh and claims % cfg.get("hold_every", 10**9) == 0
                    if held:
                        time.sleep(cfg.get("hold", 1.0))
                    end = time.time()
                    queue.complete(job["id"])
                    log.write({**entry, "outcome": "held" if held else "completed", "end": end})
        except BaseException as exc:  # noqa: BLE001 - reported by the process
            errors.append(exc)

    threads = [threading.Thread(target=thread, args=(i,)) for i in range(cfg.get("concurrency", 4))]
    for t in threads:
        t.start()
    (workdir / f"ready-{name}").touch()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def read_jsonl(workdir: Path, prefix: str) -> list[dict[str, Any]]:
    """Every line of ``<prefix>-*.jsonl`` (a torn last line, left by a killed
    process, is ignored)."""
    found: list[dict[str, Any]] = []
    for path in sorted(workdir.glob(f"{prefix}-*.jsonl")):
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                found.append(json.loads(line))
    return found


def outcomes(workdir: Path) -> dict[str, int]:
    """How many of k-msg's claims ended in each outcome so far."""
    counted: dict[str, int] = {}
    for entry in read_jsonl(workdir, "kmsg"):
        counted[entry["outcome"]] = counted.get(entry["outcome"], 0) + 1
    return counted


def audit(workdir: Path, final: dict[str, dict[str, Any]], *, foreign_timeout: float, slack: float = 2.0) -> str:
    """Checks a run of k-msg workers (``kmsg-*.jsonl``) beside jobq workers
    (``runs-*.jsonl`` or ``exec-*.jsonl``: one line per handler run, with the
    job's ``attempts``, ``lost_count`` and the time ``at``) on the jobs a
    k-msg producer logged (``enq-*.jsonl``), against the rows as stored at
    the end (``final``, by id). Every job ran to completion exactly once, and
    jobq ran none while k-msg held it: after a claim k-msg finished, only
    once its outcome was written; after one it abandoned, only
    ``foreign_timeout`` seconds later (less ``slack``, the time between
    k-msg's claim and its log line). Attempts and errors are as k-msg left
    them, with one lost attempt (and the abandon error) per abandoned claim.
    Returns a one-line summary."""
    from jobq.transitions import ABANDONED_ERROR

    enqueued = {e["id"] for e in read_jsonl(workdir, "enq")}
    claims: dict[str, list[dict[str, Any]]] = {job_id: [] for job_id in enqueued}
    runs: dict[str, list[dict[str, Any]]] = {job_id: [] for job_id in enqueued}
    for entry in read_jsonl(workdir, "kmsg"):
        claims[entry["id"]].append(entry)
    for prefix in ("runs", "exec"):
        for entry in read_jsonl(workdir, prefix):
            runs[entry["id"]].append(entry)
    assert set(final) == set(enqueued), "the table holds other jobs than those enqueued"

    duplicates, never, early, overlapping = [], [], [], []
    for job_id in enqueued:
        mine, theirs = claims[job_id], runs[job_id]
        succeeded = sum(c["outcome"] in ("completed", "held") for c in mine) + len(theirs)
        if succeeded > 1:
            duplicates.append(job_id)
        elif succeeded == 0:
            never.append(job_id)
        failed = [c for c in mine if c["outcome"] == "failed"]
        abandoned = [c for c in mine if c["outcome"] == "abandoned"]
        row = final[job_id]
        assert row["status"] == "completed" and row["completed_at"] is not None, row
        assert row["lease_token"] is None, row
        assert row["attempts"] == len(failed) + len(abandoned), (row, mine, theirs)
        assert row["lost_count"] == len(abandoned), (row, mine, theirs)
        if abandoned:
            assert row["error"] == ABANDONED_ERROR.format(timeout=foreign_timeout), row
        elif failed:
            assert row["error"] == f"provider refused, by {failed[-1]['worker']}", row
        else:
            assert row["error"] is None, row
        for run in theirs:
            assert run["attempts"] == row["attempts"] and run["lost_count"] == row["lost_count"], (run, row)
            for claim in mine:
                if claim["outcome"] == "abandoned":
                    if run["at"] < claim["at"] + foreign_timeout - slack:
                        early.append((job_id, run["at"] - claim["at"]))
                elif run["at"] <= claim["end"]:
                    overlapping.append((job_id, claim, run))
    assert not duplicates, f"{len(duplicates)} jobs ran twice: {duplicates[:10]}"
    assert not never, f"{len(never)} jobs never ran: {never[:10]}"
    assert not early, f"{len(early)} abandoned jobs taken back early: {early[:10]}"
    assert not overlapping, f"{len(overlapping)} jobs run by jobq while k-msg held them: {overlapping[:3]}"
    seen = outcomes(workdir)
    by_jobq = sum(len(r) for r in runs.values())
    assert by_jobq > 0, "jobq ran nothing"
    return f"{len(enqueued)} jobs: k-msg claims {seen}, jobq runs {by_jobq}; no duplicates, none early"
