"""The measurements themselves. Each function runs inside a fresh child
interpreter (see :mod:`bench.child`) and returns a JSON-able dict.

Timings use ``time.perf_counter``; latencies use ``time.time`` because they
compare clocks of two processes. The raw-engine references are in
:mod:`bench.raw`, the peers in :mod:`bench.peers_huey` and
:mod:`bench.peers_pgqueuer`, the CLI workloads in :mod:`bench.cli_workers`,
the claim cost at scale in :mod:`bench.scale`.
"""

from __future__ import annotations

import asyncio
import contextlib
import cProfile
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import jobq

JOB_TYPE = "bench"
PRELOAD_BATCH = 1_000  # jobs per enqueue_many when filling a queue before a timed drain
WARMUP = 20  # untimed enqueues before a timed single-enqueue loop


def _emit(tag: str, payload: Any = None) -> None:
    """One protocol line to the parent on stdout."""
    import json

    line = tag if payload is None else f"{tag} {json.dumps(payload)}"
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def _preload(queue: jobq.Queue, n: int) -> None:
    for start in range(0, n, PRELOAD_BATCH):
        await queue.enqueue_many(
            [jobq.NewJob(JOB_TYPE, {"i": i}) for i in range(start, min(n, start + PRELOAD_BATCH))]
        )


# -- 1. enqueue, one job per call ------------------------------------------


async def enqueue_single(url: str, n: int) -> dict[str, Any]:
    async with jobq.connect(url) as queue:
        for i in range(WARMUP):
            await queue.enqueue(JOB_TYPE, {"i": -i})
        started = time.perf_counter()
        for i in range(n):
            await queue.enqueue(JOB_TYPE, {"i": i})
        seconds = time.perf_counter() - started
    return {"n": n, "seconds": seconds, "rate": n / seconds}


async def enqueue_tasks(url: str, n: int, tasks: int) -> dict[str, Any]:
    """``tasks`` producers in one event loop (a web app's request handlers),
    each enqueuing one job per call, ``n`` jobs in all."""
    async with jobq.connect(url) as queue:
        for i in range(WARMUP):
            await queue.enqueue(JOB_TYPE, {"i": -i})

        async def produce(k: int) -> None:
            for i in range(k, n, tasks):
                await queue.enqueue(JOB_TYPE, {"i": i})

        started = time.perf_counter()
        await asyncio.gather(*(produce(k) for k in range(tasks)))
        seconds = time.perf_counter() - started
    return {"n": n, "tasks": tasks, "seconds": seconds, "rate": n / seconds}


def _enqueue_part(url: str, part: range, start: Any, done: Any) -> None:
    """One producer process of :func:`enqueue_processes`."""

    async def run() -> float:
        async with jobq.connect(url) as queue:
            await queue.enqueue(JOB_TYPE, {"i": -1})  # opened and warm before the start
            done.put(("ready", 0.0))
            start.wait()
            for i in part:
                await queue.enqueue(JOB_TYPE, {"i": i})
            return time.time()

    done.put(("end", asyncio.run(run())))


def enqueue_processes(url: str, n: int, processes: int) -> dict[str, Any]:
    """``processes`` producer processes, each enqueuing one job per call,
    ``n`` jobs in all; timed from a common start to the last one's end."""
    import multiprocessing

    asyncio.run(_open(url))  # the schema exists before the producers race to create it
    ctx = multiprocessing.get_context("spawn")
    start, done = ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_enqueue_part, args=(url, range(k, n, processes), start, done))
        for k in range(processes)
    ]
    for proc in procs:
        proc.start()
    try:
        for _ in procs:
            tag, _at = done.get(timeout=120)
            if tag != "ready":
                raise RuntimeError(f"a producer process said {tag!r} before it was ready")
        started = time.time()
        start.set()
        ends = [done.get(timeout=300)[1] for _ in procs]
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
    if any(proc.exitcode != 0 for proc in procs):
        raise RuntimeError(f"producer exit codes {[proc.exitcode for proc in procs]}")
    seconds = max(ends) - started
    return {"n": n, "processes": processes, "seconds": seconds, "rate": n / seconds}


async def _open(url: str) -> None:
    async with jobq.connect(url):
        pass


# -- 2. enqueue_many in batches --------------------------------------------


async def enqueue_batch(url: str, n: int, size: int) -> dict[str, Any]:
    async with jobq.connect(url) as queue:
        await queue.enqueue_many([jobq.NewJob(JOB_TYPE, {"i": -1})])
        started = time.perf_counter()
        for start in range(0, n, size):
            await queue.enqueue_many(
                [jobq.NewJob(JOB_TYPE, {"i": i}) for i in range(start, min(n, start + size))]
            )
        seconds = time.perf_counter() - started
    return {"n": n, "batch": size, "seconds": seconds, "rate": n / seconds}


# -- 3. one processor draining a full queue --------------------------------

#: Seconds between the checks a process of :func:`process_shared` makes
#: for jobs still to run.
SHARED_POLL = 0.05


class _Profilers:
    """cProfile on the event-loop thread and, for SQLite, on the store's one
    database thread (where every statement runs)."""

    def __init__(self, queue: jobq.Queue, prefix: str) -> None:
        self.prefix = prefix
        self.main = cProfile.Profile()
        self.db: cProfile.Profile | None = None
        self.executor = getattr(getattr(queue.store, "db", None), "executor", None)
        if self.executor is not None:
            self.db = cProfile.Profile()

    def start(self) -> None:
        if self.db is not None and self.executor is not None:
            self.executor.submit(self.db.enable).result()
        self.main.enable()

    def stop(self) -> None:
        self.main.disable()
        if self.db is not None and self.executor is not None:
            self.executor.submit(self.db.disable).result()
        self.main.dump_stats(f"{self.prefix}.main.prof")
        if self.db is not None:
            self.db.dump_stats(f"{self.prefix}.db.prof")


@contextlib.contextmanager
def profiled(queue: jobq.Queue, prefix: str | None) -> Iterator[None]:
    """cProfile (:class:`_Profilers`) around the block when ``prefix`` names
    where its stats go; nothing otherwise."""
    profilers = _Profilers(queue, prefix) if prefix else None
    if profilers:
        profilers.start()
    try:
        yield
    finally:
        if profilers:
            profilers.stop()


async def process(
    url: str, n: int, concurrency: int, timeout: float, profile: str | None = None
) -> dict[str, Any]:
    async with jobq.connect(url) as queue:
        await _preload(queue, n)
        processor = jobq.JobProcessor(queue, concurrency=concurrency)

        async def noop(job: jobq.Job[Any]) -> None:
            return None

        processor.handle(JOB_TYPE, noop)
        seconds = await drain(queue, processor, n, timeout, profile)
    return {"n": n, "concurrency": concurrency, "seconds": seconds, "rate": n / seconds}


async def process_shared(
    url: str, n: int, concurrency: int, timeout: float, start_at: float, profile: str | None = None
) -> dict[str, Any]:
    """One of several processes draining the same ``n`` prefilled jobs, each
    with its processor started at ``start_at`` (epoch seconds, so they start
    together), until the queue counts all ``n`` completed; ``mine`` is how
    many this process ran. Under cProfile with ``profile``."""
    from .cli_workers import unfinished  # cli_workers imports this module

    async with jobq.connect(url) as queue:
        processor = jobq.JobProcessor(queue, concurrency=concurrency)
        mine = 0

        async def noop(job: jobq.Job[Any]) -> None:
            nonlocal mine
            mine += 1

        processor.handle(JOB_TYPE, noop)
        await asyncio.sleep(max(0.0, start_at - time.time()))
        started = time.perf_counter()
        try:
            with profiled(queue, profile):
                await processor.start()
                while unfinished(url):
                    if time.perf_counter() - started > timeout:
                        raise RuntimeError(f"the jobs were not all completed within {timeout:g} s")
                    await asyncio.sleep(SHARED_POLL)
                seconds = time.perf_counter() - started
        finally:
            await processor.stop()
    return {"n": n, "mine": mine, "concurrency": concurrency, "seconds": seconds, "rate": n / seconds}


async def drain(
    queue: jobq.Queue, processor: jobq.JobProcessor, n: int, timeout: float, profile: str | None = None
) -> float:
    """Seconds ``processor`` takes to complete the ``n`` jobs waiting in
    ``queue``, from its start to the last completion; checks they all did
    (a table kept across runs holds the jobs earlier runs completed)."""
    before = (await queue.counts())[jobq.JobStatus.COMPLETED]
    done = asyncio.Event()
    completed = 0
    finished_at = 0.0

    def on_completed(event: jobq.Event) -> None:
        nonlocal completed, finished_at
        completed += 1
        if completed == n:
            finished_at = time.perf_counter()
            done.set()

    processor.on("job_completed", on_completed)
    started = time.perf_counter()
    try:
        with profiled(queue, profile):
            await processor.start()
            await asyncio.wait_for(done.wait(), timeout)
    except TimeoutError:
        raise RuntimeError(f"only {completed} of {n} jobs completed within {timeout:g} s") from None
    finally:
        await processor.stop()
    seconds = finished_at - started
    counts = await queue.counts()
    if counts[jobq.JobStatus.COMPLETED] - before != n:
        raise RuntimeError(f"expected {n} completed jobs, the queue counts {dict(counts)}")
    return seconds


# -- 4. enqueue-to-start latency -------------------------------------------


def _latency_handler(latencies: list[float], n: int, done: asyncio.Event) -> Callable[..., Any]:
    async def handler(job: jobq.Job[Any]) -> None:
        latencies.append(time.time() - job.data["t"])
        if len(latencies) >= n:
            done.set()

    return handler


async def latency_worker(url: str, n: int, concurrency: int, timeout: float) -> dict[str, Any]:
    """The worker side across processes: idles on the queue, reports each
    job's start minus the producer's ``time.time()`` in its payload (for a
    delayed job, the time it became due)."""
    async with jobq.connect(url) as queue:
        processor = jobq.JobProcessor(queue, concurrency=concurrency)
        latencies: list[float] = []
        done = asyncio.Event()
        processor.handle(JOB_TYPE, _latency_handler(latencies, n, done))
        await processor.start()
        await asyncio.sleep(0.2)  # let the claim loop find the queue empty and go idle
        _emit("READY")
        try:
            await asyncio.wait_for(done.wait(), timeout)
        finally:
            await processor.stop()
    return {"n": n, "latencies": latencies}


async def produce_steady(queue: jobq.Queue, n: int, rate: float, delay: float = 0.0) -> float:
    """Enqueues ``n`` jobs one at a time on a fixed schedule of ``rate`` per
    second (absolute slots, so a slow enqueue does not shift the rest), each
    due ``delay`` seconds later; returns the rate achieved."""
    interval = 1.0 / rate
    loop = asyncio.get_running_loop()
    first = loop.time()
    for i in range(n):
        wait = first + i * interval - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        if delay:
            # The payload holds the time the job is due, as the store
            # computes it: the enqueue's millisecond plus the delay.
            due = (int(time.time() * 1000) + round(delay * 1000)) / 1000
            await queue.enqueue(JOB_TYPE, {"t": due, "i": i}, delay=delay)
        else:
            await queue.enqueue(JOB_TYPE, {"t": time.time(), "i": i})
    elapsed = loop.time() - first
    return n / elapsed if elapsed > 0 else float("inf")


async def latency_inprocess(
    url: str, n: int, rate: float, concurrency: int, timeout: float
) -> dict[str, Any]:
    """Producer and processor in one event loop (the only way for memory://)."""
    async with jobq.connect(url) as queue:
        processor = jobq.JobProcessor(queue, concurrency=concurrency)
        latencies: list[float] = []
        done = asyncio.Event()
        processor.handle(JOB_TYPE, _latency_handler(latencies, n, done))
        await processor.start()
        await asyncio.sleep(0.2)
        try:
            achieved = await produce_steady(queue, n, rate)
            await asyncio.wait_for(done.wait(), timeout)
        finally:
            await processor.stop()
    return {"n": n, "latencies": latencies, "achieved_rate": achieved}
