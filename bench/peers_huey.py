"""huey with SQLite (``SqliteHuey``) through the same workloads as jobq.

Configuration: WAL (huey's default journal) with ``fsync=True``, i.e.
``PRAGMA synchronous = FULL``, the durability of jobq's default; a real huey
``Consumer`` with its defaults (one worker thread, polling an empty queue
every 0.1 s and backing off by 1.15x up to 10 s) running a task that does
nothing. huey has no batch enqueue, so it has no enqueue_many figure.

Every function here runs in a child interpreter (``bench.child``) except
:func:`produce_steady`, which the parent runs as the producer of the latency
workload. Importing this module needs huey: the runner checks
:func:`available` first.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
import time
from typing import Any

from .workloads import _emit

WARMUP = 20
WORKERS = 1  # huey's default: one worker thread


def available() -> bool:
    return importlib.util.find_spec("huey") is not None


class _State:
    """What the consumer's task reports to the child's main thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.target = 0
        self.count = 0
        self.finished_at = 0.0
        self.latencies: list[float] = []
        self.done = threading.Event()

    def reset(self, target: int) -> None:
        self.target, self.count, self.finished_at = target, 0, 0.0
        self.latencies.clear()
        self.done.clear()


_state = _State()


def make_huey(path: str, fsync: bool = True) -> Any:
    """A SqliteHuey on ``path`` with the two bench tasks registered (the
    consumer finds a task by name, so producer and consumer both call this)."""
    from huey import SqliteHuey

    huey = SqliteHuey("bench", filename=path, fsync=fsync)

    @huey.task(name="bench_noop")
    def noop(i: int) -> None:
        with _state.lock:
            _state.count += 1
            if _state.count == _state.target:
                _state.finished_at = time.perf_counter()
                _state.done.set()

    @huey.task(name="bench_latency")
    def latency(sent: float) -> None:
        took = time.time() - sent
        with _state.lock:
            _state.latencies.append(took)
            if len(_state.latencies) == _state.target:
                _state.done.set()

    huey.bench_noop = noop
    huey.bench_latency = latency
    return huey


def _consumer(huey: Any) -> Any:
    logging.getLogger("huey").setLevel(logging.WARNING)
    return huey.create_consumer(workers=WORKERS, worker_type="thread")


def enqueue_single(path: str, n: int) -> dict[str, Any]:
    huey = make_huey(path)
    for i in range(WARMUP):
        huey.bench_noop(-i)
    started = time.perf_counter()
    for i in range(n):
        huey.bench_noop(i)
    seconds = time.perf_counter() - started
    return {"n": n, "seconds": seconds, "rate": n / seconds, "workers": WORKERS}


def process(path: str, n: int, timeout: float) -> dict[str, Any]:
    # The fill is untimed; synchronous=OFF only to get it over with.
    filler = make_huey(path, fsync=False)
    for i in range(n):
        filler.bench_noop(i)
    filler.storage.close()
    huey = make_huey(path)
    _state.reset(n)
    consumer = _consumer(huey)
    started = time.perf_counter()
    consumer.start()
    try:
        if not _state.done.wait(timeout):
            raise RuntimeError(f"only {_state.count} of {n} huey tasks ran within {timeout:g} s")
    finally:
        consumer.stop(graceful=True)
    seconds = _state.finished_at - started
    left = huey.pending_count()
    if left:
        raise RuntimeError(f"{left} huey tasks still queued")
    return {"n": n, "seconds": seconds, "rate": n / seconds, "workers": WORKERS}


def latency_worker(path: str, n: int, timeout: float) -> dict[str, Any]:
    huey = make_huey(path)
    _state.reset(n)
    consumer = _consumer(huey)
    consumer.start()
    try:
        time.sleep(0.2)  # let the workers find the queue empty and start polling
        _emit("READY")
        if not _state.done.wait(timeout):
            raise RuntimeError(f"only {len(_state.latencies)} of {n} huey tasks ran within {timeout:g} s")
    finally:
        consumer.stop(graceful=True)
    return {"n": n, "latencies": list(_state.latencies), "workers": WORKERS}


def produce_steady(path: str, n: int, rate: float) -> float:
    """The producer side of the latency workload (in the parent): ``n``
    single enqueues at ``rate`` per second, on absolute slots."""
    huey = make_huey(path)
    interval = 1.0 / rate
    first = time.perf_counter()
    for i in range(n):
        wait = first + i * interval - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        huey.bench_latency(time.time())
    elapsed = time.perf_counter() - first
    huey.storage.close()
    return n / elapsed if elapsed > 0 else float("inf")
