"""The operator commands (stats, list, show, retry, cancel, remove, prune,
dashboard) as real subprocesses, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from suite_parts import POSTGRES_URL, postgres_param

import jobq
from jobq.history import WorkerRecord

POSTGRES = bool(POSTGRES_URL)


@pytest.fixture(params=["sqlite", postgres_param()])
def backend(request: pytest.FixtureRequest) -> str:
    """Overrides the suite's backend: the CLI runs in other processes, so no memory://."""
    return str(request.param)


def run(*args: str, url: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobq", *args, "--url", url],
        cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=60,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def one_line_error(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr and result.stderr.strip().count("\n") == 0, result.stderr


def seed(url: str) -> dict[str, Any]:
    with jobq.connect_sync(url) as queue:
        waiting = [queue.enqueue("send_message", {"to": f"+82{n}"}, queue="sms") for n in range(5)]
        queue.enqueue("send_email", {"to": "a@example.com"}, queue="mail", delay=3600)
        done = queue.enqueue("send_email", {"to": "b@example.com"}, queue="mail", priority=100)
        claimed = queue.dequeue()
        assert claimed is not None and claimed.id == done.id
        queue.complete(claimed, {"ok": True})
        failed = []
        for n in range(2):
            job = queue.enqueue("send_bulk", {"batch": n, "big": "x" * 500}, max_attempts=1, priority=100)
            claimed = queue.dequeue()
            assert claimed is not None and claimed.id == job.id
            queue.fail(claimed, f"provider down {n}")
            failed.append(job.id)
    return {"waiting": [j.id for j in waiting], "done": done.id, "failed": failed}


def test_stats_counts_per_status_queue_and_type(queue_url: str, tmp_path: Path) -> None:
    seed(queue_url)
    data = json.loads(ok(run("stats", "--json", url=queue_url, cwd=tmp_path)))
    assert data["counts"]["pending"] == 5 and data["counts"]["delayed"] == 1
    assert data["counts"]["completed"] == 1 and data["counts"]["failed"] == 2 and data["total"] == 9
    assert data["by_queue"]["sms"] == {"pending": 5}
    assert data["by_type"]["send_email"] == {"delayed": 1, "completed": 1}
    assert data["throughput"]["completed"] == 1 and data["throughput"]["failed"] == 2
    assert len(data["throughput"]["series"]) == 15
    table = ok(run("stats", url=queue_url, cwd=tmp_path))
    assert "send_bulk" in table and "sms" in table and "last 15 min: 1 completed, 2 failed" in table
    header = next(line for line in table.splitlines() if line.startswith("queue"))
    row = next(line for line in table.splitlines() if line.startswith("sms"))
    assert len(header) == len(row)  # aligned columns


def test_stats_beyond_its_limit_breaks_down_unfinished_jobs_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from jobq.admin import views
    from jobq.cli import main

    url = f"sqlite:///{tmp_path / 'big.db'}"
    seed(url)
    monkeypatch.setattr(views, "BREAKDOWN_LIMIT", 5)  # a big table, in effect
    assert main(["stats", "--url", url]) == 0
    out = capsys.readouterr().out
    assert "waiting and running jobs only, at 9 jobs (--all counts finished ones too" in out
    assert "send_bulk" not in out  # its jobs all failed: not broken down
    assert main(["stats", "--all", "--json", "--url", url]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["breakdown"] == "all" and data["by_type"]["send_bulk"] == {"failed": 2}


def test_list_filters_and_pages(queue_url: str, tmp_path: Path) -> None:
    ids = seed(queue_url)
    # Newest first; jobs created in the same millisecond come by id, whose
    # random part does not follow the order of the enqueues.
    with jobq.connect_sync(queue_url) as queue:
        created = {i: queue.get_job(i).created_at for i in ids["waiting"]}
    newest = sorted(ids["waiting"], key=lambda i: (created[i], i), reverse=True)
    page = json.loads(ok(run("list", "--json", "--queue", "sms", "--limit", "2", url=queue_url, cwd=tmp_path)))
    assert page["total"] == 5 and len(page["jobs"]) == 2
    assert [j["id"] for j in page["jobs"]] == newest[:2]
    second = json.loads(ok(run("list", "--json", "--queue", "sms", "--limit", "2", "--page", "2", url=queue_url, cwd=tmp_path)))
    assert [j["id"] for j in second["jobs"]] == newest[2:4]
    failed = json.loads(ok(run("list", "--json", "--status", "failed", url=queue_url, cwd=tmp_path)))
    assert {j["id"] for j in failed["jobs"]} == set(ids["failed"])
    assert all(len(j["data_preview"]) <= 120 for j in failed["jobs"])
    assert json.loads(ok(run("list", "--json", "--type", "send_email", url=queue_url, cwd=tmp_path)))["total"] == 2
    text = ok(run("list", "--status", "failed", url=queue_url, cwd=tmp_path))
    assert text.splitlines()[0].split() == ["id", "type", "queue", "status", "attempts", "created", "(UTC)", "payload"]
    assert "1-2 of 2 jobs" in text
    paged = ok(run("list", "--limit", "3", url=queue_url, cwd=tmp_path))
    assert "next page: --offset 3 (or --after " in paged
    # By cursor: the page after the first, as --page 2 reads it.
    cursor = page["next_cursor"]
    by_cursor = json.loads(ok(run("list", "--json", "--queue", "sms", "--limit", "2", "--after", cursor, url=queue_url, cwd=tmp_path)))
    assert [j["id"] for j in by_cursor["jobs"]] == newest[2:4] and by_cursor["next_cursor"]
    last = ok(run("list", "--queue", "sms", "--limit", "2", "--after", by_cursor["next_cursor"], url=queue_url, cwd=tmp_path))
    assert "1 jobs past the cursor, of 5" in last and "next page" not in last
    one_line_error(run("list", "--after", "nonsense", url=queue_url, cwd=tmp_path), "after must be a page's next_cursor")


def test_show_every_field(queue_url: str, tmp_path: Path) -> None:
    ids = seed(queue_url)
    data = json.loads(ok(run("show", ids["done"], "--json", url=queue_url, cwd=tmp_path)))
    assert data["status"] == "completed" and data["result"] == {"ok": True}
    assert data["data"] == {"to": "b@example.com"} and data["completed_at"] and data["attempts"] == 0
    text = ok(run("show", ids["failed"][0], url=queue_url, cwd=tmp_path))
    for expected in ("status", "failed", "attempts", "payload:", '"batch": 0', "provider down 0", "timeline (UTC):", "created"):
        assert expected in text


def test_show_prints_progress_cancel_times_and_the_attempt_history(queue_url: str, tmp_path: Path) -> None:
    with jobq.connect_sync(queue_url) as queue:
        job = queue.enqueue("send", {"n": 1}, max_attempts=2, unique_key="order-7")
        claimed = queue.dequeue()
        assert claimed is not None
        try:
            {}["missing_field"]
        except KeyError as exc:
            queue.fail(claimed, exc, jobq.RetryDirective(True, 0))
        claimed = queue.dequeue()
        assert claimed is not None
        queue.set_progress(claimed, 0.25, "a quarter")
        queue.cancel(job.id)  # a cancel request on the running job
    data = json.loads(ok(run("show", job.id, "--json", url=queue_url, cwd=tmp_path)))
    assert data["progress"] == 0.25 and data["progress_message"] == "a quarter"
    assert data["unique_key"] == "order-7" and data["cancel_requested_at"] and data["cancelled_at"] is None
    assert data["attempts"] == 1  # the job's count, as before
    (first,) = data["history"]
    assert (first["attempt"], first["outcome"], first["error_type"], first["error"]) == (
        1, "retry", "KeyError", "'missing_field'",
    )  # fmt: skip
    assert "missing_field" in first["traceback"]
    text = ok(run("show", job.id, url=queue_url, cwd=tmp_path))
    for expected in ("progress", "0.25", "a quarter", "order-7", "cancel_requested_at", "cancel requested",
                     "attempt history (1):", "#1 retry", "KeyError: 'missing_field'", "| Traceback"):  # fmt: skip
        assert expected in text, expected


def test_workers_lists_the_registry(queue_url: str, tmp_path: Path) -> None:
    now = int(time.time() * 1000)
    with jobq.connect_sync(queue_url) as queue:
        assert ok(run("workers", url=queue_url, cwd=tmp_path)).strip() == "no workers registered"
        for worker_id, beat in (("alive-1", now), ("gone-2", now - 60_000)):
            record = WorkerRecord(worker_id, "box", 7, '["sms"]', 4, "0.1.0", beat, beat, 1, 9)
            queue.run(lambda q, r=record: q.store.heartbeat(r, forget_before_ms=0))
    text = ok(run("workers", url=queue_url, cwd=tmp_path))
    lines = text.strip().splitlines()
    assert len(lines) == 3 and "worker" in lines[0]
    assert [line.split()[:2] for line in lines[1:]] == [["gone-2", "DEAD"], ["alive-1", "alive"]]
    rows = json.loads(ok(run("workers", "--json", url=queue_url, cwd=tmp_path)))
    assert [(w["id"], w["alive"], w["queues"], w["done"]) for w in rows] == [
        ("gone-2", False, ["sms"], 9), ("alive-1", True, ["sms"], 9),
    ]  # fmt: skip


def test_retry_cancel_remove(queue_url: str, tmp_path: Path) -> None:
    ids = seed(queue_url)
    assert ok(run("retry", ids["failed"][0], url=queue_url, cwd=tmp_path)).split() == [ids["failed"][0], "pending"]
    one_line_error(run("retry", ids["waiting"][0], url=queue_url, cwd=tmp_path), "only failed or cancelled")
    assert ok(run("cancel", ids["waiting"][0], url=queue_url, cwd=tmp_path)).strip().endswith("cancelled")
    one_line_error(run("cancel", ids["done"], url=queue_url, cwd=tmp_path), "cannot be cancelled")
    assert ok(run("retry", ids["waiting"][0], "--json", url=queue_url, cwd=tmp_path)).strip() == json.dumps(
        {"id": ids["waiting"][0], "status": "pending"}
    )
    assert json.loads(ok(run("retry", "--all-failed", "--type", "nope", "--json", url=queue_url, cwd=tmp_path))) == {"retried": 0, "not_retried": []}
    assert "retried 1 failed jobs" in ok(run("retry", "--all-failed", "--yes", url=queue_url, cwd=tmp_path))
    assert ok(run("remove", ids["done"], "-y", url=queue_url, cwd=tmp_path)).strip() == f"{ids['done']} removed"
    with jobq.connect_sync(queue_url) as queue:
        counts = queue.counts()
        assert counts[jobq.JobStatus.FAILED] == 0 and counts[jobq.JobStatus.PENDING] == 7
        assert queue.get_job(ids["done"]) is None


def test_prune(queue_url: str, tmp_path: Path) -> None:
    seed(queue_url)
    assert ok(run("prune", url=queue_url, cwd=tmp_path)).strip() == "deleted 0 jobs"  # all younger than a day
    result = json.loads(ok(run("prune", "--older-than", "0", "--status", "failed", "--json", "--yes", url=queue_url, cwd=tmp_path)))
    assert result == {"deleted": 2}
    assert ok(run("prune", "--older-than", "0s", "--yes", url=queue_url, cwd=tmp_path)).strip() == "deleted 1 jobs"
    with jobq.connect_sync(queue_url) as queue:
        assert sum(queue.counts().values()) == 6


@pytest.mark.parametrize(
    "args, message",
    [
        (["show", "no-such-id"], "no job with id 'no-such-id'"),
        (["retry", "no-such-id"], "no job with id"),
        (["cancel", "no-such-id"], "no job with id"),
        (["remove", "no-such-id"], "no job with id"),
        (["retry"], "give a job id or --all-failed"),
    ],
)
def test_unknown_ids_are_one_line_errors(queue_url: str, tmp_path: Path, args: list[str], message: str) -> None:
    seed(queue_url)
    one_line_error(run(*args, url=queue_url, cwd=tmp_path), message)


@pytest.mark.parametrize("command", [["stats"], ["list"], ["show", "x"], ["retry", "x"], ["cancel", "x"], ["remove", "x"], ["prune"], ["dashboard"]])
def test_bad_url_and_unreachable_database(tmp_path: Path, command: list[str]) -> None:
    one_line_error(run(*command, url="redis://localhost", cwd=tmp_path), "unknown queue URL scheme")
    if POSTGRES:
        unreachable = "postgresql://nobody@127.0.0.1:1/nothing?pool_timeout=2"
        result = run(*command, url=unreachable, cwd=tmp_path)
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.strip().count("\n") == 0, result.stderr
    missing_dir = f"sqlite:///{tmp_path / 'no' / 'such' / 'dir' / 'jobq.db'}"
    result = run(*command, url=missing_dir, cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip() and result.stderr.strip().count("\n") == 0, result.stderr  # one line


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_dashboard_refuses_a_public_bind_without_authentication(tmp_path: Path) -> None:
    env = {"JOBQ_DASHBOARD_TOKEN": "", "JOBQ_DASHBOARD_USER": "", "JOBQ_DASHBOARD_PASSWORD": ""}
    url = f"sqlite:///{tmp_path / 'jobq.db'}"
    one_line_error(run("dashboard", "--host", "0.0.0.0", url=url, cwd=tmp_path, env=env), "refusing to serve on 0.0.0.0")
    one_line_error(run("dashboard", "--host", "0.0.0.0", "--no-auth", url=url, cwd=tmp_path, env={**env, "JOBQ_DASHBOARD_TOKEN": "t" * 20}), "loopback")


def test_dashboard_serves_the_demo_database(queue_url: str, tmp_path: Path) -> None:
    """With no credentials set, it binds 127.0.0.1 and prints a login URL
    carrying a fresh token."""
    ids = seed(queue_url)
    port = free_port()
    env = {**os.environ, "JOBQ_DASHBOARD_TOKEN": "", "JOBQ_DASHBOARD_USER": "", "JOBQ_DASHBOARD_PASSWORD": ""}
    server = subprocess.Popen(
        [sys.executable, "-m", "jobq", "dashboard", "--url", queue_url, "--port", str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert f"http://127.0.0.1:{port}/login?token=" in line, line
        login = line.split()[-1]
        token = login.split("token=")[1]
        deadline = time.monotonic() + 30
        while True:
            try:
                request = urllib.request.Request(
                    f"http://127.0.0.1:{port}/api/jobs?status=failed", headers={"Authorization": f"Bearer {token}"}
                )
                with urllib.request.urlopen(request, timeout=5) as response:
                    body = json.loads(response.read())
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert {j["id"] for j in body["jobs"]} == set(ids["failed"])
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/jobs", timeout=5)
            raise AssertionError("served without the token")
        except urllib.error.HTTPError as exc:
            assert exc.code == 401
    finally:
        server.terminate()
        server.communicate(timeout=30)
    assert server.returncode == 0  # a graceful stop on SIGTERM
