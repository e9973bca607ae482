"""The job page's attempt history and the workers page in a real headless
Chromium, against a real `jobq dashboard` process and a real worker process
(the pattern and fixtures of test_browser.py). Screenshots go where
test_browser.py puts them (docs/screenshots/ with JOBQ_UPDATE_SCREENSHOTS=1)."""

from __future__ import annotations

import json
import time
from typing import Any

from test_browser import TOKEN, browser, shot, site, start_worker  # noqa: F401 - fixtures

import jobq
from jobq.history import WorkerRecord

DEAD_WORKER = "old-box:4242:dead01"


def _fail_deep(queue: jobq.SyncQueue, job: jobq.Job[Any], message: str, retry: bool) -> None:
    def call_provider(to: str) -> None:
        raise ConnectionError(f"{message} (to {to})")

    try:
        call_provider(job.data["to"])
    except ConnectionError as exc:
        queue.fail(job, exc, jobq.RetryDirective(True, 0) if retry else None)


def seed_history(url: str) -> str:
    """A job that failed twice with a traceback, reported progress, then
    completed: four rows in its history, and a worker that died."""
    with jobq.connect_sync(url) as queue:
        job = queue.enqueue("send_message", {"to": "+821012345678"}, max_attempts=3, priority=100)
        for message in ("connection reset by provider", "provider timed out"):
            claimed = queue.dequeue()
            assert claimed is not None and claimed.id == job.id
            _fail_deep(queue, claimed, message, retry=True)
        claimed = queue.dequeue()
        assert claimed is not None and claimed.id == job.id
        queue.set_progress(claimed, 0.75, "3 of 4 parts sent")
        queue.complete(claimed, {"message_id": "m-1"})
        long_ago = int((time.time() - 120) * 1000)
        record = WorkerRecord(DEAD_WORKER, "old-box", 4242, json.dumps(["default"]), 8, jobq.__version__,
                              long_ago - 600_000, long_ago, 3, 1234)  # fmt: skip
        queue.run(lambda q: q.store.heartbeat(record, forget_before_ms=0))
    return job.id


def test_job_page_shows_progress_and_attempt_history(site: dict[str, Any], browser: Any) -> None:  # noqa: F811
    job_id = seed_history(site["url"])
    page = browser.new_page()
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(f"{site['base']}/login?token={TOKEN}")
    page.goto(f"{site['base']}/jobs/{job_id}")
    page.wait_for_selector("#job-status:has-text('completed')")
    assert page.locator("#job-progress").get_attribute("value") == "0.75"
    assert "3 of 4 parts sent" in page.locator("#job-progress-message").inner_text()
    rows = page.locator("#attempts tr.attempt")
    assert rows.count() == 3
    assert [rows.nth(i).get_attribute("data-outcome") for i in range(3)] == ["retry", "retry", "completed"]
    first = rows.nth(0)
    assert "ConnectionError" in first.inner_text() and "connection reset" in first.inner_text()
    traceback = first.locator("details.traceback pre")
    assert not traceback.is_visible()  # collapsed until asked
    first.locator("details.traceback summary").click()
    assert traceback.is_visible() and "in call_provider" in traceback.inner_text()
    timeline = page.locator("#timeline").inner_text()
    assert "created" in timeline and "completed" in timeline
    page.wait_for_selector("#live:has-text('live ')")  # a live update came and changed nothing
    assert page.locator("#attempts tr.attempt").count() == 3
    shot(page, "job-attempts")
    assert not errors, errors


def test_workers_page_lists_live_and_dead_workers(site: dict[str, Any], browser: Any) -> None:  # noqa: F811
    seed_history(site["url"])
    worker = start_worker(site["tmp"], site["url"])
    try:
        page = browser.new_page()
        page.goto(f"{site['base']}/login?token={TOKEN}")
        deadline = time.monotonic() + 30
        while True:  # the worker registers itself as it starts
            page.goto(f"{site['base']}/workers")
            if page.locator("#workers-table tr.worker[data-alive='yes']").count() == 1:
                break
            assert time.monotonic() < deadline, page.locator("#workers-table").inner_text()
            page.wait_for_timeout(200)
        live = page.locator("#workers-table tr.worker[data-alive='yes']")
        assert f":{worker.pid}:" in live.inner_text() and "default" in live.inner_text()
        dead = page.locator("#workers-table tr.worker[data-alive='no']")
        assert dead.count() == 1 and DEAD_WORKER in dead.inner_text() and "dead" in dead.inner_text()
        page.wait_for_selector("#live:has-text('live ')")  # re-rendered from /api/workers, the same
        assert page.locator("#workers-table tr.worker[data-alive='no']").count() == 1
        assert page.locator("#workers-table tr.worker[data-alive='yes']").count() == 1
        shot(page, "workers")
        page.goto(f"{site['base']}/")
        page.wait_for_selector("#live:has-text('live ')")
        overview = page.locator("#workers").inner_text()
        assert f"{DEAD_WORKER} (dead)" in overview and f":{worker.pid}:" in overview
    finally:
        worker.terminate()
        worker.communicate(timeout=30)
