"""Workloads that run jobq's real worker command,
``jobq worker bench.noop_worker:make_processor --url URL``, as a subprocess:

- :func:`process_processes`: ``--processes N`` draining a prefilled queue;
- :func:`rss`: one worker process's resident memory (psutil) from start to
  1,000,000 jobs, fed in batches while it drains.

Both run inside a child interpreter (``bench.child``) that is the producer
and the observer.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import jobq

from .workloads import JOB_TYPE, _preload

T = TypeVar("T")
ROOT = Path(__file__).resolve().parent.parent
TARGET = "bench.noop_worker:make_processor"
FEED_BATCH = 1_000  # jobs per enqueue_many while feeding the RSS worker
BACKLOG = 20_000  # most jobs waiting for the RSS worker at any time
POLL = 0.05  # seconds between progress checks
STOP_TIMEOUT = 30.0
OUTAGE_TIMEOUT = 300.0  # seconds the RSS producer waits out a database outage (a restarted server)


def _worker_command(url: str, concurrency: int, processes: int | None = None) -> list[str]:
    command = [sys.executable, "-m", "jobq", "--log-level", "WARNING", "worker", TARGET, "--url", url]
    command += ["--concurrency", str(concurrency)]
    if processes is not None:
        command += ["--processes", str(processes)]
    return command


def _env(ready: bool = False) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if ready:
        env["JOBQ_BENCH_READY"] = "1"
    return env


def _stop(proc: subprocess.Popen[Any]) -> int:
    """SIGTERM (a graceful stop, forwarded to its children by a supervisor);
    SIGKILL if it does not exit in time."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def _log_file() -> Any:
    """Where a worker's stderr goes: a file, not a pipe nobody reads while it
    runs (a worker logging through a database outage would fill a pipe and stall)."""
    return tempfile.TemporaryFile()


def _tail(log: Any) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")[-2000:]


def _query_one(url: str, query: str) -> Any:
    """The first row of ``query`` (``{t}``: the jobs table) on the database at ``url``."""
    if url.startswith("sqlite:"):
        path = url.split("://", 1)[1].split("?", 1)[0][1:]
        conn = sqlite3.connect(path)
        try:
            return conn.execute(query.format(t="jobs")).fetchone()
        finally:
            conn.close()
    import psycopg

    from .pg import admin_dsn
    from .raw import PG_TABLE

    with psycopg.connect(admin_dsn(url)) as conn:
        return conn.execute(query.format(t=PG_TABLE)).fetchone()  # type: ignore[arg-type]


def drain_window(url: str) -> tuple[int, int]:
    """(first claim, last completion) in epoch ms, read from the jobs table."""
    first, last = _query_one(url, "SELECT min(started_at), max(completed_at) FROM {t} WHERE status = 'completed'")
    return int(first), int(last)


def unfinished(url: str) -> bool:
    """Whether a job still waits or runs: one seek on the status index, where
    :meth:`jobq.Queue.counts` reads every row's status (15 ms at 20,000 jobs
    on SQLite, which polled every 50 ms took a third of a core from the
    processes measured)."""
    return _query_one(url, "SELECT 1 FROM {t} WHERE status IN ('pending', 'processing') LIMIT 1") is not None


class Cores:
    """The CPU the machine spent while workers drain, in cores (CPU seconds
    over wall seconds): all of it, the worker command's processes, and the
    PostgreSQL server's (the postmaster listening on the URL's port and its
    backends; none for SQLite). Sampled by :meth:`sample` while the workers
    run, since their processes' times go with them when they exit."""

    def __init__(self, url: str, worker_pid: int) -> None:
        import psutil

        self._psutil = psutil
        self._workers = psutil.Process(worker_pid)
        self._server = self._find_server(url)
        self._machine_start = psutil.cpu_times()
        self._server_start = self._tree_seconds(self._server)
        self._started = time.perf_counter()
        self._seconds = (0.0, 0.0)  # the worker tree's and the server's, at the last sample

    def _find_server(self, url: str) -> Any:
        if url.startswith("sqlite:"):
            return None
        port = f"port={urllib.parse.urlsplit(url).port or 5432}"
        for process in self._psutil.process_iter(["name", "cmdline"]):
            if process.info["name"] == "postgres" and port in " ".join(process.info["cmdline"] or ()):
                return process
        return None

    def _tree_seconds(self, root: Any) -> float:
        if root is None:
            return 0.0
        total = 0.0
        try:
            tree = [root, *root.children(recursive=True)]
        except self._psutil.Error:
            return 0.0
        for process in tree:
            try:
                times = process.cpu_times()
            except self._psutil.Error:
                continue
            total += times.user + times.system
        return total

    def sample(self) -> None:
        self._seconds = (self._tree_seconds(self._workers), self._tree_seconds(self._server) - self._server_start)

    def result(self) -> dict[str, float]:
        wall = time.perf_counter() - self._started
        end = self._psutil.cpu_times()
        spent = {field: getattr(end, field) - getattr(self._machine_start, field) for field in end._fields}
        total = sum(spent.values())
        busy = (total - spent.get("idle", 0.0) - spent.get("iowait", 0.0)) / total if total else 0.0
        return {
            "cores_machine": busy * (self._psutil.cpu_count() or 1),
            "cores_workers": self._seconds[0] / wall,
            "cores_server": self._seconds[1] / wall,
        }


async def process_processes(url: str, n: int, processes: int, concurrency: int, timeout: float) -> dict[str, Any]:
    """Prefills ``n`` jobs, starts ``jobq worker --processes N`` and polls
    until all are completed. The figure is ``n`` over the window from the
    first claim to the last completion as stored in the table, so the
    interpreters' start-up is not counted; ``wall_rate`` counts it."""
    async with jobq.connect(url) as queue:
        await _preload(queue, n)
        log = _log_file()
        proc = subprocess.Popen(  # noqa: ASYNC220 - Popen returns at once; the worker is polled, never awaited
            _worker_command(url, concurrency, processes), cwd=ROOT, env=_env(),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
        )  # fmt: skip
        started = time.perf_counter()
        cores = Cores(url, proc.pid)
        try:
            while unfinished(url):
                cores.sample()
                if proc.poll() is not None:
                    raise RuntimeError(f"jobq worker exited with {proc.returncode}: {_tail(log)}")
                if time.perf_counter() - started > timeout:
                    raise RuntimeError(f"the {n} jobs were not all completed within {timeout:g} s")
                await asyncio.sleep(POLL)
            wall = time.perf_counter() - started
            used = cores.result()
            completed = (await queue.counts())[jobq.JobStatus.COMPLETED]
            if completed != n:
                raise RuntimeError(f"expected {n} completed jobs, the queue counts {completed}")
        finally:
            code = _stop(proc)
            log.close()
    first, last = drain_window(url)
    seconds = max(last - first, 1) / 1000
    return {
        "n": n, "processes": processes, "concurrency": concurrency, "seconds": seconds, "rate": n / seconds,
        "wall_seconds": wall, "wall_rate": n / wall, "exit_code": code, **used,
    }  # fmt: skip


async def _patiently(call: Callable[[], Awaitable[T]]) -> T:
    """``call()``, tried again while the store is unavailable: the RSS run
    measures the worker's memory, and a server restarted by someone sharing
    it should cost a pause, not the 1M-job run."""
    deadline = time.monotonic() + OUTAGE_TIMEOUT
    while True:
        try:
            return await call()
        except jobq.StoreUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(1.0)


def _watch_ready(proc: subprocess.Popen[bytes], ready: threading.Event) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.strip() == b"READY":
            ready.set()


async def rss(url: str, n: int, checkpoints: list[int], concurrency: int, timeout: float) -> dict[str, Any]:
    """One ``jobq worker`` process fed ``n`` no-op jobs (batches of 1,000, at
    most 20,000 waiting); its RSS is sampled once it has started and idled
    for a second, then as the completed count passes each checkpoint."""
    import psutil

    async with jobq.connect(url) as queue:
        log = _log_file()
        proc = subprocess.Popen(  # noqa: ASYNC220 - Popen returns at once; the worker is polled, never awaited
            _worker_command(url, concurrency), cwd=ROOT, env=_env(ready=True),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
        )  # fmt: skip
        ready = threading.Event()
        threading.Thread(target=_watch_ready, args=(proc, ready), daemon=True).start()
        try:
            if not await asyncio.to_thread(ready.wait, 60):
                raise RuntimeError("the jobq worker did not start within 60 s")
            await asyncio.sleep(1.0)
            worker = psutil.Process(proc.pid)
            samples: dict[str, float] = {"start": worker.memory_info().rss}
            pending = sorted(checkpoints)
            enqueued = done = 0
            started = time.perf_counter()
            while done < n:
                if proc.poll() is not None:
                    raise RuntimeError(f"jobq worker exited with {proc.returncode}: {_tail(log)}")
                if time.perf_counter() - started > timeout:
                    raise RuntimeError(f"only {done} of {n} jobs completed within {timeout:g} s")
                waiting = await _patiently(queue.size)
                # Jobs neither waiting nor finished are at most the worker's concurrency: in flight.
                done = max(done, enqueued - waiting - concurrency) if enqueued < n else enqueued - waiting
                while pending and done >= pending[0]:
                    samples[str(pending.pop(0))] = worker.memory_info().rss
                if enqueued < n and waiting < BACKLOG - FEED_BATCH:
                    count = min(FEED_BATCH, n - enqueued)
                    batch = [jobq.NewJob(JOB_TYPE, {"i": enqueued + i}) for i in range(count)]
                    await _patiently(lambda: queue.enqueue_many(batch))  # noqa: B023 - called before the loop moves on
                    enqueued += count
                else:
                    await asyncio.sleep(POLL)
            # The last jobs may still be in flight: wait for their completions.
            while (await _patiently(queue.counts))[jobq.JobStatus.COMPLETED] < n:
                if time.perf_counter() - started > timeout:
                    raise RuntimeError(f"the last jobs did not complete within {timeout:g} s")
                await asyncio.sleep(POLL)
            seconds = time.perf_counter() - started
            for point in pending:  # checkpoints at n itself
                samples[str(point)] = worker.memory_info().rss
        finally:
            code = _stop(proc)
            log.close()
    return {"n": n, "concurrency": concurrency, "rss": samples, "seconds": seconds, "rate": n / seconds,
            "exit_code": code}  # fmt: skip
