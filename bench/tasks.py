"""The task API's figures, each beside its low-level twin (see
:mod:`bench.workloads`): deferring one job per call (``enqueue``), and one
processor draining a full queue of task jobs (``process``). The task takes
two typed arguments and returns nothing, as the low-level handler does, so
the difference is what the task API adds: the signature check and
conversion at defer time, the decoding of arguments at run time."""

from __future__ import annotations

import time
from typing import Any

import jobq

from .workloads import PRELOAD_BATCH, WARMUP, drain


def _app(url: str) -> tuple[jobq.App, jobq.Task[[int, str], None]]:
    app = jobq.App(url)

    @app.task(name="bench.task")
    async def noop(i: int, note: str = "") -> None:
        return None

    return app, noop


async def enqueue_single(url: str, n: int) -> dict[str, Any]:
    app, task = _app(url)
    for i in range(WARMUP):
        await task.defer(-i)
    started = time.perf_counter()
    for i in range(n):
        await task.defer(i)
    seconds = time.perf_counter() - started
    await app.close()
    return {"n": n, "seconds": seconds, "rate": n / seconds}


async def process(url: str, n: int, concurrency: int, timeout: float) -> dict[str, Any]:
    app, task = _app(url)
    for start in range(0, n, PRELOAD_BATCH):
        await app.defer_many([task.job(i) for i in range(start, min(n, start + PRELOAD_BATCH))])
    queue = await app.open()
    seconds = await drain(queue, app.processor(queue, concurrency=concurrency), n, timeout)
    await app.close()
    return {"n": n, "concurrency": concurrency, "seconds": seconds, "rate": n / seconds}
