"""Orchestration: which measurements, in which order, in which child.

Backends are interleaved run by run (and their order rotated each run), so a
slow spell of this noisy machine lands on every backend rather than on one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jobq

from . import peers_huey, peers_pgqueuer, workloads
from .config import BACKENDS, PEERS, POSTGRES, RAW_MODES, SCALE_BACKENDS, Counts
from .pg import Server

ROOT = Path(__file__).resolve().parent.parent  # the repository root, where ``bench`` imports from
#: Selectable with --only. Peers join enqueue, batch, process and latency
#: (unless --no-peers); "rss" is the long one and runs only when asked for
#: (--only rss, or --long).
WORKLOADS = ("enqueue", "batch", "process", "tasks", "latency", "raw", "processes", "scale", "backlog", "rss")
#: Concurrency of the task API's process figure, compared with process_c32.
TASK_CONCURRENCY = 32
DEFAULT_WORKLOADS = tuple(w for w in WORKLOADS if w != "rss")
LATENCY_CONCURRENCY = 16
MIB = 1024 * 1024


class BenchError(RuntimeError):
    pass


@dataclass
class Samples:
    """Per-run values: ``values[metric][backend] == [run1, run2, ...]``."""

    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    details: list[dict[str, Any]] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)

    def add(self, metric: str, backend: str, value: float, detail: dict[str, Any]) -> None:
        self.values.setdefault(metric, {}).setdefault(backend, []).append(value)
        self.details.append({"metric": metric, "backend": backend, "value": value, **detail})


def _child_cmd(workload: str, **args: Any) -> list[str]:
    return [sys.executable, "-m", "bench.child", json.dumps({"workload": workload, "args": args})]


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _parse(stdout: str, stderr: str, what: str) -> dict[str, Any]:
    for line in reversed(stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[7:])  # type: ignore[no-any-return]
        if line.startswith("ERROR "):
            error = json.loads(line[6:])
            raise BenchError(f"{what} failed: {error['error']}\n{error['traceback']}")
    raise BenchError(f"{what} printed no result\nstdout: {stdout[-2000:]}\nstderr: {stderr[-2000:]}")


def run_child(workload: str, limit: float, /, **args: Any) -> dict[str, Any]:
    """Runs ``workloads.<workload>(**args)`` in a fresh interpreter, killed after ``limit`` seconds."""
    what = f"{workload}({', '.join(f'{k}={v}' for k, v in args.items() if k != 'path')})"
    try:
        proc = subprocess.run(
            _child_cmd(workload, **args), check=False, cwd=ROOT, env=_child_env(),
            capture_output=True, text=True, timeout=limit,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise BenchError(f"{what} took longer than {limit:g} s") from None
    return _parse(proc.stdout, proc.stderr, what)


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


async def _latency_across_processes(
    url: str, n: int, rate: float, timeout: float, delay: float = 0.0
) -> dict[str, Any]:
    """A worker child idles on the queue; this process produces at ``rate``
    (jobs due ``delay`` seconds later). On PostgreSQL the idle worker is
    woken by LISTEN/NOTIFY."""
    async with jobq.connect(url) as queue:  # creates the file/table before the worker opens it
        proc = await asyncio.create_subprocess_exec(
            *_child_cmd("latency_worker", url=url, n=n, concurrency=LATENCY_CONCURRENCY, timeout=timeout),
            cwd=ROOT, env=_child_env(), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), 60)
            if line.strip() != b"READY":
                rest = await proc.stdout.read()
                err = await proc.stderr.read() if proc.stderr else b""
                return _parse((line + rest).decode(), err.decode(), "latency_worker")
            achieved = await workloads.produce_steady(queue, n, rate, delay)
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except BaseException:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
    result = _parse(out.decode(), err.decode(), "latency_worker")
    result["achieved_rate"] = achieved
    return result


def _latency_peer(worker: str, worker_args: dict[str, Any], produce: Callable[[], float], timeout: float) -> dict[str, Any]:
    """A peer's worker child idles on its queue; ``produce`` (in this
    process) enqueues at the steady rate."""
    proc = subprocess.Popen(
        _child_cmd(worker, **worker_args), cwd=ROOT, env=_child_env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    watchdog = threading.Timer(timeout + 60, proc.kill)  # a worker that never says READY
    watchdog.start()
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if line.strip() != "READY":
            out, err = proc.communicate()
            return _parse(line + out, err, worker)
        achieved = produce()
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        raise
    finally:
        watchdog.cancel()
    result = _parse(out, err, worker)
    result["achieved_rate"] = achieved
    return result


class Bench:
    def __init__(
        self,
        counts: Counts,
        runs: int,
        only: list[str] | None,
        workdir: str,
        log: Callable[[str], None],
        concurrencies: tuple[int, ...] | None = None,
        postgres: Server | None = None,
        peers: bool = True,
        only_backends: list[str] | None = None,
    ) -> None:
        self.counts = counts
        self.runs = runs
        self.only = only or list(DEFAULT_WORKLOADS)
        self.workdir = workdir
        self.log = log
        self.concurrencies = concurrencies or counts.concurrencies
        self.postgres = postgres
        self.backends = list(BACKENDS) + ([POSTGRES] if postgres is not None else [])
        if only_backends:
            self.backends = [b for b in self.backends if b in only_backends]
        #: peer -> why it has no column (not installed, or no server)
        self.peers_missing: dict[str, str] = {}
        self.peers: list[str] = []
        if peers and any(w in self.only for w in ("enqueue", "batch", "process", "latency")):
            self._find_peers()
            self.peers = [p for p in self.peers if PEERS[p] in self.backends]
        self.samples = Samples()
        self._files = 0
        #: (backend, what) -> the 1M-row table: of finished jobs (scale), of delayed ones (backlog)
        self._big: dict[tuple[str, str], tuple[str, str | None]] = {}

    def _find_peers(self) -> None:
        if peers_huey.available():
            self.peers.append("huey")
        else:
            self.peers_missing["huey"] = "huey is not installed (pip install '.[bench]')"
        if not peers_pgqueuer.available():
            self.peers_missing["pgqueuer"] = "pgqueuer is not installed (pip install '.[bench]')"
        elif self.postgres is None:
            self.peers_missing["pgqueuer"] = "no PostgreSQL server (JOBQ_BENCH_POSTGRES_URL)"
        else:
            self.peers.append("pgqueuer")

    def _url(self, backend: str) -> tuple[str, str | None]:
        """A fresh queue URL and what to remove afterwards: a database file,
        or (postgres, pgqueuer) a schema of its own. huey gets a bare path."""
        if backend == "memory":
            return BACKENDS[backend], None
        if backend in (POSTGRES, "pgqueuer"):
            assert self.postgres is not None
            schema, url = self.postgres.fresh()
            return url, schema
        self._files += 1
        path = os.path.join(self.workdir, f"bench-{self._files}.db")
        if backend == "huey":
            return path, path
        return BACKENDS[backend].format(path=path), path

    def _remove(self, backend: str, path: str | None) -> None:
        if path is None:
            return
        if backend in (POSTGRES, "pgqueuer"):
            assert self.postgres is not None
            try:
                self.postgres.drop(path)
            except Exception as exc:  # noqa: BLE001 - a leftover schema costs no figure
                self.log(f"  could not drop schema {path}: {exc!r}")
            return
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path + suffix)

    def _fail(self, metric: str, backend: str, run: int, error: str) -> None:
        # One failed measurement costs its cell, not the whole run.
        self.samples.errors.append({"metric": metric, "backend": backend, "run": run, "error": error})
        self.log(f"  run {run + 1} {metric:<18} {backend:<12} FAILED: {error.splitlines()[0]}")

    def _measure(
        self,
        metric: str,
        backend: str,
        run: int,
        fn: Callable[[str], dict[str, Any]],
        url: str | None = None,
    ) -> dict[str, Any] | None:
        """Runs ``fn`` on a fresh database (or on ``url``, kept afterwards) and
        records its value; returns the result, or None if it failed."""
        path = None
        if url is None:
            try:
                url, path = self._url(backend)
            except Exception as exc:  # noqa: BLE001 - e.g. the server went away: this cell only
                self._fail(metric, backend, run, repr(exc))
                return None
        try:
            started = time.perf_counter()
            result = fn(url)
            wall = time.perf_counter() - started
        except BenchError as exc:
            self._fail(metric, backend, run, str(exc))
            return None
        except Exception as exc:  # noqa: BLE001 - the parent's own side (a latency producer) failed: this cell only
            self._fail(metric, backend, run, f"{exc!r}\n{traceback.format_exc()}")
            return None
        finally:
            self._remove(backend, path)
        result.setdefault("run", run)
        value = result.pop("value", None)
        if value is None:
            value = result["rate"]
        self.samples.add(metric, backend, value, {k: v for k, v in result.items() if k != "latencies"})
        self.log(
            f"  run {run + 1} {metric:<18} {backend:<12} {_fmt_value(metric, value):>12}   ({wall:.1f} s)"
        )
        return result

    # -- jobq ----------------------------------------------------------------

    def enqueue(self, backend: str, run: int) -> None:
        n = self.counts.enqueue[backend]
        if backend == "huey":
            fn = lambda path: run_child("peers_huey.enqueue_single", 60 + n / 100, path=path, n=n)  # noqa: E731
        elif backend == "pgqueuer":
            fn = lambda url: run_child("peers_pgqueuer.enqueue_single", 60 + n / 100, url=url, n=n)  # noqa: E731
        else:
            fn = lambda url: run_child("enqueue_single", 60 + n / 100, url=url, n=n)  # noqa: E731
        self._measure("enqueue", backend, run, fn)

    def concurrent_enqueue(self, backend: str, run: int) -> None:
        """Producers enqueuing one job per call at once: ``producer_tasks``
        tasks of one process, then ``producer_processes`` processes."""
        n, tasks, procs = self.counts.enqueue[backend], self.counts.producer_tasks, self.counts.producer_processes
        self._measure(
            "enqueue_tasks", backend, run,
            lambda url: run_child("enqueue_tasks", 60 + n / 100, url=url, n=n, tasks=tasks),
        )  # fmt: skip
        if backend != "memory":  # a memory store is private to its process
            self._measure(
                "enqueue_processes", backend, run,
                lambda url: run_child("enqueue_processes", 120 + n / 100, url=url, n=n, processes=procs),
            )  # fmt: skip

    def batch(self, backend: str, run: int) -> None:
        n, size = self.counts.batch_jobs, self.counts.batch_size
        workload = "peers_pgqueuer.enqueue_batch" if backend == "pgqueuer" else "enqueue_batch"
        self._measure(
            "enqueue_many", backend, run,
            lambda url: run_child(workload, 60 + n / 500, url=url, n=n, size=size),
        )  # fmt: skip

    def process(self, backend: str, run: int) -> None:
        n = self.counts.process_jobs
        timeout = 60 + n / 100
        if backend == "huey":
            self._measure(
                "process_peer", backend, run,
                lambda path: run_child("peers_huey.process", timeout + 30, path=path, n=n, timeout=timeout),
            )  # fmt: skip
            return
        if backend == "pgqueuer":  # at each batch size; its best is the peer's figure
            rates = []
            for batch in peers_pgqueuer.BATCH_SIZES:
                result = self._measure(
                    f"process_peer_b{batch}", backend, run,
                    lambda url, b=batch: run_child(
                        "peers_pgqueuer.process", timeout + 30, url=url, n=n, timeout=timeout, batch=b
                    ),
                )  # fmt: skip
                if result is not None:
                    rates.append(result["rate"])
            if rates:
                self.samples.add("process_peer", backend, max(rates), {"run": run})
            return
        for c in self.concurrencies:
            self._measure(
                f"process_c{c}", backend, run,
                lambda url, c=c: run_child("process", timeout + 30, url=url, n=n, concurrency=c, timeout=timeout),
            )  # fmt: skip

    def task_enqueue(self, backend: str, run: int) -> None:
        """Deferring through the task API, one call per job (beside ``enqueue``)."""
        n = self.counts.enqueue[backend]
        self._measure(
            "task_enqueue", backend, run, lambda url: run_child("tasks.enqueue_single", 60 + n / 100, url=url, n=n)
        )

    def task_process(self, backend: str, run: int) -> None:
        """A processor of an app's tasks draining a full queue (beside ``process``)."""
        n, c = self.counts.process_jobs, TASK_CONCURRENCY
        timeout = 60 + n / 100
        self._measure(
            "task_process", backend, run,
            lambda url: run_child("tasks.process", timeout + 30, url=url, n=n, concurrency=c, timeout=timeout),
        )  # fmt: skip

    def processes(self, backend: str, run: int) -> None:
        """``jobq worker --processes N`` (the CLI and its supervisor) on a
        prefilled queue, then one process with as many jobs in flight (its
        concurrency N times as high), so the ratio is what the other
        processes add, not more concurrency."""
        n, count, c = self.counts.process_jobs, self.counts.processes, self.concurrencies[0]
        timeout = 60 + n / 100
        for metric, processes, concurrency in (("processes_cli", count, c), ("processes_cli_one", 1, c * count)):
            result = self._measure(
                metric, backend, run,
                lambda url, processes=processes, concurrency=concurrency: run_child(
                    "cli_workers.process_processes", timeout + 60, url=url, n=n, processes=processes,
                    concurrency=concurrency, timeout=timeout,
                ),
            )  # fmt: skip
            for part in ("workers", "server", "machine") if result else ():
                self.samples.add(f"{metric}_cores_{part}", backend, result[f"cores_{part}"], {"run": run})

    def latency(self, backend: str, run: int) -> None:
        n, rate = self.counts.latency_jobs, self.counts.latency_rate
        timeout = 60 + n / rate
        tails: dict[str, float] = {}

        def measure(url: str) -> dict[str, Any]:
            if backend == "memory":  # in-process only: producer and processor share one loop
                result = run_child(
                    "latency_inprocess", timeout + 30, url=url, n=n, rate=rate,
                    concurrency=LATENCY_CONCURRENCY, timeout=timeout,
                )  # fmt: skip
            elif backend == "huey":
                result = _latency_peer(
                    "peers_huey.latency_worker", {"path": url, "n": n, "timeout": timeout},
                    lambda: peers_huey.produce_steady(url, n, rate), timeout,
                )  # fmt: skip
            elif backend == "pgqueuer":
                asyncio.run(peers_pgqueuer.install(url))  # before the worker checks the schema
                result = _latency_peer(
                    "peers_pgqueuer.latency_worker", {"url": url, "n": n, "timeout": timeout},
                    lambda: asyncio.run(peers_pgqueuer.produce_steady(url, n, rate)), timeout,
                )  # fmt: skip
            else:
                result = asyncio.run(_latency_across_processes(url, n, rate, timeout))
            ms = [x * 1000 for x in result.pop("latencies")]
            if len(ms) != n:
                raise BenchError(f"latency: {len(ms)} of {n} jobs reported")
            tails.update(p99=percentile(ms, 99), max=max(ms))
            result.update(
                p50=percentile(ms, 50), **tails, value=percentile(ms, 50), in_process=backend == "memory"
            )
            return result

        self._measure("latency_p50", backend, run, measure)
        if tails:
            self.samples.add("latency_p99", backend, tails["p99"], {"run": run})
            self.samples.add("latency_max", backend, tails["max"], {"run": run})

    # -- raw-engine references -------------------------------------------------

    def _raw(self, metric: str, kind: str, backend: str, run: int, n: int, batch: int) -> None:
        mode = RAW_MODES[backend]
        limit = 60 + n / 50
        if backend == POSTGRES:
            fn = lambda url: run_child(f"raw.pg_{kind}", limit, url=url, n=n, batch=batch)  # noqa: E731
        else:
            fn = lambda url: run_child(  # noqa: E731
                f"raw.sqlite_{kind}", limit, path=self._path(url), synchronous=mode, n=n, batch=batch
            )
        self._measure(metric, backend, run, fn)

    def raw_insert(self, backend: str, run: int) -> None:
        self._raw("raw_insert", "insert", backend, run, self.counts.raw_insert[RAW_MODES[backend]], 1)

    def raw_insert_batch(self, backend: str, run: int) -> None:
        size = self.counts.batch_size
        self._raw("raw_insert_batch", "insert", backend, run, self.counts.batch_jobs, size)

    def raw_claim(self, backend: str, run: int) -> None:
        mode = RAW_MODES[backend]
        self._raw("raw_claim_complete", "claim_complete", backend, run, self.counts.raw_claim[mode], 1)
        size = self.counts.batch_size
        n = self.counts.raw_claim_batch[mode]
        self._raw("raw_claim_batch", "claim_complete", backend, run, n, size)

    @staticmethod
    def _path(url: str) -> str:
        return url.split("://", 1)[1].split("?", 1)[0][1:]

    # -- claim cost at scale -----------------------------------------------------

    def _big_table(self, backend: str, what: str = "finished") -> str | None:
        """The table with ``scale_rows`` finished jobs (``backlog_rows``
        delayed ones), built on first use and kept for every run (each run
        adds only the jobs it completes)."""
        key = (backend, what)
        if key not in self._big:
            metric = "claim_big" if what == "finished" else "backlog_claim_big"
            try:
                url, path = self._url(backend)
            except Exception as exc:  # noqa: BLE001 - e.g. the server went away: these cells only
                self._fail(metric, backend, 0, repr(exc))
                return None
            rows = self.counts.scale_rows if what == "finished" else self.counts.backlog_rows
            try:
                result = run_child(f"scale.fill_{what}", 600 + rows / 1000, url=url, rows=rows)
            except BenchError as exc:
                self._remove(backend, path)
                self._fail(metric, backend, 0, str(exc))
                return None
            self.log(f"  {backend}: {result['rows']:,} {what} jobs inserted in {result['seconds']:.1f} s")
            self._big[key] = (url, path)
        return self._big[key][0]

    def scale(self, backend: str, run: int) -> None:
        n = self.counts.scale_cycles[backend]
        big = self._big_table(backend)
        if big is None:
            return

        def cycles(url: str) -> dict[str, Any]:
            return run_child("scale.claim_cycles", 60 + n / 20, url=url, n=n)

        self._measure("claim_empty", backend, run, cycles)
        self._measure("claim_big", backend, run, cycles, url=big)

    def backlog(self, backend: str, run: int) -> None:
        """Claims beside ``backlog_rows`` jobs of a higher priority not yet
        due, against an empty table, side by side: ``dequeue`` + ``complete``,
        a processor draining ready jobs; then jobs due a moment after their
        enqueue, timed from due to start, beside the backlog."""
        big = self._big_table(backend, "delayed")
        if big is None:
            return
        n = self.counts.scale_cycles[backend]

        def cycles(url: str) -> dict[str, Any]:
            return run_child("scale.claim_cycles", 60 + n / 20, url=url, n=n)

        self._measure("backlog_claim_empty", backend, run, cycles)
        self._measure("backlog_claim_big", backend, run, cycles, url=big)
        jobs, c = self.counts.backlog_process_jobs, TASK_CONCURRENCY
        timeout = 60 + jobs / 100

        def process(url: str) -> dict[str, Any]:
            return run_child("process", timeout + 30, url=url, n=jobs, concurrency=c, timeout=timeout)

        self._measure("backlog_process_empty", backend, run, process)
        self._measure("backlog_process_big", backend, run, process, url=big)
        k, rate, delay = self.counts.delayed_jobs, self.counts.delayed_rate, self.counts.delayed_by
        tails: dict[str, float] = {}

        def delayed(url: str) -> dict[str, Any]:
            result = asyncio.run(_latency_across_processes(url, k, rate, 60 + k / rate, delay))
            ms = [x * 1000 for x in result.pop("latencies")]
            if len(ms) != k:
                raise BenchError(f"latency of delayed jobs: {len(ms)} of {k} jobs reported")
            tails["p99"] = percentile(ms, 99)
            result.update(p50=percentile(ms, 50), p99=tails["p99"], value=percentile(ms, 50), delay=delay)
            return result

        self._measure("latency_delayed_p50", backend, run, delayed, url=big)
        if tails:
            self.samples.add("latency_delayed_p99", backend, tails["p99"], {"run": run})

    def drop_big_tables(self) -> None:
        for (backend, _), (_, path) in self._big.items():
            self._remove(backend, path)
        self._big.clear()

    # -- worker memory -----------------------------------------------------------

    def rss(self, backend: str) -> None:
        """Once (not per run): one worker process through ``rss_jobs`` jobs."""
        n, points = self.counts.rss_jobs, list(self.counts.rss_checkpoints)
        c = self.concurrencies[0]
        timeout = 120 + n / 200
        result = self._measure(
            "rss_rate", backend, 0,
            lambda url: run_child(
                "cli_workers.rss", timeout + 120, url=url, n=n, checkpoints=points, concurrency=c,
                timeout=timeout,
            ),
        )  # fmt: skip
        if result is None:
            return
        for name, rss in result["rss"].items():
            self.samples.add(f"rss_{name}", backend, rss / MIB, {"run": 0})
        self.log(
            "  rss " + backend + ": "
            + ", ".join(f"{name} {rss / MIB:.1f} MiB" for name, rss in result["rss"].items())
        )  # fmt: skip

    # -- the schedule ------------------------------------------------------

    def _steps(self, backend: str) -> dict[str, list[Callable[[str, int], None]]]:
        """Per workload, the measurements for one backend. Each raw reference
        runs right next to the jobq figure it is compared with, so the pair
        sees the same spell of machine noise (their ratio is taken per run)."""
        only = self.only
        if backend in PEERS:
            return {
                "enqueue": [self.enqueue] if "enqueue" in only else [],
                "batch": [self.batch] if "batch" in only and backend == "pgqueuer" else [],
                "process": [self.process] if "process" in only else [],
                "latency": [self.latency] if "latency" in only else [],
            }
        raw = "raw" in only and backend in RAW_MODES
        tasks = "tasks" in only
        return {
            "enqueue": [self.enqueue, self.concurrent_enqueue] if "enqueue" in only else [],
            "task_enqueue": [self.task_enqueue] if tasks else [],
            "raw_insert": [self.raw_insert] if raw else [],
            "batch": [self.batch] if "batch" in only else [],
            "raw_insert_batch": [self.raw_insert_batch] if raw else [],
            "raw_claim": [self.raw_claim] if raw else [],
            "process": [self.process] if "process" in only else [],
            "task_process": [self.task_process] if tasks else [],
            "processes": [self.processes] if "processes" in only and backend != "memory" else [],
            "scale": [self.scale] if "scale" in only and backend in SCALE_BACKENDS else [],
            "backlog": [self.backlog] if "backlog" in only and backend in SCALE_BACKENDS else [],
            "latency": [self.latency] if "latency" in only else [],
        }

    def run(self) -> Samples:
        backends = self.backends + self.peers
        groups = (
            ("enqueue", "task_enqueue", "raw_insert"), ("batch", "raw_insert_batch"),
            ("raw_claim", "process", "task_process", "processes"),
            ("scale",), ("backlog",), ("latency",),
        )  # fmt: skip
        per_run = any(w != "rss" for w in self.only)
        try:
            for run in range(self.runs if per_run else 0):
                shift = run % len(backends)
                order = backends[shift:] + backends[:shift]
                self.log(f"run {run + 1}/{self.runs}: backends in order {', '.join(order)}")
                # Each jobq figure and its raw reference run back to back per backend.
                for group in groups:
                    for backend in order:
                        steps = self._steps(backend)
                        for name in group:
                            for step in steps.get(name, []):
                                step(backend, run)
        finally:
            self.drop_big_tables()
        if "rss" in self.only:
            for backend in self.backends:
                if backend in SCALE_BACKENDS:
                    self.log(f"rss: one worker process through {self.counts.rss_jobs:,} jobs on {backend}")
                    self.rss(backend)
        return self.samples


def _fmt_value(metric: str, value: float) -> str:
    if metric.startswith("latency"):
        return f"{value:.2f} ms"
    return f"{value:,.0f}/s"


def make_workdir(base: str | None) -> str:
    return tempfile.mkdtemp(prefix="jobq-bench-", dir=base)
