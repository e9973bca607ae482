"""The dashboard in a real headless Chromium (Playwright driving Debian's
/usr/bin/chromium): a real `jobq dashboard` process and a real worker.

Screenshots go to a temporary folder; with JOBQ_UPDATE_SCREENSHOTS=1 they
replace the ones in docs/screenshots/, which the documentation shows (so a
test run leaves the tree as it found it).
"""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from suite_parts import CHROMIUM, NO_CHROMIUM

import jobq

DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
SCREENSHOTS = (
    DOCS_SCREENSHOTS
    if os.environ.get("JOBQ_UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / f"jobq-screenshots-{os.getpid()}"
)
TOKEN = "browser-test-token-42"
XSS_TYPE = "<script>window.__pwned=1</script>"
XSS_DATA = {"html": "<img src=x onerror=\"window.__pwned=1\">", "note": "</pre><script>window.__pwned=1</script>"}
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip

sync_api = pytest.importorskip("playwright.sync_api", reason="browser tests need the playwright package")
if not Path(CHROMIUM).exists():
    pytest.skip(NO_CHROMIUM, allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"process exited: {proc.communicate()[1]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


def seed(url: str) -> dict[str, str]:
    """A database that looks lived in: 20 minutes of completed and failed
    jobs, waiting jobs in two queues, failed ones, and a hostile one."""
    start = datetime.now(UTC) - timedelta(minutes=20)
    clock = jobq.FakeClock(start)
    ids: dict[str, str] = {}
    with jobq.connect_sync(url, clock=clock) as queue:
        for minute in range(20):
            for n in range(8 + (minute * 7) % 11):
                queue.enqueue("send_message", {"to": f"+82100{minute:02d}{n:02d}", "text": "hello"}, queue="demo")
                job = queue.dequeue()
                assert job is not None
                clock.advance(0.5)
                if n % 9 == 4:
                    queue.fail(job, "provider timeout")
                else:
                    queue.complete(job, {"message_id": f"m-{minute}-{n}"})
            clock.advance(60 - 0.5 * (8 + (minute * 7) % 11))
        for n in range(3):
            job = queue.enqueue("send_bulk_messages", {"batch": n, "recipients": 500}, max_attempts=1, priority=9)
            claimed = queue.dequeue()
            assert claimed is not None and claimed.id == job.id
            queue.fail(claimed, "rate limited by provider (HTTP 429)")
            ids.setdefault("failed", job.id)
        hostile = queue.enqueue(XSS_TYPE, XSS_DATA, metadata={"x": XSS_TYPE}, queue="other")
        ids["hostile"] = hostile.id
        for n in range(12):
            queue.enqueue("send_scheduled_message", {"n": n}, queue="demo", delay=3600 if n % 3 == 0 else 0)
    return ids


@pytest.fixture
def site(tmp_path: Path) -> Iterator[dict[str, Any]]:
    url = f"sqlite:///{tmp_path / 'jobq.db'}"
    ids = seed(url)
    port = free_port()
    env = {**os.environ, "JOBQ_DASHBOARD_TOKEN": TOKEN}
    env.pop("JOBQ_DASHBOARD_USER", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "jobq", "dashboard", "--url", url, "--port", str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for_port(port, server)
        yield {"url": url, "base": f"http://127.0.0.1:{port}", "ids": ids, "tmp": tmp_path, "port": port}
    finally:
        server.terminate()
        server.communicate(timeout=30)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            yield context
        finally:
            context.close()


def shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def start_worker(tmp_path: Path, url: str) -> subprocess.Popen[str]:
    (tmp_path / "worker_app.py").write_text(
        textwrap.dedent(
            """
            import jobq

            def make(queue):
                processor = jobq.JobProcessor(queue, concurrency=2, poll_interval=0.2, queues=["default"])

                @processor.handler("send_bulk_messages")
                def send(job):
                    return {"sent": job.data["recipients"]}

                return processor
            """
        )
    )
    return subprocess.Popen(
        [sys.executable, "-m", "jobq", "worker", "worker_app:make", "--url", url],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_overview_filter_open_retry_complete(site: dict[str, Any], browser: Any) -> None:
    page = browser.new_page()
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(f"{site['base']}/login?token={TOKEN}")
    assert page.url.rstrip("/") == site["base"]
    page.wait_for_selector("#chart svg rect.bar", state="attached")
    assert page.locator("#chart svg rect.bar").count() >= 2
    assert page.locator('[data-count="failed"]').inner_text() != "0"
    page.wait_for_selector("#live:has-text('live ')")  # the page polled the API
    shot(page, "overview")

    page.goto(f"{site['base']}/jobs")
    page.select_option("#f-status", "failed")
    page.click("#apply")
    page.wait_for_url("**/jobs?status=failed*")
    statuses = page.locator("#job-rows .badge").all_inner_texts()
    assert statuses and set(statuses) == {"failed"}
    shot(page, "jobs-failed")

    page.click(f"a[href='/jobs/{site['ids']['failed']}']")
    page.wait_for_selector("#job-status:has-text('failed')")
    assert "rate limited by provider" in page.locator("#job-error").inner_text()
    shot(page, "job-failed")

    page.click("#retry")
    page.wait_for_selector("#job-status:has-text('pending')")
    worker = start_worker(site["tmp"], site["url"])
    try:
        # No reload by the test: the page follows the job by itself.
        page.wait_for_selector("#job-status:has-text('completed')", timeout=30_000)
    finally:
        worker.terminate()
        worker.communicate(timeout=30)
    assert '"sent": 500' in page.locator("#job-result").inner_text()
    shot(page, "job-completed")
    assert not errors, errors


def test_hostile_job_renders_inert(site: dict[str, Any], browser: Any) -> None:
    page = browser.new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"{site['base']}/login?token={TOKEN}")
    for path in (f"/jobs/{site['ids']['hostile']}", "/jobs?queue=other", "/"):
        page.goto(site["base"] + path)
        page.wait_for_timeout(300)
        assert page.evaluate("window.__pwned") is None, path
    page.goto(f"{site['base']}/jobs/{site['ids']['hostile']}")
    assert page.locator("#job-type").inner_text() == XSS_TYPE  # shown as text
    assert "onerror" in page.locator("#job-data").inner_text()
    page.goto(f"{site['base']}/jobs?queue=other")
    page.wait_for_timeout(2500)  # one live update re-renders the rows from JSON
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#job-rows td").nth(2).inner_text() == XSS_TYPE  # after the tick box and the id
    shot(page, "hostile-job-inert")
    assert not dialogs


def test_unauthenticated_requests_get_401(site: dict[str, Any], browser: Any) -> None:
    from jobq.web import ROUTES

    page = browser.new_page()  # never logged in
    job_id = site["ids"]["failed"]
    for method, path in ROUTES:
        url = site["base"] + path.replace("{job_id}", job_id)
        if (method, path) == ("GET", "/login"):
            continue  # the login form: the one page open to all
        if method == "GET":
            response = page.goto(url)
            assert response is not None and response.status == 401, path
        else:
            assert page.request.post(url, form={"csrf_token": "x"}).status == 401, path


def test_cross_site_post_gets_403(site: dict[str, Any], browser: Any) -> None:
    page = browser.new_page()
    page.goto(f"{site['base']}/login?token={TOKEN}")
    csrf = page.locator("meta[name=csrf-token]").get_attribute("content")
    job_id = site["ids"]["failed"]
    target = f"{site['base']}/jobs/{job_id}/cancel"
    evil = (
        "<!doctype html><form method=post action='" + target + "'>"
        "<input type=hidden name=csrf_token value='" + str(csrf) + "'></form>"
        "<script>document.forms[0].submit()</script>"
    ).encode()

    class Evil(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(evil)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Evil)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with page.expect_response(lambda r: r.url == target) as answer:
            page.goto(f"http://127.0.0.1:{server.server_address[1]}/")
        assert answer.value.status == 403
    finally:
        server.shutdown()
        server.server_close()
    with jobq.connect_sync(site["url"]) as queue:
        job = queue.get_job(job_id)
        assert job is not None and job.status is jobq.JobStatus.FAILED
