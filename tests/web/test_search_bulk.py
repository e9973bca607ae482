"""Searching the job list, bulk actions through their confirmation, and the
message after every action."""

from __future__ import annotations

from typing import Any

import pytest
from webtest_helpers import ORIGIN, csrf_of, failed_job

import jobq

pytestmark = pytest.mark.asyncio


async def test_search_the_job_list(client: Any, web_queue: jobq.Queue) -> None:
    alice = await web_queue.enqueue("send", {"to": "alice@example.com"}, queue="mail", unique_key="u-1")
    await web_queue.enqueue("send", {"to": "bob@example.com"}, queue="mail")
    failed = await failed_job(web_queue, "charge")
    assert [j["id"] for j in (await client.get("/api/jobs?text=ALICE")).json()["jobs"]] == [alice.id]
    assert [j["id"] for j in (await client.get("/api/jobs?text=provider+said")).json()["jobs"]] == [failed.id]
    assert [j["id"] for j in (await client.get(f"/api/jobs?id={alice.id}")).json()["jobs"]] == [alice.id]
    assert [j["id"] for j in (await client.get("/api/jobs?unique_key=u-1")).json()["jobs"]] == [alice.id]
    assert (await client.get("/api/jobs?text=example&queue=mail")).json()["total"] == 2
    page = (await client.get("/jobs?text=alice")).text
    assert alice.id in page and 'value="alice"' in page and "bob@" not in page
    assert (await client.get("/api/jobs?text=" + "x" * 1001)).status_code == 400


async def test_bulk_retry_of_ticked_jobs_asks_first_then_says_what_it_did(
    client: Any, web_queue: jobq.Queue
) -> None:
    jobs = [await failed_job(web_queue, f"t{n}") for n in range(3)]
    page = (await client.get("/jobs?status=failed")).text
    assert 'id="bulk-form"' in page and page.count('name="job" value="') == 3
    csrf = csrf_of(page)
    form = {"csrf_token": csrf, "action": "retry", "status": "failed", "job": [jobs[0].id, jobs[1].id]}
    confirm = await client.post("/jobs/bulk", data=form, headers={"Origin": ORIGIN})
    assert confirm.status_code == 200 and "Retry 2 jobs?" in confirm.text and 'name="confirmed"' in confirm.text
    assert (await web_queue.get_job(jobs[0].id)).status is jobq.JobStatus.FAILED  # type: ignore[union-attr]
    done = await client.post("/jobs/bulk", data={**form, "confirmed": "1"}, headers={"Origin": ORIGIN})
    assert done.status_code == 303 and done.headers["location"] == "/jobs?status=failed"
    statuses = [(await web_queue.get_job(j.id)).status for j in jobs]  # type: ignore[union-attr]
    assert statuses == [jobq.JobStatus.PENDING, jobq.JobStatus.PENDING, jobq.JobStatus.FAILED]
    after = await client.get("/jobs?status=failed")
    assert 'id="flash"' in after.text and "Retried 2 jobs." in after.text
    assert 'id="flash"' not in (await client.get("/jobs?status=failed")).text  # shown once


async def test_bulk_action_on_every_match_and_its_report(client: Any, web_queue: jobq.Queue) -> None:
    waiting = [await web_queue.enqueue("send", {"batch": "b-7", "n": n}) for n in range(4)]
    other = await web_queue.enqueue("send", {"batch": "b-8"})
    done = await failed_job(web_queue, "send", {"batch": "b-7", "n": 9})  # finished: cannot be cancelled
    csrf = csrf_of((await client.get("/jobs")).text)
    form = {"csrf_token": csrf, "action": "cancel", "scope": "all", "text": "b-7"}
    confirm = await client.post("/jobs/bulk", data=form, headers={"Origin": ORIGIN})
    assert "Cancel 5 jobs?" in confirm.text and "every job matching" in confirm.text and "b-7" in confirm.text
    report = await client.post("/jobs/bulk", data={**form, "confirmed": "1"}, headers={"Origin": ORIGIN})
    assert report.status_code == 200 and "Cancelled 4 of 5 jobs; 1 could not be cancelled." in report.text
    assert done.id in report.text and "it has finished" in report.text
    for job in waiting:
        assert (await web_queue.get_job(job.id)).status is jobq.JobStatus.CANCELLED  # type: ignore[union-attr]
    assert (await web_queue.get_job(other.id)).status is jobq.JobStatus.PENDING  # type: ignore[union-attr]
    # A script asks for JSON: no confirmation, the same report.
    answer = await client.post(
        "/jobs/bulk", data={"csrf_token": csrf, "action": "remove", "job": [other.id, "no-such-job"]},
        headers={"Origin": ORIGIN, "Accept": "application/json"},
    )  # fmt: skip
    assert answer.json() == {
        "action": "remove",
        "done": 1,
        "not_done": [{"id": "no-such-job", "error": "no such job (removed already?)"}],
    }
    assert await web_queue.get_job(other.id) is None


async def test_bulk_refuses_bad_input_and_says_when_nothing_was_picked(client: Any) -> None:
    csrf = csrf_of((await client.get("/jobs")).text)
    for form in ({"action": "explode"}, {"action": "retry", "status": "bogus"}, {"action": "retry", "scope": "all", "text": "x" * 1001}):
        response = await client.post("/jobs/bulk", data={"csrf_token": csrf, **form}, headers={"Origin": ORIGIN})
        assert response.status_code == 400, form
    response = await client.post("/jobs/bulk", data={"csrf_token": csrf, "action": "retry"}, headers={"Origin": ORIGIN})
    assert response.status_code == 303
    assert "No jobs were selected" in (await client.get("/jobs")).text


async def test_every_single_action_leaves_a_message(client: Any, web_queue: jobq.Queue) -> None:
    job = await failed_job(web_queue)
    csrf = csrf_of((await client.get(f"/jobs/{job.id}")).text)
    for path, message in (
        (f"/jobs/{job.id}/retry", "retried"),
        (f"/jobs/{job.id}/cancel", "cancelled"),
        (f"/jobs/{job.id}/remove", "removed"),
    ):
        response = await client.post(path, data={"csrf_token": csrf}, headers={"Origin": ORIGIN})
        assert response.status_code == 303
        assert message in (await client.get(response.headers["location"])).text, path
    response = await client.post("/queues/pause", data={"csrf_token": csrf, "queue": "mail"}, headers={"Origin": ORIGIN})
    assert "Queue mail paused" in (await client.get("/")).text
    client.cookies.set("jobq_flash", "forged-words")
    assert 'id="flash"' not in (await client.get("/")).text  # only the dashboard's own, signed, messages


async def test_retry_all_failed_asks_first(client: Any, web_queue: jobq.Queue) -> None:
    jobs = [await failed_job(web_queue, "a"), await failed_job(web_queue, "b")]
    csrf = csrf_of((await client.get("/")).text)
    confirm = await client.post("/jobs/retry-failed", data={"csrf_token": csrf, "type": "a"}, headers={"Origin": ORIGIN})
    assert "Retry 1 job?" in confirm.text and 'name="type" value="a"' in confirm.text
    assert (await web_queue.get_job(jobs[0].id)).status is jobq.JobStatus.FAILED  # type: ignore[union-attr]
    done = await client.post(
        "/jobs/retry-failed", data={"csrf_token": csrf, "type": "a", "confirmed": "1"}, headers={"Origin": ORIGIN}
    )
    assert done.status_code == 303
    assert "Retried 1 failed job." in (await client.get(done.headers["location"])).text
    assert (await web_queue.get_job(jobs[0].id)).status is jobq.JobStatus.PENDING  # type: ignore[union-attr]
    assert (await web_queue.get_job(jobs[1].id)).status is jobq.JobStatus.FAILED  # type: ignore[union-attr]
