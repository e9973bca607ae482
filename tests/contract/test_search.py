"""Searching jobs: by id, unique key, and text in the payload or the error,
alongside the other filters of list_jobs, the same on every backend."""

from __future__ import annotations

from typing import Any

import pytest

import jobq


async def seeded(queue: jobq.Queue) -> dict[str, jobq.Job[Any]]:
    jobs = {
        "alice": await queue.enqueue("send", {"to": "Alice@example.com", "body": "Hello 100% sure"}, queue="mail"),
        "bob": await queue.enqueue("send", {"to": "bob@example.com"}, queue="mail", unique_key="order-7"),
        "sms": await queue.enqueue("text", {"to": "+8210"}, queue="sms"),
    }
    failing = await queue.enqueue("charge", {"card": "4242_x"}, max_attempts=1)
    claimed = await queue.dequeue(queues=["default"])
    assert claimed is not None and claimed.id == failing.id
    await queue.fail(claimed, "Card DECLINED by the bank")
    jobs["failed"] = failing
    return jobs


def ids(page: Any) -> set[str]:
    return {job.id for job in page.jobs}


async def test_search_by_text_in_payload_or_error(queue: jobq.Queue) -> None:
    jobs = await seeded(queue)
    page = await queue.list_jobs(text="alice@EXAMPLE")  # case aside
    assert ids(page) == {jobs["alice"].id} and page.total == 1
    assert ids(await queue.list_jobs(text="example.com")) == {jobs["alice"].id, jobs["bob"].id}
    assert ids(await queue.list_jobs(text="declined")) == {jobs["failed"].id}  # the error
    assert ids(await queue.list_jobs(text="100%")) == {jobs["alice"].id}  # wildcards are plain text
    assert ids(await queue.list_jobs(text="4242_")) == {jobs["failed"].id}
    assert ids(await queue.list_jobs(text="0% s")) == {jobs["alice"].id}
    assert (await queue.list_jobs(text="%")).total == 1
    assert (await queue.list_jobs(text="_")).total == 1
    assert (await queue.list_jobs(text="nowhere")).total == 0
    # With the other filters.
    assert ids(await queue.list_jobs(text="example", queue="sms")) == set()
    assert ids(await queue.list_jobs(text="example", status="pending", type="send")) == {
        jobs["alice"].id,
        jobs["bob"].id,
    }


async def test_search_by_id_and_unique_key(queue: jobq.Queue) -> None:
    jobs = await seeded(queue)
    assert ids(await queue.list_jobs(ids=[jobs["sms"].id])) == {jobs["sms"].id}
    assert ids(await queue.list_jobs(ids=jobs["sms"].id)) == {jobs["sms"].id}
    assert (await queue.list_jobs(ids=["no-such-id", "nul\x00id"])).total == 0
    assert ids(await queue.list_jobs(unique_key="order-7")) == {jobs["bob"].id}
    assert (await queue.list_jobs(unique_key="order-8")).total == 0


@pytest.mark.parametrize("bad", [{"text": ""}, {"text": "x" * 1001}, {"text": "a\x00"}, {"unique_key": 5}, {"ids": [1]}])
async def test_bad_searches_are_refused(queue: jobq.Queue, bad: dict[str, Any]) -> None:
    with pytest.raises(jobq.InvalidOption):
        await queue.list_jobs(**bad)
