"""The operator's dashboard in a real headless Chromium, with real
``jobq dashboard`` and ``jobq worker`` processes:

- pausing a queue: the worker stops claiming from it (jobs keep arriving and
  wait) while it runs the others, and claims them again after resume;
- logging in with the form, staying logged in across a restart of the
  dashboard (its secret kept in a file), and logging out.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_browser import TOKEN, browser, free_port, shot, site, wait_for_port  # noqa: F401 - fixtures shared

import jobq

QUIET = 1.5  # seconds to watch a paused queue for a claim that must not happen
DEADLINE = 30.0  # seconds any expected change may take on a loaded machine


class Worker:
    """A ``jobq worker`` process over every queue, whose log lines are kept."""

    def __init__(self, tmp_path: Path, url: str) -> None:
        (tmp_path / "pause_app.py").write_text(
            textwrap.dedent(
                """
                import jobq

                def make(queue):
                    processor = jobq.JobProcessor(queue, concurrency=2, poll_interval=0.2)

                    @processor.handler("notify")
                    def notify(job):
                        return {"queue": job.queue}

                    return processor
                """
            )
        )
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jobq", "worker", "pause_app:make", "--url", url, "--log-level", "INFO"],
            cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def wait_for_log(self, text: str) -> None:
        deadline = time.monotonic() + DEADLINE
        while not any(text in line for line in self.lines):
            assert self.proc.poll() is None, "".join(self.lines)
            assert time.monotonic() < deadline, f"no log line {text!r} in:\n{''.join(self.lines)}"
            time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.reader.join(timeout=5)
        assert self.proc.stderr is not None
        self.proc.stderr.close()


@pytest.fixture
def worker(site: dict[str, Any]) -> Iterator[Worker]:  # noqa: F811 - the fixture imported above
    running = Worker(site["tmp"], site["url"])
    try:
        yield running
    finally:
        running.stop()


def wait_until(check: Any) -> None:
    deadline = time.monotonic() + DEADLINE
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def statuses(url: str, ids: list[str]) -> set[str]:
    with jobq.connect_sync(url) as queue:
        return {queue.get_job(job_id).status.value for job_id in ids}  # type: ignore[union-attr]


def test_pause_a_queue_and_a_worker_stops_claiming_from_it(
    site: dict[str, Any], browser: Any, worker: Worker  # noqa: F811
) -> None:
    url = site["url"]
    with jobq.connect_sync(url) as queue:
        first = queue.enqueue("notify", queue="mail")
    wait_until(lambda: statuses(url, [first.id]) == {"completed"})  # the worker runs mail's jobs

    page = browser.new_page()
    page.goto(f"{site['base']}/login?token={TOKEN}")
    row = page.locator('#by-queue tr[data-queue="mail"]')
    row.locator("button:has-text('Pause')").click()
    page.wait_for_selector('#by-queue tr[data-queue="mail"] .badge.s-paused')
    worker.wait_for_log("paused queues: mail")  # the worker read it

    with jobq.connect_sync(url) as queue:
        held = [queue.enqueue("notify", {"n": n}, queue="mail").id for n in range(3)]
        other = queue.enqueue("notify", queue="sms").id
    wait_until(lambda: statuses(url, [other]) == {"completed"})  # other queues keep running
    time.sleep(QUIET)
    assert statuses(url, held) == {"pending"}
    page.reload()
    mail = page.locator('#by-queue tr[data-queue="mail"]')
    assert mail.locator(".badge").inner_text() == "paused"
    shot(page, "queue-paused")

    mail.locator("button:has-text('Resume')").click()
    page.wait_for_selector('#by-queue tr[data-queue="mail"] .badge.s-running')
    wait_until(lambda: statuses(url, held) == {"completed"})
    worker.wait_for_log("paused queues: none")


class Dashboard:
    """A ``jobq dashboard`` process that can be restarted on the same port."""

    def __init__(self, url: str, tmp_path: Path, env: dict[str, str]) -> None:
        self.url, self.tmp_path, self.env = url, tmp_path, env
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jobq", "dashboard", "--url", self.url, "--port", str(self.port)],
            cwd=self.tmp_path, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        wait_for_port(self.port, self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.communicate(timeout=30)
            self.proc = None


def test_log_in_with_the_form_stay_logged_in_across_a_restart_and_log_out(
    tmp_path: Path, browser: Any  # noqa: F811
) -> None:
    url = f"sqlite:///{tmp_path / 'jobq.db'}"
    with jobq.connect_sync(url) as queue:
        queue.enqueue("notify", queue="mail")
    env = {
        **os.environ,
        "JOBQ_DASHBOARD_USER": "ops",
        "JOBQ_DASHBOARD_PASSWORD": "correct horse battery",
        "JOBQ_DASHBOARD_SECRET_FILE": str(tmp_path / "dashboard-secret"),
    }
    for name in ("JOBQ_DASHBOARD_TOKEN", "JOBQ_DASHBOARD_SECRET"):
        env.pop(name, None)
    dashboard = Dashboard(url, tmp_path, env)
    dashboard.start()
    try:
        page = browser.new_page()
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        response = page.goto(f"{dashboard.base}/jobs?queue=mail")
        assert response is not None and response.status == 401  # the form, not the browser's dialog
        page.fill("#login-user", "ops")
        page.fill("#login-password", "wrong password")
        page.click("#login-submit")
        page.wait_for_selector("#login-notice.bad")
        shot(page, "login")
        page.fill("#login-user", "ops")
        page.fill("#login-password", "correct horse battery")
        page.click("#login-submit")
        page.wait_for_url("**/jobs?queue=mail")  # back to the page asked for
        assert page.locator("#job-rows tr").count() == 1

        dashboard.stop()
        dashboard.start()  # a restart: the secret file is read again
        page.goto(f"{dashboard.base}/")
        page.wait_for_selector("#logout")
        assert page.locator("#status-cards").count() == 1  # still logged in

        page.click("#logout")
        page.wait_for_url("**/login?ended=1")
        assert "logged out" in page.locator("#login-notice").inner_text()
        response = page.goto(f"{dashboard.base}/")
        assert response is not None and response.status == 401
        assert page.locator("#login-form").count() == 1
        assert not dialogs
    finally:
        dashboard.stop()


def test_search_by_payload_text_and_bulk_retry_three_failed_jobs(site: dict[str, Any], browser: Any) -> None:  # noqa: F811
    page = browser.new_page()
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(f"{site['base']}/login?token={TOKEN}")

    page.goto(f"{site['base']}/jobs")
    page.fill("#f-text", "recipients")  # in the payloads of the three bulk sends only
    page.click("#apply")
    page.wait_for_url("**/jobs?*text=recipients*")
    assert set(page.locator("#job-rows td:nth-child(3)").all_inner_texts()) == {"send_bulk_messages"}
    assert page.locator("#job-rows tr").count() == 3
    shot(page, "jobs-search")

    page.select_option("#f-status", "failed")
    page.click("#apply")
    page.wait_for_url("**/jobs?*status=failed*")
    page.check("#pick-all")
    assert page.locator('#job-rows input[name="job"]:checked').count() == 3
    page.click("#bulk-retry")
    page.wait_for_selector("#confirm")
    assert page.locator("h1").inner_text() == "Retry 3 jobs?"
    shot(page, "bulk-confirm")
    page.click("#confirm")
    page.wait_for_selector("#flash")
    assert page.locator("#flash").inner_text() == "Retried 3 jobs."
    with jobq.connect_sync(site["url"]) as queue:
        retried = queue.list_jobs(type="send_bulk_messages")
    assert {job.status.value for job in retried.jobs} == {"pending"} and retried.total == 3
    assert not errors, errors


LINES_OF = """(el) => {
  const range = document.createRange();
  range.selectNodeContents(el);
  return new Set(Array.from(range.getClientRects()).map((r) => Math.round(r.top))).size;
}"""


@pytest.mark.parametrize("width, height", [(1280, 800), (390, 844)], ids=["window-1280", "phone"])
def test_layout_fits_a_window_and_a_phone(site: dict[str, Any], browser: Any, width: int, height: int) -> None:  # noqa: F811
    """No page is wider than the window (wide tables scroll in their own
    box), timestamps stay on one line, and at 1,280 px the job list needs
    no scrolling at all."""
    page = browser.new_page()
    page.set_viewport_size({"width": width, "height": height})
    page.goto(f"{site['base']}/login?token={TOKEN}")
    for path in ("/", "/jobs", "/jobs?status=failed", f"/jobs/{site['ids']['failed']}", "/login"):
        page.goto(site["base"] + path)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, (path, width, overflow)
        for when in page.locator(".when, .timeline .mono").all():
            assert when.evaluate(LINES_OF) == 1, (path, width, when.inner_text())
    page.goto(f"{site['base']}/jobs")
    box = page.locator("#jobs").evaluate("(t) => [t.parentElement.scrollWidth, t.parentElement.clientWidth]")
    if width >= 1280:
        assert box[0] <= box[1], box  # the whole list is in view
    shot(page, f"jobs-{'phone' if width < 700 else width}")
