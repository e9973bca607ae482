"""Every backend's calls are timed by the one wrapper the queue puts on its
store (jobq.store.instrumented)."""

from __future__ import annotations

import jobq
from jobq.store.instrumented import timings


async def test_the_store_calls_of_a_queue_are_timed(queue: jobq.Queue) -> None:
    figures = timings(queue.store)
    assert figures is not None and figures.backend == queue.store.name
    before = figures.snapshot()
    await queue.enqueue("t", 1)
    job = await queue.dequeue()
    assert job is not None
    await queue.complete(job)
    await queue.get_job(job.id)
    after = figures.snapshot()

    def calls(verb: str) -> int:
        return (after[verb].calls if verb in after else 0) - (before[verb].calls if verb in before else 0)

    assert calls("insert") == 1
    assert calls("claim") == 1
    assert calls("settle") + calls("settle_and_claim") == 1
    assert calls("get") >= 1
    assert all(t.seconds >= t.max_seconds > 0 and t.errors == 0 for t in after.values())
