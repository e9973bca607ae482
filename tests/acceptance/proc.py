"""Child-process entry points and parent-side helpers for the acceptance tests.

Children are started with ``sys.executable -c BOOT <command> <json config>``
(see :meth:`Children.spawn`). Every child:

- logs jobq's warnings to its stderr file, and prints the traceback of any
  exception that reaches it there too, exiting non-zero;
- records what it did in files under the test's work directory, written with
  unbuffered ``O_APPEND`` writes so a SIGKILL loses nothing already written:
  ``exec-<name>.jsonl`` (one line per handler that finished its job),
  ``start-<name>.jsonl`` (one line per handler start), ``events-<name>.jsonl``
  (processor events), plus marker files (``ready-<name>``,
  ``started-<job id>``, ...).

The parent polls the database and these files with generous deadlines; no
test depends on how fast the machine is.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import random
import sqlite3
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BOOT = f"import sys; sys.path.insert(0, {str(HERE)!r}); import proc; proc.main()"
if str(HERE.parent) not in sys.path:  # tests/, for kmsg_sql in a child process
    sys.path.insert(0, str(HERE.parent))

import kmsg_sql  # noqa: E402

DEADLINE = 120.0  # seconds; generous, a pass never comes near it


# ---------------------------------------------------------------------------
# parent side
# ---------------------------------------------------------------------------


class ChildFailed(AssertionError):
    pass


class Child:
    def __init__(self, name: str, popen: subprocess.Popen[bytes], out: Path, err: Path) -> None:
        self.name = name
        self.popen = popen
        self.out = out
        self.err = err

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stderr(self) -> str:
        return self.err.read_text(errors="replace") if self.err.exists() else ""

    def stdout(self) -> str:
        return self.out.read_text(errors="replace") if self.out.exists() else ""

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def wait(self, timeout: float = DEADLINE) -> int:
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise ChildFailed(
                f"child {self.name} did not exit within {timeout:g} s; stderr:\n{self.stderr()}"
            ) from None

    def describe(self) -> str:
        return f"child {self.name} (pid {self.pid}, exit {self.popen.poll()}); stderr:\n{self.stderr()}"


class Children:
    """Starts child processes and, in :meth:`close`, kills whatever is left."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.all: list[Child] = []

    def spawn(self, command: str, config: dict[str, Any], name: str | None = None) -> Child:
        name = name or config.get("name") or f"{command}-{len(self.all)}"
        config = {"dir": str(self.workdir), "name": name, **config}
        out, err = self.workdir / f"{name}.out", self.workdir / f"{name}.err"
        with open(out, "wb") as out_file, open(err, "wb") as err_file:
            popen = subprocess.Popen(
                [sys.executable, "-c", BOOT, command, json.dumps(config)],
                stdout=out_file,
                stderr=err_file,
                stdin=subprocess.DEVNULL,
            )
        child = Child(name, popen, out, err)
        self.all.append(child)
        return child

    def check_alive(self, children: Iterable[Child] | None = None) -> None:
        for child in self.all if children is None else children:
            if not child.alive():
                raise ChildFailed(f"{child.describe()}\nexited early")

    def close(self) -> None:
        for child in self.all:
            if child.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    child.popen.kill()
        for child in self.all:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.popen.wait(30)


def wait_until(
    predicate: Callable[[], Any],
    what: str,
    *,
    timeout: float = DEADLINE,
    children: Children | None = None,
    alive: Iterable[Child] | None = None,
    interval: float = 0.05,
) -> Any:
    """Polls ``predicate`` until it returns something truthy. Fails early if a
    child in ``alive`` (or any child of ``children``) has exited."""
    deadline = time.monotonic() + timeout
    watched = list(alive) if alive is not None else None
    while True:
        value = predicate()
        if value:
            return value
        if children is not None:
            children.check_alive(watched)
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def connect_db(db: Path | str) -> sqlite3.Connection:
    conn = sqlite3.connect(str(db), timeout=30, isolation_level=None)
    conn.row_factory = sqlite3.Row
    return conn


def rows(db: Path | str, where: str = "1", args: tuple[Any, ...] = ()) -> dict[str, dict[str, Any]]:
    """Every job row as a dict, by id (read straight from the file)."""
    with contextlib.closing(connect_db(db)) as conn:
        return {r["id"]: dict(r) for r in conn.execute(f"SELECT * FROM jobs WHERE {where}", args)}


def status_counts(db: Path | str) -> dict[str, int]:
    with contextlib.closing(connect_db(db)) as conn:
        return dict(conn.execute("SELECT status, count(*) FROM jobs GROUP BY status").fetchall())


def all_completed(db: Path | str, expected: int) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return status_counts(db).get("completed", 0) >= expected
        except sqlite3.OperationalError:  # the table may not exist yet
            return False

    return check


def read_jsonl(workdir: Path, prefix: str) -> list[dict[str, Any]]:
    """All lines of ``<prefix>-*.jsonl`` in ``workdir`` (a torn last line, left
    by a killed process, is ignored)."""
    found: list[dict[str, Any]] = []
    for path in sorted(workdir.glob(f"{prefix}-*.jsonl")):
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                found.append(json.loads(line))
    return found


def executed(workdir: Path) -> collections.Counter[str]:
    """How many times a handler finished each job id, over every process."""
    return collections.Counter(entry["id"] for entry in read_jsonl(workdir, "exec"))


def read_lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def touch(path: Path | str) -> None:
    Path(path).touch()


def write_json_atomic(path: Path | str, value: Any) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(value, f)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------
# child side
# ---------------------------------------------------------------------------


class Appender:
    """One unbuffered O_APPEND file: each line reaches the file at once."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(self, value: Any) -> None:
        line = value if isinstance(value, str) else json.dumps(value)
        os.write(self.fd, (line + "\n").encode())


def _die(code: int = 3) -> None:
    traceback.print_exc()
    sys.stderr.flush()
    os._exit(code)


def _make_handler(behaviour: str, cfg: dict[str, Any], exec_log: Appender, start_log: Appender) -> Any:
    workdir = Path(cfg["dir"])
    name = cfg["name"]

    def entry(job: Any) -> dict[str, Any]:
        return {
            "id": job.id,
            "type": job.type,
            "worker": name,
            "pid": os.getpid(),
            "attempts": job.attempts,
            "lost_count": job.lost_count,
            "data": job.data,
            "metadata": job.metadata,
            "at": time.time(),
        }

    async def record(job: Any) -> dict[str, Any]:
        exec_log.write(entry(job))
        return {"by": name}

    async def block(job: Any) -> None:
        start_log.write(entry(job))
        touch(workdir / f"started-{job.id}")
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            start_log.write({**entry(job), "cancelled": True})
            raise

    async def wait_go(job: Any) -> dict[str, Any]:
        start_log.write(entry(job))
        touch(workdir / f"started-{job.id}")
        go = workdir / "go"
        while not go.exists():
            await asyncio.sleep(0.01)
        return await record(job)

    return {"record": record, "block": block, "wait_go": wait_go}[behaviour]


async def _produce(cfg: dict[str, Any]) -> None:
    """Enqueues ``produce`` jobs of type ``t`` through its own queue object,
    alternating single enqueues and enqueue_many batches; logs each id once
    its call returned."""
    import jobq

    workdir, name, count = Path(cfg["dir"]), cfg["name"], int(cfg["produce"])
    log = Appender(workdir / f"enq-{name}.jsonl")
    rng = random.Random(name)
    queue = jobq.SQLiteQueue(cfg["db"], worker_id=f"{name}-producer")
    try:
        n = 0
        while n < count:
            if rng.random() < 0.5:
                job = await queue.enqueue("t", {"producer": name, "n": n}, priority=rng.randint(0, 3))
                log.write({"id": job.id})
                n += 1
            else:
                size = min(count - n, rng.randint(2, 40))
                jobs = await queue.enqueue_many(
                    [jobq.NewJob("t", {"producer": name, "n": n + i}) for i in range(size)]
                )
                for job in jobs:
                    log.write({"id": job.id})
                n += size
            await asyncio.sleep(0)
    finally:
        await queue.close()
    touch(workdir / f"produced-{name}")


async def worker(cfg: dict[str, Any]) -> None:
    """A JobProcessor in ``processor.run()`` until SIGTERM/SIGINT; with
    ``produce``, it also enqueues that many jobs while it runs."""
    import jobq

    workdir, name = Path(cfg["dir"]), cfg["name"]
    exec_log = Appender(workdir / f"exec-{name}.jsonl")
    start_log = Appender(workdir / f"start-{name}.jsonl")
    events = Appender(workdir / f"events-{name}.jsonl")
    queue = jobq.SQLiteQueue(cfg["db"], lease=cfg.get("lease", 30.0), worker_id=name, **_queue_options(cfg))
    processor = jobq.JobProcessor(
        queue,
        concurrency=cfg.get("concurrency", 4),
        poll_interval=cfg.get("poll_interval", 0.5),
        heartbeat_interval=cfg.get("heartbeat_interval", 10.0),
        rescue_interval=cfg.get("rescue_interval", 1.0),
        shutdown_timeout=cfg.get("shutdown_timeout", 30.0),
        retry_delays=[0.05],
        worker_id=name,
    )
    for job_type, behaviour in cfg["handlers"].items():
        processor.handle(job_type, _make_handler(behaviour, cfg, exec_log, start_log))
    for expression, job_type in cfg.get("cron", []):
        processor.cron(expression, job_type, {"cron": expression})

    def log_event(event: Any) -> None:
        job = event.job
        events.write(
            {
                "event": event.name,
                "id": job.id if job else None,
                "status": str(job.status) if job else None,
                "attempts": job.attempts if job else None,
                "lost_count": job.lost_count if job else None,
                "error": event.error,
            }
        )
        if event.name in ("job_retry", "job_failed"):
            print(f"jobq event {event.name} for {job.id if job else None}: {event.error}", file=sys.stderr)

    for event_name in ("job_retry", "job_failed", "job_lost", "processor_stopped", *cfg.get("events", ())):
        processor.on(event_name, log_event)
    processor.on("processor_started", lambda _: touch(workdir / f"ready-{name}"))

    producer = None
    if cfg.get("produce"):

        async def produce() -> None:
            try:
                await _produce(cfg)
            except BaseException:  # noqa: BLE001 - reported on stderr, then the process exits
                _die(4)

        producer = asyncio.create_task(produce())
    try:
        await processor.run()
    finally:
        if producer is not None and not producer.done():
            producer.cancel()
        await queue.close()
    touch(workdir / f"stopped-{name}")


def _queue_options(cfg: dict[str, Any]) -> dict[str, Any]:
    return {k: cfg[k] for k in ("foreign_claim_timeout",) if k in cfg}


async def dequeue_loop(cfg: dict[str, Any]) -> None:
    """The plain queue verbs, no processor: ``dequeue()`` (which rescues
    first), record, ``complete(job)``, until the file ``stop-<name>``
    exists; records each job in ``exec-<name>.jsonl`` as a worker does."""
    import jobq

    workdir, name = Path(cfg["dir"]), cfg["name"]
    exec_log = Appender(workdir / f"exec-{name}.jsonl")
    queue = jobq.SQLiteQueue(cfg["db"], worker_id=name, **_queue_options(cfg))
    touch(workdir / f"ready-{name}")
    try:
        while not (workdir / f"stop-{name}").exists():
            job = await queue.dequeue()
            if job is None:
                await asyncio.sleep(0.02)
                continue
            exec_log.write(
                {"id": job.id, "worker": name, "attempts": job.attempts, "lost_count": job.lost_count,
                 "data": job.data, "metadata": job.metadata, "at": time.time()}
            )  # fmt: skip
            await queue.complete(job, {"by": name})
    finally:
        await queue.close()


async def claim_hold(cfg: dict[str, Any]) -> None:
    """Rescues expired leases, claims one job with a 30 s lease, reports the
    claim in ``claim-<name>.json``, waits for the ``go`` file, then completes
    the job with its own (fenced) claim."""
    import jobq

    workdir, name = Path(cfg["dir"]), cfg["name"]
    queue = jobq.SQLiteQueue(cfg["db"], lease=30.0, worker_id=name)
    try:
        rescued = await queue.rescue_expired()
        job = await queue.dequeue()
        write_json_atomic(
            workdir / f"claim-{name}.json",
            {
                "rescued": [j.id for j in rescued],
                "id": job.id if job else None,
                "lease_owner": job.lease_owner if job else None,
                "attempts": job.attempts if job else None,
                "lost_count": job.lost_count if job else None,
            },
        )
        if job is None:
            return
        while not (workdir / "go").exists():
            await asyncio.sleep(0.01)
        await queue.complete(job, {"by": name})
    finally:
        await queue.close()


# -- k-msg's SQLite queue, reproduced ---------------------------------------
#
# k-msg's SQLite job queue (packages/messaging/src/queue/sqlite-job-queue.ts),
# reproduced as facts with Python's sqlite3: its table and index here, its
# enqueue, dequeue, complete and fail statements in tests/kmsg_sql.py (which
# says which commit). Times are epoch milliseconds, data and metadata JSON
# text. Its dequeue takes no lease: it sets the status and nothing else.

KMSG_CREATE_TABLE = (
    "CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, type TEXT NOT NULL, data TEXT NOT NULL,"
    " status TEXT NOT NULL DEFAULT 'pending', priority INTEGER NOT NULL DEFAULT 0,"
    " attempts INTEGER NOT NULL DEFAULT 0, max_attempts INTEGER NOT NULL DEFAULT 3,"
    " delay INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL, process_at INTEGER NOT NULL,"
    " completed_at INTEGER, failed_at INTEGER, error TEXT, metadata TEXT)"
)
KMSG_CREATE_INDEX = "CREATE INDEX IF NOT EXISTS idx_jobs_dequeue ON jobs(status, priority DESC, process_at ASC, created_at ASC)"
KMSG_ENQUEUE = kmsg_sql.SQLITE.enqueue.format(t="jobs")
KMSG_DEQUEUE = kmsg_sql.SQLITE.dequeue.format(t="jobs")
KMSG_COMPLETE = kmsg_sql.SQLITE.complete.format(t="jobs")
KMSG_SIZE = "SELECT COUNT(*) as count FROM jobs WHERE status='pending' AND process_at <= ?"

_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


def now_ms() -> int:
    return kmsg_sql.now_ms()


def kmsg_id(ms: int, rng: random.Random) -> str:
    return f"job_{ms}_{''.join(rng.choice(_BASE36) for _ in range(9))}"


def kmsg_connect(db: Path | str) -> sqlite3.Connection:
    """A connection as k-msg's queue uses one: autocommit statements (with a
    busy timeout, the retry a k-msg app beside jobq needs)."""
    return sqlite3.connect(str(db), timeout=30, isolation_level=None)


def kmsg_init(conn: sqlite3.Connection) -> None:
    conn.execute(KMSG_CREATE_TABLE)
    conn.execute(KMSG_CREATE_INDEX)


def kmsg_enqueue(
    conn: sqlite3.Connection,
    job_type: str,
    data: Any,
    *,
    now: int,
    rng: random.Random,
    priority: int = 0,
    delay_ms: int = 0,
    max_attempts: int = 3,
    metadata: Any = None,
) -> dict[str, Any]:
    row = {
        "id": kmsg_id(now, rng),
        "type": job_type,
        "data": json.dumps(data),
        "status": "pending",
        "priority": priority,
        "attempts": 0,
        "max_attempts": max_attempts,
        "delay": delay_ms,
        "created_at": now,
        "process_at": now + delay_ms,
        "completed_at": None,
        "failed_at": None,
        "error": None,
        "metadata": None if metadata is None else json.dumps(metadata),
    }
    conn.execute(KMSG_ENQUEUE, tuple(row.values()))
    return row


def kmsg_dequeue(conn: sqlite3.Connection, now: int) -> dict[str, Any] | None:
    cursor = conn.execute(KMSG_DEQUEUE, (now,))
    row = cursor.fetchone()
    names = [d[0] for d in cursor.description] if cursor.description else []
    cursor.close()
    return None if row is None else dict(zip(names, row, strict=True))


def kmsg_complete(conn: sqlite3.Connection, job_id: str, now: int) -> int:
    return conn.execute(KMSG_COMPLETE, (now, job_id)).rowcount


def kmsg_fail(conn: sqlite3.Connection, job_id: str, error: str, *, should_retry: bool, now: int) -> None:
    """k-msg's fail: reads the job, then writes attempts + 1 and the error;
    back to pending (process_at unchanged) while retrying with attempts
    left, failed otherwise."""
    sql = kmsg_sql.SQLITE
    row = conn.execute(sql.get.format(t="jobs"), (job_id,)).fetchone()
    attempts, max_attempts = row[kmsg_sql.COLUMNS.index("attempts")] + 1, row[kmsg_sql.COLUMNS.index("max_attempts")]
    if should_retry and attempts < max_attempts:
        conn.execute(sql.fail_retry.format(t="jobs"), (attempts, error, job_id))
    else:
        conn.execute(sql.fail.format(t="jobs"), (attempts, now, error, job_id))


def kmsg_size(conn: sqlite3.Connection, now: int) -> int:
    return int(conn.execute(KMSG_SIZE, (now,)).fetchone()[0])


def kmsg_produce(cfg: dict[str, Any]) -> None:
    """A k-msg producer: creates k-msg's table if needed, then enqueues
    ``count`` jobs one statement at a time, logging each (id and data)."""
    workdir, name, count = Path(cfg["dir"]), cfg["name"], int(cfg["count"])
    log = Appender(workdir / f"enq-{name}.jsonl")
    rng = random.Random(name)
    with contextlib.closing(kmsg_connect(cfg["db"])) as conn:
        kmsg_init(conn)
        touch(workdir / f"ready-{name}")
        for n in range(count):
            data = {"producer": name, "n": n, "text": "안녕하세요 ✓"}
            row = kmsg_enqueue(
                conn,
                "t",
                data,
                now=now_ms(),
                rng=rng,
                priority=rng.randint(0, 5),
                delay_ms=rng.choice((0, 0, 0, 20, 100)),
                metadata={"source": "k-msg", "n": n},
            )
            log.write({"id": row["id"], "data": data})
    touch(workdir / f"produced-{name}")


# ---------------------------------------------------------------------------

COMMANDS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "worker": worker,
    "claim_hold": claim_hold,
    "kmsg_produce": kmsg_produce,
    "kmsg_work": kmsg_sql.work,
    "dequeue_loop": dequeue_loop,
}


def main() -> None:
    command, cfg = sys.argv[1], json.loads(sys.argv[2])
    logging.basicConfig(
        stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        outcome = COMMANDS[command](cfg)
        if asyncio.iscoroutine(outcome):
            asyncio.run(outcome)
    except BaseException:  # noqa: BLE001 - every exception is reported to the parent
        _die(1)
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(0)
