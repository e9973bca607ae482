"""The ``jobq`` command at its edges, as real subprocesses: every refusal is
one line on stderr and a non-zero exit, never a traceback; a row no datetime
can hold still lists and shows; ``retry --all-failed`` retries what it can
and names the rest."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from suite_parts import postgres_param

import jobq


@pytest.fixture(params=["sqlite", postgres_param()])
def backend(request: pytest.FixtureRequest) -> str:
    """Overrides the suite's backend: the CLI runs in other processes, so no memory://."""
    return str(request.param)


def run(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobq", *args], cwd=cwd, env=dict(os.environ),
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def one_line_error(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode != 0, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jobq: error: "), result.stderr
    assert message in lines[0], result.stderr


BIG = str(2**70)


@pytest.mark.parametrize(
    "args, message",
    [
        (["enqueue", "t", "{}", "--delay", "1e12"], "100 years"),
        (["enqueue", "t", "{}", "--delay", "1e300"], "100 years"),
        (["enqueue", "t", "{}", "--delay", "nan"], "100 years"),
        (["enqueue", "t", "{}", "--max-attempts", BIG], "max_attempts"),
        (["enqueue", "t", "{}", "--max-attempts", str(2**63)], "max_attempts"),
        (["enqueue", "t", "{}", "--priority", BIG], "priority"),
        (["enqueue", "t", "[" * 3000 + "]" * 3000], "nested too deeply"),
        (["list", "--offset", BIG], "offset"),
        (["list", "--page", BIG], "offset"),
        (["prune", "--older-than", "1e300d"], "older_than"),
        (["prune", "--older-than", "1e400d"], "older_than"),
        (["dashboard", "--port", "70000"], "--port"),
        (["dashboard", "--port", "0"], "--port"),
        (["worker", "app:make", "--metrics-port", "70000"], "--metrics-port"),
    ],
    ids=lambda value: " ".join(value)[:50] if isinstance(value, list) else None,
)
def test_out_of_range_arguments_are_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    one_line_error(run(*args, "--url", url, cwd=tmp_path), message)
    if args[0] == "enqueue":
        with jobq.connect_sync(url) as queue:
            assert sum(queue.counts().values()) == 0  # nothing was stored


def test_metadata_is_limited_like_the_payload(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'jobs.db'}?max_payload_bytes=1000"
    metadata = '{"a": "' + "x" * 1000 + '"}'
    one_line_error(run("enqueue", "t", "{}", "--metadata", metadata, "--url", url, cwd=tmp_path), "metadata is")
    assert run("enqueue", "t", "{}", "--metadata", '{"a": "x"}', "--url", url, cwd=tmp_path).returncode == 0


def test_a_file_that_is_not_a_database_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("my notes, not a database\n" * 200)
    for command in (["stats"], ["list"], ["enqueue", "t"], ["show", "x"]):
        one_line_error(run(*command, "--url", f"sqlite:///{path}", cwd=tmp_path), "not a database")
    assert path.read_text().startswith("my notes")


def test_sqlite_urls_that_cannot_work_are_one_line(tmp_path: Path) -> None:
    one_line_error(run("stats", "--url", "sqlite:///:memory:", cwd=tmp_path), "memory://")
    one_line_error(run("stats", "--url", f"sqlite:///{tmp_path}/q.db?busy_timeout=nan", cwd=tmp_path), "busy_timeout")
    assert run("enqueue", "t", "--url", f"sqlite:///{tmp_path}/my%20jobs.db", cwd=tmp_path).returncode == 0
    assert (tmp_path / "my jobs.db").exists()


def test_a_stored_time_beyond_datetime_still_lists_and_shows(tmp_path: Path) -> None:
    """A row another program wrote with process_at far ahead (year 3 million)."""
    path = tmp_path / "jobs.db"
    url = f"sqlite:///{path}"
    with jobq.connect_sync(url) as queue:
        far = queue.enqueue("far", {"n": 1}).id
        near = queue.enqueue("near", {"n": 2}).id
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE jobs SET process_at = ? WHERE id = ?", (10**17, far))
    listing = run("list", "--url", url, cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    assert far in listing.stdout and near in listing.stdout
    shown = run("show", far, "--url", url, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "9999-12-31" in shown.stdout and "delayed" in shown.stdout
    assert run("list", "--json", "--url", url, cwd=tmp_path).returncode == 0


def test_retry_all_failed_retries_what_it_can_and_names_the_rest(queue_url: str, tmp_path: Path) -> None:
    with jobq.connect_sync(queue_url) as queue:
        failed = {}
        for key in ("a", "daily", "b"):
            job = queue.enqueue("report", {"key": key}, max_attempts=1, unique_key=key)
            claimed = queue.dequeue()
            assert claimed is not None and claimed.id == job.id
            queue.fail(claimed, "boom")
            failed[key] = job.id
        queue.enqueue("report", {"key": "daily"}, unique_key="daily")  # holds the key now
    result = run("retry", "--all-failed", "--yes", "--url", queue_url, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout.strip() == "retried 2 failed jobs; 1 could not be retried"
    one_line_error(result, failed["daily"])
    assert "unique key" in result.stderr
    with jobq.connect_sync(queue_url) as queue:
        statuses = {key: queue.get_job(job_id).status for key, job_id in failed.items()}  # type: ignore[union-attr]
    assert statuses == {"a": jobq.JobStatus.PENDING, "daily": jobq.JobStatus.FAILED, "b": jobq.JobStatus.PENDING}
    as_json = run("retry", "--all-failed", "--json", "--yes", "--url", queue_url, cwd=tmp_path)
    assert as_json.returncode == 1 and as_json.stderr == ""
    import json

    answer = json.loads(as_json.stdout)
    assert answer["retried"] == 0 and [item["id"] for item in answer["not_retried"]] == [failed["daily"]]


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    """Worker modules that cannot start."""
    (tmp_path / "syntax_error.py").write_text("def broken(:\n")
    (tmp_path / "raises_at_import.py").write_text("raise RuntimeError('no config file')\n")
    (tmp_path / "factory_raises.py").write_text(
        textwrap.dedent(
            """
            def make(queue):
                raise RuntimeError("factory says no")

            async def make_async(queue):
                raise KeyError("missing")
            """
        )
    )
    return tmp_path


@pytest.mark.parametrize(
    "target, message",
    [
        ("syntax_error:processor", "SyntaxError"),
        ("raises_at_import:processor", "RuntimeError: no config file"),
        ("factory_raises:make", "factory_raises:make raised RuntimeError: factory says no"),
        ("factory_raises:make_async", "factory_raises:make_async raised KeyError"),
    ],
)
def test_a_worker_that_cannot_start_says_why_in_one_line(app_dir: Path, target: str, message: str) -> None:
    result = run("worker", target, "--url", f"sqlite:///{app_dir / 'jobs.db'}", cwd=app_dir)
    one_line_error(result, message)
    assert result.returncode == 1


@pytest.mark.slow
@pytest.mark.parametrize(
    "target, message",
    [("factory_raises:make", "raised RuntimeError: factory says no"), ("syntax_error:processor", "SyntaxError")],
)
def test_supervised_workers_that_cannot_start_stop_the_supervisor(
    app_dir: Path, target: str, message: str
) -> None:
    result = run(
        "--log-level", "CRITICAL", "worker", target, "--processes", "2",
        "--url", f"sqlite:///{app_dir / 'jobs.db'}", cwd=app_dir, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    # One line from the supervisor's own check, or one from each child.
    assert 1 <= len(lines) <= 2 and all(line.startswith("jobq: error: ") and message in line for line in lines)
