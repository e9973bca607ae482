"""The dashboard's queue controls: pause and resume as CSRF-checked POSTs,
and a paused queue shown as paused on the overview, in its JSON and in the
metrics."""

from __future__ import annotations

from typing import Any

import pytest
from webtest_helpers import ORIGIN, csrf_of

import jobq

pytestmark = pytest.mark.asyncio


async def test_pause_and_resume_from_the_overview(client: Any, web_queue: jobq.Queue) -> None:
    await web_queue.enqueue("send", queue="sms")
    page = (await client.get("/")).text
    assert 'action="/queues/pause"' in page and 'data-queue="sms"' in page
    csrf = csrf_of(page)
    response = await client.post("/queues/pause", data={"csrf_token": csrf, "queue": "sms"}, headers={"Origin": ORIGIN})
    assert response.status_code == 303 and response.headers["location"] == "/"
    assert list(await web_queue.paused()) == ["sms"]
    page = (await client.get("/")).text
    assert 'class="badge s-paused"' in page and 'action="/queues/resume"' in page
    assert (await client.get("/api/overview")).json()["paused"].keys() == {"sms"}
    assert 'jobq_queue_paused{queue="sms"} 1.0' in (await client.get("/metrics")).text
    # A queue with no jobs yet can be paused too, and is listed.
    await client.post("/queues/pause", data={"csrf_token": csrf, "queue": "later"}, headers={"Origin": ORIGIN})
    assert 'data-queue="later"' in (await client.get("/")).text
    response = await client.post(
        "/queues/resume", data={"csrf_token": csrf, "queue": "sms"}, headers={"Origin": ORIGIN, "Accept": "application/json"}
    )
    assert response.json() == {"ok": True, "next": "/"}
    assert list(await web_queue.paused()) == ["later"]
    assert "jobq_queue_paused{queue=\"sms\"}" not in (await client.get("/metrics")).text


async def test_queue_controls_refuse_cross_site_and_bad_input(client: Any, web_queue: jobq.Queue) -> None:
    csrf = csrf_of((await client.get("/")).text)
    for path in ("/queues/pause", "/queues/resume"):
        for headers in ({"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}):
            response = await client.post(path, data={"csrf_token": csrf, "queue": "sms"}, headers=headers)
            assert response.status_code == 403
        response = await client.post(path, data={"queue": "sms"}, headers={"Origin": ORIGIN})
        assert response.status_code == 403  # no CSRF token
        assert (await client.get(path)).status_code == 405  # GET never mutates
        response = await client.post(path, data={"csrf_token": csrf, "queue": ""}, headers={"Origin": ORIGIN})
        assert response.status_code == 400
    assert await web_queue.paused() == {}


async def test_queue_names_are_escaped(client: Any, web_queue: jobq.Queue) -> None:
    await web_queue.pause("<script>alert(1)</script>")
    page = (await client.get("/")).text
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
