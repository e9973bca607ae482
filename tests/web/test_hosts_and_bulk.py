"""A real ``jobq dashboard --no-auth`` process, over real HTTP:

- it answers only loopback ``Host`` names and those given with
  ``--allowed-host``, so a DNS-rebinding page (``Host: evil.example`` with a
  matching ``Origin``) can neither read it nor post actions;
- "retry all failed" retries what it can and lists the rest;
- a row no ``datetime`` can hold still shows in the list, the API and its page.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from webtest_helpers import csrf_of

import jobq

pytest.importorskip("uvicorn", reason="the dashboard needs the web extra")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(tmp_path: Path, url: str, *extra: str) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "jobq", "dashboard", "--url", url, "--port", str(port), "--no-auth", *extra],
        cwd=tmp_path, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while True:
        assert server.poll() is None, server.communicate()[1]
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return server, port
        except OSError:
            assert time.monotonic() < deadline, "the dashboard did not start"
            time.sleep(0.05)


def stop(server: subprocess.Popen[str]) -> None:
    server.terminate()
    server.communicate(timeout=30)


def request(
    port: int, method: str, path: str, *, host: str | None = None, headers: dict[str, str] | None = None,
    body: str | None = None,
) -> tuple[int, str]:  # fmt: skip
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        sent = {"Host": host or f"127.0.0.1:{port}", **(headers or {})}
        conn.request(method, path, body=body, headers=sent)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def post(port: int, path: str, fields: dict[str, str], *, host: str, accept: str = "text/html") -> tuple[int, str]:
    _, page = request(port, "GET", "/jobs", host=host)
    form = urlencode({**fields, "csrf_token": csrf_of(page)}) if "csrf-token" in page else urlencode(fields)
    return request(
        port, "POST", path, host=host, body=form,
        headers={"Origin": f"http://{host}", "Content-Type": "application/x-www-form-urlencoded", "Accept": accept},
    )  # fmt: skip


@pytest.fixture
def db(tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "jobs.db"
    url = f"sqlite:///{path}"
    with jobq.connect_sync(url) as queue:
        waiting = queue.enqueue("t", {"n": 1}).id
    return {"url": url, "path": path, "waiting": waiting, "tmp": tmp_path}


@pytest.fixture
def dashboard(db: dict[str, Any]) -> Iterator[int]:
    server, port = serve(db["tmp"], db["url"])
    try:
        yield port
    finally:
        stop(server)


def test_a_rebinding_host_is_refused_and_changes_nothing(db: dict[str, Any], dashboard: int) -> None:
    port, job_id = dashboard, db["waiting"]
    evil = "evil.example:8080"
    for path in ("/", "/jobs", "/api/jobs", f"/api/jobs/{job_id}", "/metrics"):
        status, body = request(port, "GET", path, host=evil)
        assert status == 400 and job_id not in body, (path, status)
    status, _ = request(
        port, "POST", f"/jobs/{job_id}/remove", host=evil, body="",
        headers={"Origin": f"http://{evil}", "Content-Type": "application/x-www-form-urlencoded"},
    )  # fmt: skip
    assert status == 400
    with jobq.connect_sync(db["url"]) as queue:
        assert queue.get_job(job_id) is not None
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST", "127.0.0.2", f"[::1]:{port}"):
        status, body = request(port, "GET", "/api/jobs", host=host)
        assert status == 200 and job_id in body, host
    # A same-origin POST through a loopback name still works.
    status, _ = post(port, f"/jobs/{job_id}/remove", {}, host=f"localhost:{port}", accept="application/json")
    assert status == 200
    with jobq.connect_sync(db["url"]) as queue:
        assert queue.get_job(job_id) is None


def test_allowed_hosts_are_added_to_loopback_ones(db: dict[str, Any]) -> None:
    server, port = serve(db["tmp"], db["url"], "--allowed-host", "jobs.internal", "--allowed-host", "OPS.example")
    try:
        for host, expected in (
            ("jobs.internal", 200), (f"ops.example:{port}", 200), (f"127.0.0.1:{port}", 200),
            ("evil.example", 400), ("jobs.internal.evil.example", 400),
        ):  # fmt: skip
            assert request(port, "GET", "/api/overview", host=host)[0] == expected, host
    finally:
        stop(server)


def _fail(queue: Any, key: str | None) -> str:
    job = queue.enqueue("report", {"key": key}, max_attempts=1, unique_key=key)
    claimed = queue.dequeue()
    assert claimed is not None and claimed.id == job.id
    queue.fail(claimed, "boom")
    return str(job.id)


def test_retry_all_failed_retries_what_it_can_and_lists_the_rest(db: dict[str, Any]) -> None:
    with jobq.connect_sync(db["url"]) as queue:
        queue.remove(db["waiting"])
        first, blocked, last = _fail(queue, None), _fail(queue, "daily"), _fail(queue, "weekly")
        queue.enqueue("report", unique_key="daily")  # now holds the blocked job's key
    server, port = serve(db["tmp"], db["url"])
    try:
        host = f"127.0.0.1:{port}"
        status, body = post(port, "/jobs/retry-failed", {}, host=host)  # a browser's form: asked first
        assert status == 200 and "Retry 3 jobs?" in body and 'name="confirmed"' in body
        with jobq.connect_sync(db["url"]) as queue:
            assert queue.get_job(first).status is jobq.JobStatus.FAILED  # type: ignore[union-attr]
        status, body = post(port, "/jobs/retry-failed", {"confirmed": "1"}, host=host)
        assert status == 200 and blocked in body and "unique key" in body and "Retried 2 failed jobs" in body
        status, body = post(port, "/jobs/retry-failed", {}, host=host, accept="application/json")
        answer = json.loads(body)
        assert status == 200 and answer["ok"] is False and answer["retried"] == 0
        assert [item["id"] for item in answer["not_retried"]] == [blocked]
    finally:
        stop(server)
    with jobq.connect_sync(db["url"]) as queue:
        statuses = [queue.get_job(j).status for j in (first, blocked, last)]  # type: ignore[union-attr]
    assert statuses == [jobq.JobStatus.PENDING, jobq.JobStatus.FAILED, jobq.JobStatus.PENDING]


def test_a_stored_time_beyond_datetime_still_shows(db: dict[str, Any], dashboard: int) -> None:
    with sqlite3.connect(db["path"]) as conn:
        conn.execute("UPDATE jobs SET process_at = ? WHERE id = ?", (10**17, db["waiting"]))
    port, job_id = dashboard, db["waiting"]
    for path in ("/", "/jobs", "/api/jobs", "/api/overview", f"/jobs/{job_id}", f"/api/jobs/{job_id}"):
        status, body = request(port, "GET", path)
        assert status == 200, (path, body[:300])
    _, body = request(port, "GET", f"/api/jobs/{job_id}")
    assert json.loads(body)["process_at"].startswith("9999-12-31")
