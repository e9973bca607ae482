"""Orchestration: which measurements, in which order, in which child.

Backends are interleaved run by run (and their order rotated each run), so a
slow spell of this noisy machine lands on every backend rather than on one.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jobq

from . import workloads
from .config import BACKENDS, POSTGRES, Counts
from .pg import Server

ROOT = Path(__file__).resolve().parent.parent  # the repository root, where ``bench`` imports from
WORKLOADS = ("enqueue", "batch", "process", "latency", "raw")
RAW_MODES = {"sqlite": "FULL", "sqlite-fast": "NORMAL"}
LATENCY_CONCURRENCY = 16


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


async def _latency_across_processes(url: str, n: int, rate: float, timeout: float) -> dict[str, Any]:
    """A worker child idles on the queue; this process produces at ``rate``.
    On PostgreSQL the idle worker is woken by LISTEN/NOTIFY."""
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
            achieved = await workloads.produce_steady(queue, n, rate)
            out, err = await asyncio.wait_for(proc.communicate(), timeout)
        except BaseException:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
    result = _parse(out.decode(), err.decode(), "latency_worker")
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
    ) -> None:
        self.counts = counts
        self.runs = runs
        self.only = only or list(WORKLOADS)
        self.workdir = workdir
        self.log = log
        self.concurrencies = concurrencies or counts.concurrencies
        self.postgres = postgres
        self.backends = list(BACKENDS) + ([POSTGRES] if postgres is not None else [])
        self.samples = Samples()
        self._files = 0

    def _url(self, backend: str) -> tuple[str, str | None]:
        """A fresh queue URL and what to remove afterwards: a database file,
        or (postgres) a schema of its own."""
        if backend == "memory":
            return BACKENDS[backend], None
        if backend == POSTGRES:
            assert self.postgres is not None
            schema, url = self.postgres.fresh()
            return url, schema
        self._files += 1
        path = os.path.join(self.workdir, f"bench-{self._files}.db")
        return BACKENDS[backend].format(path=path), path

    def _remove(self, backend: str, path: str | None) -> None:
        if path is None:
            return
        if backend == POSTGRES:
            assert self.postgres is not None
            try:
                self.postgres.drop(path)
            except Exception as exc:  # noqa: BLE001 - a leftover schema costs no figure
                self.log(f"  could not drop schema {path}: {exc!r}")
            return
        for suffix in ("", "-wal", "-shm"):
            try:
                os.remove(path + suffix)
            except FileNotFoundError:
                pass

    def _measure(self, metric: str, backend: str, run: int, fn: Callable[[str], dict[str, Any]]) -> None:
        try:
            url, path = self._url(backend)
        except Exception as exc:  # noqa: BLE001 - e.g. the server went away: this cell only
            self.samples.errors.append({"metric": metric, "backend": backend, "run": run, "error": repr(exc)})
            self.log(f"  run {run + 1} {metric:<18} {backend:<12} FAILED: {exc!r}")
            return
        try:
            started = time.perf_counter()
            result = fn(url)
            wall = time.perf_counter() - started
        except BenchError as exc:
            # One failed measurement costs its cell, not the whole run.
            self.samples.errors.append({"metric": metric, "backend": backend, "run": run, "error": str(exc)})
            self.log(f"  run {run + 1} {metric:<18} {backend:<12} FAILED: {str(exc).splitlines()[0]}")
            return
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

    # -- the five workloads ------------------------------------------------

    def enqueue(self, backend: str, run: int) -> None:
        n = self.counts.enqueue[backend]
        self._measure(
            "enqueue", backend, run,
            lambda url: run_child("enqueue_single", 60 + n / 100, url=url, n=n),
        )  # fmt: skip

    def batch(self, backend: str, run: int) -> None:
        n, size = self.counts.batch_jobs, self.counts.batch_size
        self._measure(
            "enqueue_many", backend, run,
            lambda url: run_child("enqueue_batch", 60 + n / 500, url=url, n=n, size=size),
        )  # fmt: skip

    def process(self, backend: str, run: int) -> None:
        n = self.counts.process_jobs
        timeout = 60 + n / 100
        for c in self.concurrencies:
            self._measure(
                f"process_c{c}", backend, run,
                lambda url, c=c: run_child("process", timeout + 30, url=url, n=n, concurrency=c, timeout=timeout),
            )  # fmt: skip

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

    def raw_insert(self, backend: str, run: int) -> None:
        mode = RAW_MODES[backend]
        n = self.counts.raw_insert[mode]
        self._measure(
            "raw_insert", backend, run,
            lambda url: run_child("raw_insert", 60 + n / 100, path=self._path(url), synchronous=mode, n=n),
        )  # fmt: skip

    def raw_claim(self, backend: str, run: int) -> None:
        mode = RAW_MODES[backend]
        n = self.counts.raw_claim[mode]
        self._measure(
            "raw_claim_complete", backend, run,
            lambda url: run_child("raw_claim_complete", 60 + n / 50, path=self._path(url), synchronous=mode, n=n),
        )  # fmt: skip

    @staticmethod
    def _path(url: str) -> str:
        return url.split("://", 1)[1].split("?", 1)[0][1:]

    # -- the schedule ------------------------------------------------------

    def _steps(self, backend: str) -> dict[str, list[Callable[[str, int], None]]]:
        """Per workload, the measurements for one backend. Each raw reference
        runs right next to the jobq figure it is compared with, so the pair
        sees the same spell of machine noise (their ratio is taken per run)."""
        raw = "raw" in self.only and backend in RAW_MODES
        steps: dict[str, list[Callable[[str, int], None]]] = {
            "enqueue": [self.enqueue] if "enqueue" in self.only else [],
            "raw": [self.raw_insert] if raw else [],
            "batch": [self.batch] if "batch" in self.only else [],
            "process": [self.process] if "process" in self.only else [],
            "raw_claim": [self.raw_claim] if raw else [],
            "latency": [self.latency] if "latency" in self.only else [],
        }
        return steps

    def run(self) -> Samples:
        backends = self.backends
        for run in range(self.runs):
            shift = run % len(backends)
            order = backends[shift:] + backends[:shift]
            self.log(f"run {run + 1}/{self.runs}: backends in order {', '.join(order)}")
            # (enqueue, raw INSERT) and (raw claim+complete, process) run back to back per backend.
            for group in (("enqueue", "raw"), ("batch",), ("raw_claim", "process"), ("latency",)):
                for backend in order:
                    steps = self._steps(backend)
                    for name in group:
                        for step in steps[name]:
                            step(backend, run)
        return self.samples


def _fmt_value(metric: str, value: float) -> str:
    if metric.startswith("latency"):
        return f"{value:.2f} ms"
    return f"{value:,.0f}/s"


def make_workdir(base: str | None) -> str:
    return tempfile.mkdtemp(prefix="jobq-bench-", dir=base)
