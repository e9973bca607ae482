"""Claims beside jobs not yet due: the order of API.md (priority, then
``process_at``, then ``created_at``) holds whatever mix of delayed jobs of
other priorities the table holds, for one job, a batch, one queue, several
queues and excluded types. The SQL stores reach due jobs by priority
(jobq.store.sql.due); these pin what that must not change."""

from __future__ import annotations

import pytest
from contract_helpers import stored

import jobq


async def _backlog(
    queue: jobq.Queue, clock: jobq.FakeClock, *, queue_name: str = "default"
) -> dict[str, str]:
    """Jobs of priorities 9, 5, 1, 0 and -3, some due now, some later
    (delays 2 s and 4 s), enqueued out of order; ids by label."""
    ids: dict[str, str] = {}
    plan = [
        ("p9 later", 9, 4), ("p1 now", 1, 0), ("p9 soon", 9, 2), ("p5 now b", 5, 0),
        ("p-3 now", -3, 0), ("p5 later", 5, 4), ("p0 soon", 0, 2), ("p5 now a", 5, 0),
        ("p1 soon", 1, 2), ("p0 now", 0, 0),
    ]  # fmt: skip
    for label, priority, delay in plan:
        job = await queue.enqueue("t", label, priority=priority, delay=delay, queue=queue_name)
        ids[label] = job.id
        clock.advance(0.01)
    return ids


async def _drain(queue: jobq.Queue, **options: object) -> list[str]:
    order: list[str] = []
    while (job := await queue.dequeue(**options)) is not None:  # type: ignore[arg-type]
        order.append(job.data)
    return order


NOW = ["p5 now b", "p5 now a", "p1 now", "p0 now", "p-3 now"]
SOON = ["p9 soon", "p1 soon", "p0 soon"]


async def test_dequeue_skips_higher_priority_jobs_not_yet_due(
    queue: jobq.Queue, clock: jobq.FakeClock
) -> None:
    await _backlog(queue, clock)
    peeked = await queue.peek()
    assert peeked is not None and peeked.data == "p5 now b"
    assert await _drain(queue) == NOW
    clock.advance(2)
    assert await _drain(queue) == SOON
    clock.advance(2)
    assert await _drain(queue) == ["p9 later", "p5 later"]


async def test_a_batch_claim_takes_the_first_due_jobs_in_order(
    queue: jobq.Queue, clock: jobq.FakeClock
) -> None:
    await _backlog(queue, clock)
    clock.advance(2)
    first = await queue.claim(4)
    assert [job.data for job in first] == ["p9 soon", "p5 now b", "p5 now a", "p1 now"]
    rest = await queue.claim(10)
    assert [job.data for job in rest] == ["p1 soon", "p0 now", "p0 soon", "p-3 now"]
    assert await queue.claim(10) == []


async def test_one_named_queue_beside_another_queues_backlog(
    queue: jobq.Queue, clock: jobq.FakeClock
) -> None:
    await _backlog(queue, clock, queue_name="mail")
    other = await queue.enqueue("t", "other p20 now", priority=20, queue="sms")
    await queue.enqueue("t", "other p30 later", priority=30, delay=1, queue="sms")
    assert await _drain(queue, queues=["mail"]) == NOW
    claimed = await queue.dequeue(queues=["sms"])
    assert claimed is not None and claimed.id == other.id
    clock.advance(4)
    assert await _drain(queue, queues=["sms", "mail"]) == ["other p30 later", "p9 soon", "p9 later"] + [
        "p5 later", "p1 soon", "p0 soon"
    ]  # fmt: skip


async def test_excluded_types_are_passed_over_within_a_priority(
    queue: jobq.Queue, clock: jobq.FakeClock
) -> None:
    await queue.enqueue("skip", "p5 skipped", priority=5)
    await queue.enqueue("t", "p5 later", priority=5, delay=3)
    clock.advance(0.01)
    await queue.enqueue("t", "p5 now", priority=5)
    await queue.enqueue("t", "p2 now", priority=2)
    jobs = await queue.claim(5, exclude_types=["skip"])
    assert [job.data for job in jobs] == ["p5 now", "p2 now"]


async def test_a_job_becoming_due_is_claimed_before_lower_priorities(
    queue: jobq.Queue, clock: jobq.FakeClock
) -> None:
    for i in range(30):  # a backlog of scheduled sends of high priority
        await queue.enqueue("t", f"scheduled {i}", priority=8, delay=10 + i)
    await queue.enqueue("t", "low", priority=0)
    clock.advance(10)
    first = await queue.dequeue()
    assert first is not None and first.data == "scheduled 0"
    second = await queue.dequeue()
    assert second is not None and second.data == "low"
    assert await queue.dequeue() is None


async def test_size_and_next_due_beside_a_backlog(queue: jobq.Queue, clock: jobq.FakeClock) -> None:
    ids = await _backlog(queue, clock)
    due_at = {label: (await stored(queue, job_id)).process_at.timestamp() for label, job_id in ids.items()}
    assert await queue.size() == len(NOW)
    assert await queue.size(queues=["default"]) == len(NOW)
    assert await queue.size(queues=["default", "other"]) == len(NOW)
    assert await _drain(queue) == NOW
    assert await queue.size() == 0
    earliest = min(due_at[label] for label in [*SOON, "p9 later", "p5 later"])
    for queues in (None, ["default"], ["default", "other"]):
        assert await queue.next_due(queues=queues) == pytest.approx(earliest)
    assert await queue.next_due(queues=["other"]) is None
    clock.advance(2)
    assert await queue.size() == len(SOON)
