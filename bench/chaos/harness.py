"""The harness of the chaos scenarios: real processes, real faults, counted.

A scenario module uses four pieces, in this order:

1. A :class:`Backend` gives a fresh, empty store for each run:
   ``backend.fresh_url(workdir, "tag")`` is a ``sqlite:///`` file in the work
   directory, or a ``postgresql://`` URL whose ``search_path`` starts with a
   schema of its own (dropped by ``backend.close()``).
2. A :class:`Fleet` starts child processes (:mod:`bench.chaos.child`) against
   that URL: ``fleet.worker(name, concurrency=..., lease=..., kill_at=...)``
   runs jobq's real ``JobProcessor``; ``fleet.producer(name, count=...,
   data=...)`` enqueues. ``fleet.kill``, ``fleet.stop``/``cont`` and
   ``fleet.terminate`` deliver SIGKILL, SIGSTOP/SIGCONT and SIGTERM;
   ``fleet.restart`` starts a worker again under a new name (one name per
   process incarnation, so the store's ``lease_owner`` says which incarnation
   held a job). ``fleet.close()`` kills whatever is left.
3. The :class:`~bench.chaos.ledger.Ledger` in the work directory is what the
   handlers really did (one row per execution, claim, enqueue, completion
   outcome and event), written by each child to its own SQLite file so that a
   SIGKILL loses nothing already committed. :func:`enqueue` adds jobs from
   the parent and records them there too. :func:`store_jobs` reads the
   queue's own view (every job, by id) through jobq.
4. :func:`tally` turns the ledger and the store into counts (lost,
   duplicated), and a scenario returns :class:`Result` rows, which
   :func:`format_table` prints.

Child payloads and kill points are described in :mod:`bench.chaos.child`.
Nothing here asserts speed; waits use generous deadlines and fail with a
message naming what did not happen (and any child that died early).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import jobq

from .child import JOB_TYPE
from .ledger import Execution, Ledger

ROOT = Path(__file__).resolve().parents[2]  # the repository: bench/ is importable from here
DEADLINE = float(
    os.environ.get("JOBQ_CHAOS_DEADLINE", "180")
)  # seconds; generous, a pass never comes near it


# -- results -----------------------------------------------------------------


@dataclass
class Result:
    """One row of the table: a scenario's counts on one backend. ``ok`` says
    whether every promise the scenario checks held; ``failures`` says which
    did not; ``details`` keeps the raw figures for the JSON file."""

    scenario: str
    backend: str
    jobs: int
    faults: int
    lost: int
    duplicated: int
    max_recovery: float | None
    notes: str = ""
    failures: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failures

    def check(self, holds: bool, promise: str) -> None:
        """Records ``promise`` as broken unless ``holds``."""
        if not holds:
            self.failures.append(promise)

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


COLUMNS = (
    "scenario",
    "backend",
    "jobs",
    "faults injected",
    "lost",
    "duplicated",
    "max recovery",
    "ok",
    "notes",
)


def format_table(results: Sequence[Result]) -> str:
    rows = [
        (
            r.scenario,
            r.backend,
            f"{r.jobs:,}",
            f"{r.faults:,}",
            str(r.lost),
            str(r.duplicated),
            "-" if r.max_recovery is None else f"{r.max_recovery:.2f} s",
            "yes" if r.ok else "NO: " + "; ".join(r.failures),
            r.notes,
        )
        for r in results
    ]
    widths = [max(len(c), *(len(row[i]) for row in rows)) for i, c in enumerate(COLUMNS)]
    numeric = {2, 3, 4, 5, 6}

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return "\n".join([line(COLUMNS), line(["-" * w for w in widths]), *(line(r).rstrip() for r in rows)])


# -- backends ----------------------------------------------------------------


class Backend:
    """Where a run's jobs live. ``name`` is ``sqlite`` or ``postgres``."""

    def __init__(self, name: str, server_url: str | None = None) -> None:
        if name == "postgres" and not server_url:
            raise ValueError("the postgres backend needs a server URL")
        self.name = name
        self.server_url = server_url
        self._schemas: list[str] = []

    def fresh_url(self, workdir: Path, tag: str) -> str:
        """The URL of an empty store for one run."""
        if self.name == "sqlite":
            path = workdir / f"{tag}.db"
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            return f"sqlite:///{path}"
        from psycopg import sql

        schema = f"jobq_chaos_{tag}_{secrets.token_hex(4)}".lower().replace("-", "_")
        with self._admin() as conn:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        self._schemas.append(schema)
        parts = urlsplit(self.server_url)
        option = "options=" + quote(f"-csearch_path={schema}", safe="")
        return urlunsplit(parts._replace(query=f"{parts.query}&{option}" if parts.query else option))

    def _admin(self) -> Any:
        """An autocommit connection to the server. A server that is
        restarting (the outage scenarios restart it) is waited for, up to a
        minute, rather than failing the run that happens to start then."""
        import psycopg

        assert self.server_url is not None
        deadline = time.monotonic() + 60
        while True:
            try:
                return psycopg.connect(self.server_url, autocommit=True)
            except psycopg.OperationalError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.5)

    def close(self) -> None:
        """Drops the PostgreSQL schemas this backend created."""
        if not self._schemas:
            return
        from psycopg import sql

        with self._admin() as conn:
            while self._schemas:
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self._schemas.pop()))
                )

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def backends_from_env(names: Iterable[str] = ("sqlite", "postgres")) -> list[Backend]:
    """SQLite, and PostgreSQL when JOBQ_BENCH_POSTGRES_URL (or else
    JOBQ_TEST_POSTGRES_URL) names a server."""
    server = os.environ.get("JOBQ_BENCH_POSTGRES_URL") or os.environ.get("JOBQ_TEST_POSTGRES_URL")
    found = []
    for name in names:
        if name == "sqlite":
            found.append(Backend("sqlite"))
        elif name == "postgres" and server:
            found.append(Backend("postgres", server))
    return found


# -- child processes ---------------------------------------------------------


class ChildFailed(AssertionError):
    pass


class Child:
    """One child process. ``name`` is its ledger name and, for a worker, its
    ``worker_id`` (the store's ``lease_owner`` of the jobs it holds)."""

    def __init__(
        self, name: str, role: str, config: dict[str, Any], popen: subprocess.Popen[bytes], err: Path
    ):
        self.name, self.role, self.config, self.popen, self.err = name, role, config, popen, err
        self.killed = False  # by the harness, on purpose

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stderr(self) -> str:
        return self.err.read_text(errors="replace") if self.err.exists() else ""

    def describe(self) -> str:
        return f"{self.role} {self.name} (pid {self.pid}, exit {self.popen.poll()}); stderr:\n{self.stderr()[-3000:]}"


class Fleet:
    """The child processes of one run, all against one queue URL."""

    def __init__(self, workdir: Path, url: str) -> None:
        self.workdir = workdir
        self.url = url
        self.ledger = Ledger(workdir)
        self.children: list[Child] = []
        self._incarnations: collections.Counter[str] = collections.Counter()

    def _spawn(self, role: str, name: str, config: dict[str, Any]) -> Child:
        config = {"role": role, "name": name, "dir": str(self.workdir), "url": self.url, **config}
        err = self.workdir / f"{name}.err"
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        with open(err, "wb") as err_file:
            popen = subprocess.Popen(
                [sys.executable, "-m", "bench.chaos.child", json.dumps(config)],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err_file,
            )
        child = Child(name, role, config, popen, err)
        self.children.append(child)
        return child

    def worker(self, name: str, **config: Any) -> Child:
        """A worker process. Options: ``concurrency``, ``lease``,
        ``heartbeat_interval``, ``rescue_interval``, ``poll_interval``,
        ``shutdown_timeout``, ``max_lost_leases``, ``retry_delays``, ``kill_at``,
        ``queues`` (the named queues it takes jobs from; default all)."""
        return self._spawn("worker", name, config)

    def producer(self, name: str, **config: Any) -> Child:
        """A producer process. Options: ``count``, ``data``, ``rate``, ``max_attempts``."""
        return self._spawn("producer", name, config)

    def restart(self, child: Child) -> Child:
        """The same worker again, as a new process with a new name."""
        base = child.name.split(".", 1)[0]
        self._incarnations[base] += 1
        config = {k: v for k, v in child.config.items() if k not in ("role", "name", "dir", "url")}
        return self.worker(f"{base}.{self._incarnations[base]}", **config)

    def workers(self) -> list[Child]:
        return [c for c in self.children if c.role == "worker" and c.alive()]

    def kill(self, child: Child) -> float:
        """SIGKILLs ``child`` and reaps it; returns the time of the kill."""
        child.killed = True
        at = time.time()
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signal.SIGKILL)
        child.popen.wait(DEADLINE)
        return at

    def stop(self, child: Child) -> None:
        os.kill(child.pid, signal.SIGSTOP)

    def cont(self, child: Child) -> None:
        os.kill(child.pid, signal.SIGCONT)

    def terminate(self, child: Child) -> float:
        at = time.time()
        os.kill(child.pid, signal.SIGTERM)
        return at

    def wait_ready(self, *children: Child, timeout: float = DEADLINE) -> None:
        """Waits until each worker's processor has started."""
        names = {c.name for c in children}
        wait_until(
            lambda: names <= {e.worker for e in self.ledger.events("processor_started")},
            f"workers {sorted(names)} to start",
            fleet=self,
            alive=children,
            timeout=timeout,
        )

    def check_alive(self, children: Iterable[Child] | None = None) -> None:
        for child in self.children if children is None else children:
            if not child.alive() and not child.killed and child.popen.returncode != 0:
                raise ChildFailed(f"{child.describe()}\nexited early")

    def stop_all(self, timeout: float = DEADLINE) -> dict[str, int]:
        """SIGTERMs every live child, waits for each, returns exit codes by name."""
        for child in self.children:
            if child.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.pid, signal.SIGCONT)
                    os.kill(child.pid, signal.SIGTERM)
        codes = {}
        for child in self.children:
            try:
                codes[child.name] = child.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                raise ChildFailed(
                    f"{child.describe()}\ndid not stop within {timeout:g} s of SIGTERM"
                ) from None
        return codes

    def unexpected_exits(self) -> list[str]:
        """Children that exited non-zero without being killed by the harness."""
        return [c.describe() for c in self.children if not c.killed and c.popen.poll() not in (None, 0)]

    def stderr_lines(self, needle: str) -> list[str]:
        """Lines of every child's stderr that contain ``needle`` (case-insensitive)."""
        needle = needle.lower()
        return [line for c in self.children for line in c.stderr().splitlines() if needle in line.lower()]

    def close(self) -> None:
        for child in self.children:
            if child.alive():
                with contextlib.suppress(ProcessLookupError):
                    child.popen.kill()
        for child in self.children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.popen.wait(30)

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wait_until(
    predicate: Callable[[], Any],
    what: str,
    *,
    timeout: float = DEADLINE,
    fleet: Fleet | None = None,
    alive: Iterable[Child] | None = None,
    interval: float = 0.05,
    explain: Callable[[], str] | None = None,
) -> Any:
    """Polls ``predicate`` until it returns something truthy; fails after
    ``timeout`` seconds, or early if a child of ``fleet`` (only those in
    ``alive``, when given) exited on its own with an error. ``explain``
    adds the state of things to the timeout's message."""
    deadline = time.monotonic() + timeout
    watched = list(alive) if alive is not None else None
    while True:
        value = predicate()
        if value:
            return value
        if fleet is not None:
            fleet.check_alive(watched)
        if time.monotonic() >= deadline:
            detail = f": {explain()}" if explain is not None else ""
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}{detail}")
        time.sleep(interval)


# -- the parent's view of the store ----------------------------------------


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def enqueue(
    url: str,
    ledger: Ledger,
    payloads: Sequence[dict[str, Any]],
    *,
    queues: Sequence[str] | None = None,
    **options: Any,
) -> list[str]:
    """Enqueues one ``chaos`` job per payload from the parent, in one batch,
    and records the ids in the ledger (as producer ``parent``). ``queues``
    names each job's queue (default ``"default"``); ``options`` are other
    :class:`jobq.NewJob` fields (``max_attempts``, ``priority``)."""
    names = list(queues) if queues is not None else ["default"] * len(payloads)

    async def go() -> list[str]:
        async with jobq.connect(url) as queue:
            specs = [
                jobq.NewJob(JOB_TYPE, p, queue=q, **options) for p, q in zip(payloads, names, strict=True)
            ]
            jobs = await queue.enqueue_many(specs)
        return [job.id for job in jobs]

    ids: list[str] = _run(go())
    writer = ledger.writer("parent")
    try:
        writer.enqueued(ids)
    finally:
        writer.close()
    return ids


def store_jobs(url: str) -> dict[str, jobq.Job[Any]]:
    """Every job in the store, by id, as jobq reports it."""

    async def go() -> dict[str, jobq.Job[Any]]:
        found: dict[str, jobq.Job[Any]] = {}
        async with jobq.connect(url) as queue:
            while True:
                page = await queue.list_jobs(limit=1000, offset=len(found), order="oldest")
                found.update((job.id, job) for job in page.jobs)
                if not page.jobs or len(found) >= page.total:
                    return found

    result: dict[str, jobq.Job[Any]] = _run(go())
    return result


def status_counts(url: str) -> dict[str, int]:
    async def go() -> dict[str, int]:
        async with jobq.connect(url) as queue:
            return {str(status.value): n for status, n in (await queue.counts()).items()}

    result: dict[str, int] = _run(go())
    return result


def held_by(url: str, worker: str) -> list[str]:
    """Ids of the jobs the store has in ``processing`` under ``worker``'s claim."""

    async def go() -> list[str]:
        async with jobq.connect(url) as queue:
            page = await queue.list_jobs(status=jobq.JobStatus.PROCESSING, limit=1000)
        return [job.id for job in page.jobs if job.lease_owner == worker]

    result: list[str] = _run(go())
    return result


# -- counting ----------------------------------------------------------------


@dataclass
class Tally:
    """What the ledger and the store say about a set of jobs."""

    expected: set[str]
    runs: dict[str, list[Execution]]  # handler executions per job, in start order
    lost: set[str]  # expected jobs not completed in the store, or with no finished execution
    duplicated: int  # handler executions beyond the first, over every job

    def extra_runs(self, job_id: str) -> int:
        return max(0, len(self.runs.get(job_id, [])) - 1)


def tally(
    fleet: Fleet, expected: Iterable[str] | None = None, store: dict[str, jobq.Job[Any]] | None = None
) -> Tally:
    """Counts loss and duplicates of ``expected`` (default: every id the
    ledger says was enqueued). A job is lost unless the store has it
    ``completed`` and the ledger has an execution of it that finished."""
    wanted = (
        set(expected) if expected is not None else {r.job_id for r in fleet.ledger.enqueued() if r.job_id}
    )
    store = store_jobs(fleet.url) if store is None else store
    runs: dict[str, list[Execution]] = collections.defaultdict(list)
    for execution in fleet.ledger.executions():
        runs[execution.job_id].append(execution)
    lost = {
        job_id
        for job_id in wanted
        if job_id not in store
        or store[job_id].status is not jobq.JobStatus.COMPLETED
        or not any(e.ended is not None for e in runs.get(job_id, []))
    }
    duplicated = sum(max(0, len(runs.get(job_id, [])) - 1) for job_id in wanted)
    return Tally(wanted, dict(runs), lost, duplicated)


def first_start_after(runs: Sequence[Execution], moment: float, *, not_by: str | None = None) -> float | None:
    """When the first execution that started after ``moment`` (on another
    worker than ``not_by``) started, or None."""
    for execution in runs:
        if execution.started >= moment and execution.worker != not_by:
            return execution.started
    return None
