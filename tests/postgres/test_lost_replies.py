"""Lost replies: a statement commits on the server and its answer never
reaches the worker (``pgproxy.LostReplyProxy`` drops it and breaks the
connection). The store retries the verb; the retry must settle on what the
first attempt did, not report a failure that did not happen: an insert is
stored once, and a completion (alone, or with the next claim as a worker
sends it) is reported written, not ``LeaseLost``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from pgproxy import LostReplyProxy

import jobq
from jobq import JobStatus


@pytest.fixture
def proxy(server_url: str) -> Iterator[LostReplyProxy]:
    parts = urlsplit(server_url)
    started = LostReplyProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    try:
        yield started
    finally:
        started.close()


@pytest.fixture
async def queue(proxy: LostReplyProxy, pg_url: str) -> Any:
    opened = jobq.PostgresQueue(proxy.url(pg_url), lease=30)
    try:
        yield opened
    finally:
        await opened.close()


async def test_an_insert_whose_reply_is_lost_is_stored_once(queue: jobq.Queue, proxy: LostReplyProxy) -> None:
    await queue.size()  # connected, schema made
    proxy.drop_next_reply()
    job = await queue.enqueue("t", {"n": 1})
    assert proxy.dropped == 1
    page = await queue.list_jobs(limit=10)
    assert [j.id for j in page.jobs] == [job.id]
    proxy.drop_next_reply()
    jobs = await queue.enqueue_many([jobq.NewJob("t", {"n": i}) for i in range(3)])
    assert proxy.dropped == 2
    assert (await queue.list_jobs(limit=10)).total == 4 and len({j.id for j in jobs}) == 3


async def test_a_completion_whose_reply_is_lost_is_reported_written(
    queue: jobq.Queue, proxy: LostReplyProxy
) -> None:
    job = await queue.enqueue("t", 1)
    held = await queue.dequeue()
    assert held is not None and held.id == job.id
    proxy.drop_next_reply()
    await queue.complete(held, "done")  # not LeaseLost: the first attempt wrote it
    assert proxy.dropped == 1
    stored = await queue.get_job(job.id)
    assert stored is not None and stored.status is JobStatus.COMPLETED and stored.result == "done"


async def test_a_completion_with_the_next_claim_whose_reply_is_lost_is_reported_written(
    queue: jobq.Queue, proxy: LostReplyProxy
) -> None:
    """The worker's own path (complete_and_claim, one statement): the retry
    reports the completion written; the first attempt's claim, unseen, is
    left to run out and be rescued."""
    first, *others = await queue.enqueue_many([jobq.NewJob("t", i) for i in range(3)])
    held = await queue.dequeue()
    assert held is not None and held.id == first.id
    proxy.drop_next_reply()
    errors, claimed = await queue.complete_and_claim([(held, "done")], 1)
    assert proxy.dropped == 1
    assert errors == [None]
    stored = await queue.get_job(first.id)
    assert stored is not None and stored.status is JobStatus.COMPLETED and stored.result == "done"
    assert len(claimed) == 1 and claimed[0].id in {j.id for j in others}


@pytest.mark.parametrize("retry", [True, False])
async def test_a_failure_whose_reply_is_lost_is_reported_written(
    queue: jobq.Queue, proxy: LostReplyProxy, retry: bool
) -> None:
    job = await queue.enqueue("t", 1, max_attempts=3)
    held = await queue.dequeue()
    assert held is not None
    proxy.drop_next_reply()
    after = await queue.fail(held, "it broke", jobq.RetryDirective(retry, 60))  # not LeaseLost
    assert proxy.dropped == 1
    assert after.status is (JobStatus.DELAYED if retry else JobStatus.FAILED) and after.attempts == 1
    stored = await queue.get_job(job.id)
    assert stored is not None and stored.error == "it broke" and stored.attempts == 1


async def test_a_cancellation_whose_reply_is_lost_is_reported_written(
    queue: jobq.Queue, proxy: LostReplyProxy
) -> None:
    job = await queue.enqueue("t", 1)
    held = await queue.dequeue()
    assert held is not None
    proxy.drop_next_reply()
    done = await queue.cancel_running(held, "not wanted")  # not LeaseLost
    assert proxy.dropped == 1 and done.status is JobStatus.CANCELLED
    stored = await queue.get_job(job.id)
    assert stored is not None and stored.status is JobStatus.CANCELLED
