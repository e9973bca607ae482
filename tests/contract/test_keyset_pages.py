"""Paging through jobs by cursor (``list_jobs(after=page.next_cursor)``):
every job once, in order, on every backend, with filters kept, ties on
``created_at`` broken by id, and jobs added meanwhile not shifting pages."""

from __future__ import annotations

from typing import Any

import pytest

import jobq


async def walk(q: jobq.Queue, **filters: Any) -> list[str]:
    """Every page's ids, following the cursors from the first page."""
    seen: list[str] = []
    page = await q.list_jobs(**filters)
    while True:
        seen += [job.id for job in page.jobs]
        if page.next_cursor is None:
            return seen
        page = await q.list_jobs(**filters, after=page.next_cursor)


async def test_cursor_pages_cover_every_job_once_in_order(queue: jobq.Queue, clock: jobq.FakeClock) -> None:
    made = []
    for i in range(11):
        made.append(await queue.enqueue("t", i, queue="even" if i % 2 == 0 else "odd"))
        if i % 3 == 0:
            clock.advance(1)  # the others share a created_at: ties go by id
    by_key = sorted(made, key=lambda j: (j.created_at, j.id))
    newest = [j.id for j in reversed(by_key)]
    assert await walk(queue, limit=3) == newest
    assert await walk(queue, limit=3, order="oldest") == newest[::-1]
    assert await walk(queue, limit=11) == newest  # one full page: no next
    assert await walk(queue, limit=2, queue="even") == [j.id for j in reversed(by_key) if j.queue == "even"]


async def test_next_cursor_only_when_more_follow(queue: jobq.Queue) -> None:
    for i in range(4):
        await queue.enqueue("t", i)
    first = await queue.list_jobs(limit=2)
    assert first.next_cursor is not None and first.total == 4
    second = await queue.list_jobs(limit=2, after=first.next_cursor)
    assert len(second.jobs) == 2 and second.next_cursor is None and second.total == 4
    assert (await queue.list_jobs(limit=4)).next_cursor is None


async def test_new_jobs_do_not_shift_cursor_pages(queue: jobq.Queue, clock: jobq.FakeClock) -> None:
    for i in range(4):
        await queue.enqueue("t", i)
        clock.advance(1)
    first = await queue.list_jobs(limit=2)
    await queue.enqueue("t", "newer")  # lands before the first page, not on the second
    second = await queue.list_jobs(limit=2, after=first.next_cursor)
    assert [job.data for job in second.jobs] == [1, 0]


@pytest.mark.parametrize("cursor", ["", "x", "12", ".id", "1.5x.", "١٢.id", 12, "99999999999999999999.a"])
async def test_bad_cursor_is_invalid_option(queue: jobq.Queue, cursor: Any) -> None:
    if cursor == "1.5x.":  # a well-formed cursor naming no job: an empty page past it, not an error
        await queue.list_jobs(after=cursor)
        return
    with pytest.raises(jobq.InvalidOption):
        await queue.list_jobs(after=cursor)
