"""``jobq pause`` / ``jobq resume`` as real subprocesses, on SQLite and on
PostgreSQL: one line each, the state seen by other processes and by
``jobq stats``, errors in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from suite_parts import postgres_param

import jobq


@pytest.fixture(params=["sqlite", postgres_param()])
def backend(request: pytest.FixtureRequest) -> str:
    """The CLI runs in other processes, so no memory://."""
    return str(request.param)


def run(*args: str, url: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobq", *args, "--url", url],
        cwd=cwd, env=dict(os.environ), capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_pause_and_resume(queue_url: str, tmp_path: Path) -> None:
    with jobq.connect_sync(queue_url) as queue:
        queue.enqueue("send", queue="sms")
    assert ok(run("pause", "sms", url=queue_url, cwd=tmp_path)) == "queue sms paused\n"
    assert ok(run("pause", "sms", url=queue_url, cwd=tmp_path)) == "queue sms was already paused\n"
    with jobq.connect_sync(queue_url) as queue:  # another process sees it, through the synchronous twin
        assert list(queue.paused()) == ["sms"]
        assert queue.pause("mail") is True
    stats = ok(run("stats", url=queue_url, cwd=tmp_path))
    assert "paused: mail (since " in stats and ", sms (since " in stats
    data = json.loads(ok(run("stats", "--json", url=queue_url, cwd=tmp_path)))
    assert sorted(data["paused"]) == ["mail", "sms"]
    assert ok(run("resume", "sms", url=queue_url, cwd=tmp_path)) == "queue sms resumed\n"
    assert ok(run("resume", "sms", url=queue_url, cwd=tmp_path)) == "queue sms was not paused\n"
    answer = json.loads(ok(run("resume", "mail", "--json", url=queue_url, cwd=tmp_path)))
    assert answer == {"queue": "mail", "paused": False, "changed": True}
    assert "paused:" not in ok(run("stats", url=queue_url, cwd=tmp_path))
    with jobq.connect_sync(queue_url) as queue:
        assert queue.paused() == {}


@pytest.mark.parametrize("args", [("pause", ""), ("resume", "a\x01" * 200)])
def test_errors_are_one_line(queue_url: str, tmp_path: Path, args: tuple[str, ...]) -> None:
    result = run(*args, url=queue_url, cwd=tmp_path)
    assert result.returncode == 1, result.stdout
    assert result.stderr.startswith("jobq: error: ") and result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_missing_queue_name_is_a_usage_error(queue_url: str, tmp_path: Path) -> None:
    result = run("pause", url=queue_url, cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
