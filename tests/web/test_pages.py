"""The queue page, the cron page and the charts page: what each shows, read
from the attempt history and the worker registry, their charts drawn on the
server with axes and units, and every field escaped."""

from __future__ import annotations

import json
import re
import socket
from typing import Any

import pytest
from webtest_helpers import ORIGIN, csrf_of, failed_job

import jobq
from jobq.history import WorkerRecord
from jobq.web.charts import RATE_MIN_ATTEMPTS, failure_rates, nice_ceiling, ticks

pytestmark = pytest.mark.asyncio


async def run_one(queue: jobq.Queue, job_type: str, *, queue_name: str, fail: bool = False) -> jobq.Job[Any]:
    job = await queue.enqueue(job_type, {"n": 1}, queue=queue_name, max_attempts=1)
    held = await queue.dequeue()
    assert held is not None and held.id == job.id
    if fail:
        await queue.fail(held, "no")
    else:
        await queue.complete(held, "ok")
    return job


async def register(queue: jobq.Queue, worker_id: str, queues: str, concurrency: int) -> None:
    now = int(queue.clock.now() * 1000)
    row = WorkerRecord(worker_id, socket.gethostname(), 1234, queues, concurrency, "test", now, now, 1, 5)
    await queue.store.heartbeat(row, forget_before_ms=0)


async def test_the_queue_page(client: Any, web_queue: jobq.Queue) -> None:
    await run_one(web_queue, "send", queue_name="sms")
    failed = await run_one(web_queue, "send", queue_name="sms", fail=True)
    await run_one(web_queue, "other", queue_name="mail")
    await web_queue.enqueue("send", {"n": 2}, queue="sms")
    await register(web_queue, "w-sms", '["sms"]', 8)
    await register(web_queue, "w-all", "null", 4)
    await register(web_queue, "w-mail", '["mail"]', 16)
    page = (await client.get("/queues/sms")).text
    assert 'id="queue-name">sms<' in page and 'id="queue-state">running<' in page
    assert '<span class="value" data-count="completed">1</span>' in page
    assert '<span class="value" data-count="failed">1</span>' in page
    assert '<span class="value" data-count="pending">1</span>' in page
    assert "ready for <b>" in page  # the oldest ready job, aged since it was due
    assert "12 jobs at once at most, over 2 live workers" in page  # w-sms and w-all, not w-mail
    assert "w-sms" in page and "w-all" in page and "w-mail" not in page
    assert re.search(r'id="fig-completed">1<.*id="fig-failed">1<', page, re.S)
    # Retrying the failed job keeps its failed attempt counted.
    await web_queue.retry(failed.id)
    page = (await client.get("/queues/sms")).text
    assert 'id="fig-failed">1<' in page and 'data-count="failed">0<' in page
    # The charts: axes and units, on the server.
    assert '<svg class="chart-svg outcomes"' in page and "attempts per minute" in page and "time (UTC)" in page
    assert "failure rate, last 5 minutes (%)" in page and ">100%</text>" in page
    assert '<svg class="chart-svg durations"' in page and "run time" in page and "queue age" in page
    day = (await client.get("/queues/sms?window=day")).text
    assert "attempts per hour" in day and "last day" in day
    assert (await client.get("/queues/sms?window=week")).status_code == 400


async def test_the_queue_page_shows_the_limits_in_force(client: Any, web_queue: jobq.Queue) -> None:
    now = int(web_queue.clock.now() * 1000)
    limits = {
        "queues": {"sms": 3, "mail": 5},
        "rate_limit": {"max_requests": 10, "window_seconds": 1.0},
        "key_limits": [{"key": "<b>provider</b>", "type": None, "rate": 2, "per": 60.0, "concurrency": 1}],
        "circuit_breaker": {"failure_threshold": 4, "timeout": 5.0, "reset_timeout": 30.0},
        "open_circuits": {"send": "open"},
        "job_timeout": 90.0,
    }
    row = WorkerRecord("w-limited", "box", 1, '["sms", "mail"]', 8, "test", now, now, 0, 0, json.dumps(limits))
    await web_queue.store.heartbeat(row, forget_before_ms=0)
    await register(web_queue, "w-plain", '["sms"]', 2)
    page = (await client.get("/queues/sms")).text
    # Per-queue concurrency: 3 of w-limited's slots are the queue's own, beside w-plain's 2.
    assert "5 jobs at once at most, over 2 live workers" in page and "shared with" not in page
    limits_list = re.search(r'<ul id="queue-limits">(.*?)</ul>', page, re.S)
    assert limits_list is not None
    shown = limits_list.group(1)
    assert "rate limit: at most 10 job starts per 1 s (this worker)" in shown
    assert "by metadata &lt;b&gt;provider&lt;/b&gt;: at most 2 starts per 60 s, at most 1 running per key" in shown
    assert "<b>provider" not in page
    assert "opens after 4 failures in a row, lets a trial job through after 30 s" in shown
    assert "circuit open for send: its jobs are not claimed" in shown
    assert "job timeout: 90 s" in shown and "(w-limited)" in shown
    mail = (await client.get("/queues/mail")).text
    assert "5 jobs at once at most, over 1 live workers" in mail
    # A worker of an older jobq registers no limits: none is claimed.
    await web_queue.store.unregister("w-limited")
    page = (await client.get("/queues/sms")).text
    assert "no rate limit, per-key limit, circuit breaker or job timeout" in page


async def test_pause_and_resume_from_the_queue_page(client: Any, web_queue: jobq.Queue) -> None:
    await web_queue.enqueue("send", queue="sms")
    page = (await client.get("/queues/sms")).text
    assert 'name="next" value="/queues/sms"' in page
    response = await client.post(
        "/queues/pause", data={"csrf_token": csrf_of(page), "queue": "sms", "next": "/queues/sms"},
        headers={"Origin": ORIGIN},
    )  # fmt: skip
    assert response.status_code == 303 and response.headers["location"] == "/queues/sms"
    page = (await client.get("/queues/sms")).text
    assert 'id="queue-state">paused<' in page and "Resume" in page
    assert "Queue sms paused" in page  # the message after the action


async def test_the_overview_and_nav_link_the_new_pages(client: Any, web_queue: jobq.Queue) -> None:
    await web_queue.enqueue("send", queue="a b/c")
    page = (await client.get("/")).text
    assert 'href="/queues/a%20b/c"' in page and 'href="/cron"' in page and 'href="/charts"' in page
    assert 'id="queue-name">a b/c<' in (await client.get("/queues/a%20b/c")).text
    # The controls' endpoints take no GET, whatever queue is named so.
    assert (await client.get("/queues/pause")).status_code == 405


async def test_an_empty_queue_and_the_charts_page(client: Any, web_queue: jobq.Queue) -> None:
    page = (await client.get("/queues/nothing")).text
    assert "no job is ready" in page and "no live worker serves this queue" in page
    assert "no attempt ended in this window" in page and "attempts per minute" in page
    await failed_job(web_queue)
    charts = (await client.get("/charts")).text
    assert 'id="fig-failed">1<' in charts and '<svg class="chart-svg outcomes"' in charts


async def test_the_cron_page(client: Any, web_queue: jobq.Queue) -> None:
    pytest.importorskip("croniter")
    from jobq.job import JobRecord

    assert "no cron schedule has run" in (await client.get("/cron")).text
    now = int(web_queue.clock.now() * 1000) // 300_000 * 300_000

    def record(job_id: str, name: str, slot: int) -> JobRecord:
        meta = json.dumps({"jobq.cron": name, "jobq.cron_slot": slot})
        return JobRecord(job_id, "report", "null", "pending", 0, 0, 1, 0, now, now, None, None, None, meta)

    for name in ("report */5 * * * *", "<b>nightly</b>"):
        assert not await web_queue.store.claim_cron_slot(name, now - 300_000, record("x", name, 0))
        assert await web_queue.store.claim_cron_slot(name, now, record(f"job-{len(name)}", name, now))
    page = (await client.get("/cron")).text
    assert 'data-name="report */5 * * * *"' in page and "*/5 * * * *" in page
    assert 'href="/jobs/job-18"' in page  # the job its slot made
    assert "<b>nightly" not in page and "&lt;b&gt;nightly&lt;/b&gt;" in page
    rows = re.findall(r'<tr class="schedule".*?</tr>', page, re.S)
    assert len(rows) == 2
    default_named = next(r for r in rows if "report */5" in r)
    assert default_named.count("unknown") == 0  # expression and next slot read from its default name
    assert next(r for r in rows if "nightly" in r).count("unknown") == 2  # a custom name: not known


async def test_the_cron_page_with_schedules_given(web_queue: jobq.Queue) -> None:
    pytest.importorskip("croniter")
    import httpx
    from webtest_helpers import TOKEN

    from jobq.processor.cron import CronSchedule
    from jobq.web import create_app

    app = create_app(web_queue, auth=TOKEN, cron=[CronSchedule("0 3 * * *", "cleanup", name="nightly")])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=ORIGIN, headers={"Authorization": f"Bearer {TOKEN}"}
    ) as http:
        page = (await http.get("/cron")).text
    assert 'data-name="nightly"' in page and "0 3 * * *" in page and "not run yet" in page
    assert re.search(r"\d{4}-\d\d-\d\d 03:00:00", page)


@pytest.mark.filterwarnings("ignore::pytest.PytestWarning")
def test_the_failure_rate_needs_attempts_before_it_is_drawn() -> None:
    class Row:
        def __init__(self, completed: int, failed: int) -> None:
            self.completed, self.failed = completed, failed

    one_failure = [Row(0, 0)] * 10 + [Row(0, 1)]
    assert failure_rates(one_failure) == [None] * 11  # a single failure draws no line at the top
    busy = [Row(RATE_MIN_ATTEMPTS, 0), Row(RATE_MIN_ATTEMPTS - 1, 1)]
    assert failure_rates(busy) == [0.0, 1 / (2 * RATE_MIN_ATTEMPTS)]
    assert [nice_ceiling(v) for v in (0, 1, 3, 7, 11, 250)] == [1, 1, 5, 10, 20, 500]
    assert ticks(20) == [0, 5, 10, 15, 20] and ticks(1) == [0, 1] and ticks(500) == [0, 100, 200, 300, 400, 500]
