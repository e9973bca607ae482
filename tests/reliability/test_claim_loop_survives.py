"""A worker whose claim meets an unexpected error keeps claiming.

Regression, found while looking into a kill-point run (bench/chaos/kill_points.py)
in which victim workers stayed alive without ever reaching their kill point:
a worker whose claim raised a non-jobq exception stayed alive (lease
renewals and sweeps went on) but never claimed again, and said nothing until
it was stopped. Only ``JobqError`` was caught around the claim; anything
else (a ``sqlite3.DatabaseError`` that is not an ``OperationalError``, a
driver error not classified as transient, a bug) ended the claim task
silently. Now the claim loop logs it with its traceback and keeps claiming.
"""

from __future__ import annotations

import asyncio
from typing import Any

import jobq


async def test_an_unexpected_claim_error_does_not_stop_the_worker_for_good() -> None:
    queue = jobq.MemoryQueue()
    processor = jobq.JobProcessor(queue, concurrency=2, poll_interval=0.05)
    done: list[str] = []
    processor.handle("t", lambda job: done.append(job.id))
    failures = {"left": 1}

    def failing_once(method: Any) -> Any:
        async def call(*args: Any, **kwargs: Any) -> Any:
            if failures["left"]:
                failures["left"] -= 1
                raise RuntimeError("an error jobq does not know")
            return await method(*args, **kwargs)

        return call

    # Whichever store method the processor claims through fails once.
    for name in ("claim", "settle_and_claim"):
        if hasattr(queue.store, name):
            setattr(queue.store, name, failing_once(getattr(queue.store, name)))
    await processor.start()
    try:
        job = await queue.enqueue("t", {})
        for _ in range(100):  # up to 5 s; a worker that still claims takes well under one
            if done:
                break
            await asyncio.sleep(0.05)
        assert done == [job.id]
    finally:
        await processor.stop()  # the claim loop survived: stop() has no error to raise
