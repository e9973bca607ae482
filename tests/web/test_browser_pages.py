"""The queue, cron and charts pages in a real headless Chromium, over a real
``jobq dashboard`` process: from the overview's queue panel to the queue's
page, its charts (axes with units, failures kept after a retry), the day
window; from the nav to the cron page and a job its slot made."""

from __future__ import annotations

import asyncio
import json
import socket
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from test_browser import TOKEN, browser, shot, site  # noqa: F401 - fixtures shared

import jobq
from jobq.history import WorkerRecord
from jobq.job import JobRecord

SCHEDULE = "send_digest */5 * * * *"


async def lived_in(url: str) -> str:
    """A worker serving the demo queue in the registry, and a cron schedule
    whose last slot made a job; returns that job's id."""
    async with jobq.connect(url) as queue:
        now = int(queue.clock.now() * 1000)
        worker = WorkerRecord("worker-1", socket.gethostname(), 4242, '["demo"]', 4, jobq.__version__, now, now, 1, 180)
        await queue.store.heartbeat(worker, forget_before_ms=0)
        slot = now // 300_000 * 300_000
        meta = json.dumps({"jobq.cron": SCHEDULE, "jobq.cron_slot": slot})
        job = JobRecord("digest-1", "send_digest", "{}", "pending", 0, 0, 3, 0, slot, slot, None, None, None, meta)
        await queue.store.claim_cron_slot(SCHEDULE, slot - 300_000, job)
        assert await queue.store.claim_cron_slot(SCHEDULE, slot, job)
        return job.id


def test_queue_page_charts_and_cron_page(site: dict[str, Any], browser: Any) -> None:  # noqa: F811
    # Playwright's sync API runs an event loop in this thread: seed from another.
    with ThreadPoolExecutor(1) as pool:
        digest = pool.submit(asyncio.run, lived_in(site["url"])).result()
    page = browser.new_page()
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(f"{site['base']}/login?token={TOKEN}")

    # The overview's chart (drawn by the page script) has its axes and units too.
    page.wait_for_selector("#chart svg rect.bar", state="attached")
    overview = page.locator("#chart svg")
    assert overview.locator("text.axis-title").all_text_contents() == [
        "jobs per minute", "failure rate, last 5 minutes (%)", "time (UTC)",
    ]
    assert overview.locator("text.y-right").all_text_contents()[-1] == "100%"
    assert overview.locator("text.y-left").count() >= 2 and overview.locator("text.x").count() >= 2

    # From the overview's queue panel to the queue's page.
    page.click("#by-queue tr[data-queue='demo'] a[href='/queues/demo']")
    page.wait_for_url("**/queues/demo")
    assert page.locator("#queue-name").inner_text() == "demo"
    assert page.locator("#queue-state").inner_text() == "running"
    assert page.locator("[data-count='completed']").inner_text() != "0"
    assert "4 jobs at once at most, over 1 live workers" in page.locator("#limits").inner_text()
    assert "worker-1" in page.locator("#queue-workers").inner_text()
    chart = page.locator("#outcome-chart svg.outcomes")
    assert chart.locator("rect.bar.completed").count() >= 10
    assert chart.locator("rect.bar.failed").count() >= 1
    titles = chart.locator("text.axis-title").all_text_contents()
    assert titles == ["attempts per minute", "failure rate, last 5 minutes (%)", "time (UTC)"]
    assert chart.locator("text.y-right").all_text_contents() == ["0%", "25%", "50%", "75%", "100%"]
    assert chart.locator("text.y-left").count() >= 2 and chart.locator("polyline.rate").count() >= 1
    box = chart.bounding_box()
    assert box is not None and box["width"] > 600 and box["height"] > 150  # drawn, not collapsed
    durations = page.locator("#duration-chart svg.durations")
    assert durations.locator("g.row[data-type='send_message'][data-measure='run']").count() == 1
    assert "≤ 500 ms" in page.locator("#durations").inner_text()  # each seeded job ran 0.5 s
    shot(page, "queue-page")

    page.click("#window-day")
    page.wait_for_url("**/queues/demo?window=day")
    assert "attempts per hour" in (page.locator("#outcome-chart").text_content() or "")

    # Failures stay in the charts after "Retry all failed".
    failed_before = int(page.locator("#fig-failed").inner_text())
    page.goto(site["base"] + "/")
    page.click("#retry-all-failed")
    page.click("#confirm")  # the confirmation names the count
    page.wait_for_selector("#flash")
    page.goto(f"{site['base']}/charts")
    all_failed = int(page.locator("#fig-failed").inner_text())
    assert all_failed >= failed_before > 0  # the retried jobs' failed attempts are still counted
    assert (page.request.get(f"{site['base']}/api/overview").json())["counts"].get("failed", 0) == 0
    shot(page, "charts")

    # The cron page, from the nav, and the job a slot made.
    page.click("nav a[href='/cron']")
    page.wait_for_url("**/cron")
    row = page.locator(f"#cron-table tr.schedule[data-name='{SCHEDULE}']")
    assert "*/5 * * * *" in row.inner_text() and "unknown" not in row.inner_text()
    shot(page, "cron-page")
    row.locator(f"a[href='/jobs/{digest}']").click()
    page.wait_for_url(f"**/jobs/{digest}")
    assert not errors, errors
