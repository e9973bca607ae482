"""The dashboard's store reads run off the event loop: while an overview
waits on a slow read, the same server still answers a static file."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

import jobq
from jobq.store.sqlite.connection import Database

SLOW_READ = 0.3  # seconds each read of the store is made to take


@pytest.fixture
def slow_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every SQLite read sleeps first, on whatever thread runs it (a large
    table, in effect): on the event loop it would hold every request."""
    original = Database.read

    async def slow_read(self: Database, do: Any) -> Any:
        def slow(conn: Any) -> Any:
            time.sleep(SLOW_READ)
            return do(conn)

        return await original(self, slow)

    monkeypatch.setattr(Database, "read", slow_read)


async def one_waiting_one_completed(queue: jobq.Queue) -> None:
    """Queue ``q1`` holds one waiting job and one completed."""
    await queue.enqueue("mail", {}, queue="q1")
    done = await queue.enqueue("mail", {}, queue="q1", priority=5)
    claimed = await queue.dequeue()
    assert claimed is not None and claimed.id == done.id
    await queue.complete(claimed)


async def test_static_file_served_while_the_overview_reads(
    client: Any, web_queue: jobq.Queue, slow_reads: None
) -> None:
    await web_queue.enqueue("mail", {"to": "a@example.com"})
    overview = asyncio.create_task(client.get("/api/overview"))
    await asyncio.sleep(0.05)  # the overview is in its first read
    static = await client.get("/static/app.js")
    assert static.status_code == 200
    assert not overview.done(), "the static file waited for the overview's reads"
    answer = await overview
    assert answer.status_code == 200
    assert answer.json()["counts"]["pending"] == 1


async def test_reads_outside_the_dashboard_stay_on_the_callers_thread(tmp_path: Any) -> None:
    """Outside the dashboard a read runs inline (no thread hand-off for a
    worker's short reads); inside reads_off_loop, on the reader thread."""
    import threading

    from jobq.reads import reads_off_loop

    async with jobq.connect(f"sqlite:///{tmp_path / 'q.db'}") as queue:
        db = queue.store.db  # type: ignore[attr-defined]
        here = threading.get_ident()
        assert await db.read(lambda conn: threading.get_ident()) == here
        with reads_off_loop():
            assert await db.read(lambda conn: threading.get_ident()) != here
            assert (await queue.counts())[jobq.JobStatus.PENDING] == 0


async def test_slow_figures_are_labelled_with_their_age(
    client: Any, web_queue: jobq.Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once per-queue counts are slow to count (here: always), the overview
    shows the last ones with their age (the status counts too, recounted
    more often: see the test below)."""
    import jobq.admin.figures

    monkeypatch.setattr(jobq.admin.figures, "FRESH_ENOUGH", -1.0)
    await web_queue.enqueue("mail", {}, queue="q1")
    first = (await client.get("/api/overview")).json()
    assert first["figures_age"] == 0.0 and first["by_queue"]["q1"]["pending"] == 1
    await web_queue.enqueue("mail", {}, queue="q1")
    second = (await client.get("/api/overview")).json()
    assert second["counts"]["pending"] == 1 and second["counts_age"] is not None  # the last count
    assert second["by_queue"]["q1"]["pending"] == 1 and second["figures_age"] is not None  # the last count
    assert "as counted 0 s ago" in (await client.get("/")).text


async def test_while_the_first_count_runs_the_overview_shows_unfinished_jobs(
    client: Any, web_queue: jobq.Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An overview never waits long for the first count per queue and type:
    it answers with the waiting and running jobs alone, and says so."""
    import jobq.admin.figures

    monkeypatch.setattr(jobq.admin.figures, "FIRST_WAIT", 0.0)
    await one_waiting_one_completed(web_queue)
    first = (await client.get("/api/overview")).json()
    assert first["breakdown"] == "unfinished" and first["by_queue"]["q1"] == {"pending": 1}
    assert first["counts"]["completed"] == 1  # the status counts stay whole
    monkeypatch.setattr(jobq.admin.figures, "FIRST_WAIT", 5.0)
    later = (await client.get("/api/overview")).json()
    assert later["breakdown"] == "all" and later["by_queue"]["q1"] == {"pending": 1, "completed": 1}


async def test_a_slow_read_off_the_loop_does_not_hold_the_others(tmp_path: Any) -> None:
    """The overview's count in the background must not make the next
    overview's reads wait: reads off the loop run side by side."""
    import threading

    from jobq.reads import reads_off_loop

    async with jobq.connect(f"sqlite:///{tmp_path / 'q.db'}") as queue:
        await queue.enqueue("t", 1)
        db = queue.store.db  # type: ignore[attr-defined]
        release = threading.Event()

        def stuck(conn: Any) -> int:
            release.wait(10)
            return 0

        with reads_off_loop():
            slow = asyncio.create_task(db.read(stuck))
            await asyncio.sleep(0.05)
            try:
                assert (await queue.counts())[jobq.JobStatus.PENDING] == 1
                assert not slow.done()
            finally:
                release.set()
            assert await slow == 0


async def test_the_queue_page_and_a_scrape_read_the_background_counts(
    client: Any, web_queue: jobq.Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The queue page and /metrics take the counts per queue from the
    overview's background count (no count of every job per page or scrape),
    and the queue page's charts from a background count of their own; while
    a first count runs they say what they show."""
    import jobq.admin.figures

    monkeypatch.setattr(jobq.admin.figures, "FIRST_WAIT", 0.0)
    await one_waiting_one_completed(web_queue)
    first = (await client.get("/queues/q1")).text
    assert "waiting and running jobs only, while the finished ones are counted" in first
    assert 'data-count="pending">1<' in first and 'data-count="completed">0<' in first
    assert "attempts are being counted" in first
    monkeypatch.setattr(jobq.admin.figures, "FIRST_WAIT", 5.0)
    monkeypatch.setattr(jobq.admin.figures, "FRESH_ENOUGH", -1.0)  # from now on, every count is slow
    later = (await client.get("/queues/q1")).text
    assert 'data-count="completed">1<' in later and 'id="fig-completed">1<' in later
    assert "counts as counted 0 s ago" in later and "charts as counted 0 s ago" in later
    scrape = (await client.get("/metrics")).text
    assert 'jobq_jobs{queue="q1",status="completed"} 1.0' in scrape
    assert 'jobq_jobs{queue="q1",status="pending"} 1.0' in scrape
    # A new job shows in the next background count, not in this scrape.
    await web_queue.enqueue("mail", {}, queue="q1")
    assert 'jobq_jobs{queue="q1",status="pending"} 1.0' in (await client.get("/metrics")).text


async def test_slow_status_counts_come_from_the_background_labelled(
    client: Any, web_queue: jobq.Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once counting jobs per status is slow, the overview answers with the
    last count and its age, recounted every few seconds in the background,
    while a paused queue shows at once."""
    import jobq.admin.figures

    monkeypatch.setattr(jobq.admin.figures, "FRESH_ENOUGH", -1.0)  # every count is slow
    await web_queue.enqueue("mail", {}, queue="q1")
    first = (await client.get("/api/overview")).json()
    assert first["counts"]["pending"] == 1 and first["counts_age"] == 0.0  # the first count is waited for
    await web_queue.enqueue("mail", {}, queue="q1")
    await web_queue.pause("q1")
    second = (await client.get("/api/overview")).json()
    assert second["counts"]["pending"] == 1 and second["counts_age"] is not None  # the last count, labelled
    assert "q1" in second["paused"]  # read for every request
    assert "jobs per status as counted 0 s ago" in (await client.get("/")).text


async def test_on_a_big_table_the_first_overview_does_not_wait_for_the_whole_count(
    client: Any, web_queue: jobq.Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beyond BREAKDOWN_LIMIT jobs, the first overview starts the count per
    queue and type after the jobs per status (the two would slow each
    other) and answers without waiting for it; the next polls fill it in."""
    import jobq.admin.figures
    import jobq.admin.views

    monkeypatch.setattr(jobq.admin.views, "BREAKDOWN_LIMIT", 0)  # every table is big
    monkeypatch.setattr(jobq.admin.figures, "FIRST_WAIT", 5.0)  # would be waited for, on a small one
    await one_waiting_one_completed(web_queue)
    first = (await client.get("/api/overview")).json()
    assert first["breakdown"] == "unfinished" and first["by_queue"]["q1"] == {"pending": 1}
    assert (first["counts"]["pending"], first["counts"]["completed"]) == (1, 1)
    for _ in range(50):
        later = (await client.get("/api/overview")).json()
        if later["breakdown"] == "all":
            break
        await asyncio.sleep(0.05)
    assert later["breakdown"] == "all" and later["by_queue"]["q1"] == {"pending": 1, "completed": 1}
