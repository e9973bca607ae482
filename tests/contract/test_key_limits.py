"""Per-key limits: at most N starts per window, or N running, per value of a
metadata field, enforced by the store across processes, fair between keys;
a job held back stays waiting and spends no attempt."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from collections import Counter
from typing import Any

import pytest

import jobq
from jobq import JobStatus

SEND = "send_message"


async def fill(queue: jobq.Queue, counts: dict[str, int], *, priority: dict[str, int] | None = None) -> None:
    jobs = [
        jobq.NewJob(SEND, i, priority=(priority or {}).get(key, 0), metadata={"provider": key})
        for key, n in counts.items()
        for i in range(n)
    ]
    await queue.enqueue_many(jobs)


def by_key(jobs: list[jobq.Job[Any]]) -> Counter[str]:
    return Counter(j.metadata.get("provider", "-") for j in jobs)


async def test_rate_bound_and_fairness_in_one_claim(queue: jobq.Queue, clock: jobq.FakeClock) -> None:
    limit = jobq.KeyLimit(type=SEND, key="provider", rate=5, per=1.0)
    # "busy" has a big backlog at a higher priority: it must not starve the others.
    await fill(queue, {"busy": 100, "a": 10, "b": 10}, priority={"busy": 9})
    got = await queue.claim(50, limits=[limit])
    assert by_key(got) == {"busy": 5, "a": 5, "b": 5}
    assert await queue.claim(50, limits=[limit]) == []
    clock.advance(0.9)
    assert await queue.claim(50, limits=[limit]) == []  # a sliding window
    clock.advance(0.2)
    assert by_key(await queue.claim(50, limits=[limit])) == {"busy": 5, "a": 5, "b": 5}
    # Held-back jobs stayed waiting, with no attempt spent.
    waiting = await queue.list_jobs(status=JobStatus.PENDING, limit=1000)
    assert waiting.total == 90 and all(j.attempts == 0 for j in waiting.jobs)


async def test_limit_applies_to_its_type_and_field_only(queue: jobq.Queue) -> None:
    limit = jobq.KeyLimit(type=SEND, key="provider", rate=1, per=60)
    await fill(queue, {"a": 3})
    await queue.enqueue_many([jobq.NewJob("other", i, metadata={"provider": "a"}) for i in range(3)])
    await queue.enqueue_many([jobq.NewJob(SEND, i) for i in range(3)])  # no provider field
    got = await queue.claim(20, limits=[limit])
    assert Counter((j.type, j.metadata.get("provider")) for j in got) == {
        (SEND, "a"): 1,
        ("other", "a"): 3,
        (SEND, None): 3,
    }


async def test_concurrency_per_key(queue: jobq.Queue) -> None:
    limit = jobq.KeyLimit(key="tenant", concurrency=2)
    await queue.enqueue_many(
        [jobq.NewJob("t", i, metadata={"tenant": t}) for t in ("x", "y") for i in range(5)]
    )
    got = await queue.claim(10, limits=[limit])
    assert Counter(j.metadata["tenant"] for j in got) == {"x": 2, "y": 2}
    assert await queue.claim(10, limits=[limit]) == []
    await queue.complete(next(j for j in got if j.metadata["tenant"] == "x"))
    more = await queue.claim(10, limits=[limit])
    assert [j.metadata["tenant"] for j in more] == ["x"]


@pytest.mark.shared_store
async def test_limits_hold_across_connections(make_queue: Any, backend: str, clock: jobq.FakeClock) -> None:
    first, second = await make_queue(clock=clock), await make_queue(clock=clock)
    limits = [jobq.KeyLimit(key="provider", rate=4, per=1.0), jobq.KeyLimit(key="provider", concurrency=3)]
    await fill(first, {"a": 20, "b": 20})
    got = await first.claim(2, limits=limits) + await second.claim(10, limits=limits) + await first.claim(10, limits=limits)
    assert by_key(got) == {"a": 3, "b": 3}  # concurrency 3 binds first
    for job in got:
        await (first if job.metadata["provider"] == "a" else second).complete(job)
    assert by_key(await second.claim(10, limits=limits)) == {"a": 1, "b": 1}  # then the rate: 4 per second


def test_key_limit_is_checked() -> None:
    with pytest.raises(jobq.InvalidOption):
        jobq.KeyLimit(key="provider")
    with pytest.raises(jobq.InvalidOption):
        jobq.KeyLimit(key="", rate=1)
    with pytest.raises(jobq.InvalidOption):
        jobq.KeyLimit(key="p", rate=0)
    with pytest.raises(jobq.InvalidOption):
        jobq.KeyLimit(key="p", concurrency=2, per=0)
    with pytest.raises(jobq.InvalidOption):
        jobq.JobProcessor(jobq.MemoryQueue(), limits=["nope"])  # type: ignore[list-item]


# -- the processor, across OS processes, measured ------------------------------

RATE, PER = 5, 0.5  # starts per key per window (seconds)
ENOUGH = RATE * 4  # "busy" starts after which the workers stop (they run until then, however slow)
DEADLINE = 120.0  # seconds; generous, a pass never comes near it
WORKERS = 2


def _limits() -> list[jobq.KeyLimit]:
    return [jobq.KeyLimit(type=SEND, key="provider", rate=RATE, per=PER)]


async def _work(queue: jobq.Queue, stopped: Any) -> None:
    """A processor on ``queue`` until ``await stopped()`` returns."""
    processor = jobq.JobProcessor(queue, concurrency=8, limits=_limits(), poll_interval=0.2)

    @processor.handler(SEND)
    async def send(job: jobq.Job[Any]) -> None:
        await asyncio.sleep(0.005)

    await processor.start()
    await stopped()
    await processor.stop()


def _worker(url: str, start: Any, stop: Any) -> None:
    async def main() -> None:
        queue = await jobq.connect(url)
        try:
            start.wait()
            await _work(queue, lambda: asyncio.to_thread(stop.wait, DEADLINE))
        finally:
            await queue.close()

    asyncio.run(main())


async def _busy_started(queue: jobq.Queue) -> int:
    page = await queue.list_jobs(status=JobStatus.COMPLETED, limit=1000)
    return sum(job.metadata["provider"] == "busy" for job in page.jobs)


async def _until_enough(queue: jobq.Queue) -> None:
    deadline = time.monotonic() + DEADLINE
    while await _busy_started(queue) < ENOUGH:
        assert time.monotonic() < deadline, f"fewer than {ENOUGH} busy jobs ran in {DEADLINE:g} s"
        await asyncio.sleep(0.1)


async def test_processors_bound_and_fairness_measured(backend: str, queue_url: str, make_queue: Any) -> None:
    """Worker processes (or, in memory, two processors) with 5 starts per
    0.5 s per provider; "busy" has a huge, higher-priority backlog. Measured
    from the stored start times: no provider ever has more than 5 starts in
    any 0.5 s, and "a" and "b" get as many starts as "busy"."""
    queue: jobq.Queue = await make_queue()
    await fill(queue, {"busy": 400, "a": 60, "b": 60}, priority={"busy": 9})
    if backend == "memory":
        enough = asyncio.ensure_future(_until_enough(queue))
        await asyncio.gather(*(_work(queue, lambda: asyncio.shield(enough)) for _ in range(2)))
        await enough  # its failure, if it timed out
    else:
        ctx = multiprocessing.get_context("spawn")
        start, stop = ctx.Event(), ctx.Event()
        procs = [ctx.Process(target=_worker, args=(queue_url, start, stop)) for _ in range(WORKERS)]
        for proc in procs:
            proc.start()
        start.set()
        try:
            await _until_enough(queue)
        finally:
            stop.set()
            for proc in procs:
                await asyncio.to_thread(proc.join, DEADLINE)
        assert [proc.exitcode for proc in procs] == [0] * WORKERS
    page = await queue.list_jobs(status=JobStatus.COMPLETED, limit=1000)
    starts: dict[str, list[float]] = {}
    for job in page.jobs:
        assert job.started_at is not None and job.attempts == 0
        starts.setdefault(job.metadata["provider"], []).append(job.started_at.timestamp())
    first = min(t for ts in starts.values() for t in ts)
    windows = int((max(t for ts in starts.values() for t in ts) - first) / PER) + 1
    table = {key: [0] * windows for key in ("busy", "a", "b")}
    for key, ts in starts.items():
        ts.sort()
        for t in ts:
            table[key][min(int((t - first) / PER), windows - 1)] += 1
        # The bound, in every sliding window: RATE + 1 starts span PER or more.
        for i in range(len(ts) - RATE):
            assert ts[i + RATE] - ts[i] >= PER - 0.002, (key, ts[i : i + RATE + 1])
    print(f"\n[{backend}] starts per provider per {PER} s window:", {k: v for k, v in table.items()})
    totals = {key: len(starts.get(key, [])) for key in table}
    assert totals["busy"] >= RATE * 3  # it ran at its quota for several windows
    for key in ("a", "b"):
        assert totals[key] >= totals["busy"] - RATE, totals  # fair: within one window's quota
