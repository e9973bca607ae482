"""Counts that stay fast on a big table, the same on every backend: per
status (delayed apart), per queue and type of some statuses only, and
``stats`` leaving finished jobs out of its per-queue counts beyond its limit,
saying so."""

from __future__ import annotations

import pytest

import jobq
from jobq import admin
from jobq.admin import views


async def seeded(queue: jobq.Queue) -> None:
    await queue.enqueue("mail", 1, queue="q1")
    await queue.enqueue("mail", 2, queue="q1", delay=60)
    await queue.enqueue("sms", 3, queue="q2")
    done = await queue.enqueue("sms", 4, queue="q2", priority=9)
    claimed = await queue.dequeue()
    assert claimed is not None and claimed.id == done.id
    await queue.complete(claimed)


async def test_counts_tell_delayed_from_pending(queue: jobq.Queue) -> None:
    await seeded(queue)
    counts = await queue.counts()
    assert counts[jobq.JobStatus.PENDING] == 2 and counts[jobq.JobStatus.DELAYED] == 1
    assert counts[jobq.JobStatus.COMPLETED] == 1 and sum(counts.values()) == 4


async def test_summary_of_some_statuses(queue: jobq.Queue) -> None:
    await seeded(queue)
    rows = {(r.queue, r.type, r.status.value): r.count for r in await queue.summary(["pending", "delayed"])}
    assert rows == {("q1", "mail", "pending"): 1, ("q1", "mail", "delayed"): 1, ("q2", "sms", "pending"): 1}
    only_delayed = await queue.summary(["delayed"])
    assert [(r.queue, r.status.value) for r in only_delayed] == [("q1", "delayed")]
    assert [r.type for r in await queue.summary(["completed"])] == ["sms"]
    assert len(await queue.summary()) == 4
    with pytest.raises(jobq.InvalidOption):
        await queue.summary(["bogus"])


async def test_stats_breaks_down_unfinished_jobs_only_beyond_its_limit(
    queue: jobq.Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    await seeded(queue)
    whole = await admin.stats(queue)
    assert whole["breakdown"] == "all" and whole["by_queue"]["q2"] == {"pending": 1, "completed": 1}
    monkeypatch.setattr(views, "BREAKDOWN_LIMIT", 3)
    part = await admin.stats(queue)
    assert part["breakdown"] == "unfinished" and part["by_queue"]["q2"] == {"pending": 1}
    assert part["counts"]["completed"] == 1 and part["total"] == 4  # the status counts stay whole
    assert (await admin.stats(queue, finished=True))["by_queue"] == whole["by_queue"]
