"""The ``jobq`` command on SQLite files it must not change, run as a real
subprocess: another application's ``jobs`` table is refused in one line and
the file left as it was; the read commands (stats, list, show) never migrate,
and say so in one line when a file needs it."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import jobq
from jobq.store.sqlite.schema import LATEST_VERSION

# The jobq under test, for the subprocesses whatever their working directory.
SRC = Path(jobq.__file__).resolve().parents[1]
APP_JOBS = (
    "CREATE TABLE jobs (id INTEGER PRIMARY KEY, type TEXT, data TEXT, status TEXT, priority INTEGER,"
    " attempts INTEGER, max_attempts INTEGER, delay INTEGER, created_at INTEGER, process_at INTEGER,"
    " error TEXT, metadata TEXT)"
)
KMSG_JOBS = (
    "CREATE TABLE jobs (id TEXT PRIMARY KEY, type TEXT NOT NULL, data TEXT NOT NULL,"
    " status TEXT NOT NULL DEFAULT 'pending', priority INTEGER NOT NULL DEFAULT 0,"
    " attempts INTEGER NOT NULL DEFAULT 0, max_attempts INTEGER NOT NULL DEFAULT 3,"
    " delay INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL, process_at INTEGER NOT NULL,"
    " completed_at INTEGER, failed_at INTEGER, error TEXT, metadata TEXT)"
)
KMSG_ROW = (
    "INSERT INTO jobs (id, type, data, status, priority, attempts, max_attempts, delay, created_at,"
    " process_at, metadata) VALUES ('k1', 'send', '{}', 'pending', 0, 0, 3, 0, 1700000000000, 1700000000000, '{}')"
)


def jobq_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "JOBQ_URL"}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return subprocess.run(
        [sys.executable, "-m", "jobq", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def make_file(path: Path, *statements: str) -> Path:
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in statements:
        conn.execute(statement)
    conn.close()
    return path


def state(path: Path) -> tuple[bytes, list[str], str]:
    """The file's bytes, the files beside it and its journal mode."""
    content, beside = path.read_bytes(), sorted(os.listdir(path.parent))
    conn = sqlite3.connect(path)
    try:
        return content, beside, str(conn.execute("PRAGMA journal_mode").fetchone()[0])
    finally:
        conn.close()


def assert_one_line_error(done: subprocess.CompletedProcess[str], *says: str) -> None:
    assert done.returncode == 1, done
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("jobq: error: ") and "Traceback" not in done.stderr
    for text in says:
        assert text in lines[0]


@pytest.mark.parametrize(
    "command", [["stats"], ["list"], ["show", "1"], ["enqueue", "t"], ["migrate"], ["prune"]]
)
def test_another_apps_jobs_table_is_refused_in_one_line(tmp_path: Path, command: list[str]) -> None:
    path = make_file(tmp_path / "app.db", APP_JOBS, "INSERT INTO jobs (id, type) VALUES (1, 'mine')")
    before = state(path)
    assert before[2] == "delete"
    done = jobq_cli(*command, "--url", "sqlite:///app.db", cwd=tmp_path)
    assert_one_line_error(done, "table 'jobs' in 'app.db' is not a job table jobq can use", "failed_at")
    assert state(path) == before


def test_the_table_option_puts_jobq_beside_it(tmp_path: Path) -> None:
    path = make_file(tmp_path / "app.db", APP_JOBS, "INSERT INTO jobs (id, type) VALUES (1, 'mine')")
    url = "sqlite:///app.db?table=jobq_jobs"
    enqueued = jobq_cli("enqueue", "send", '{"to": 1}', "--url", url, cwd=tmp_path)
    assert enqueued.returncode == 0, enqueued.stderr
    job_id = enqueued.stdout.strip()
    shown = jobq_cli("show", job_id, "--json", "--url", url, cwd=tmp_path)
    assert shown.returncode == 0 and '"to": 1' in shown.stdout
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT id, type FROM jobs").fetchall() == [(1, "mine")]
    conn.close()


@pytest.mark.parametrize("command", [["stats"], ["list"], ["show", "k1"]])
def test_read_commands_never_migrate(tmp_path: Path, command: list[str]) -> None:
    path = make_file(tmp_path / "kmsg.db", KMSG_JOBS, KMSG_ROW)
    before = state(path)
    done = jobq_cli(*command, "--url", "sqlite:///kmsg.db", cwd=tmp_path)
    assert_one_line_error(done, "k-msg's, not yet upgraded", "jobq migrate sqlite:///kmsg.db")
    assert state(path) == before

    migrated = jobq_cli("migrate", "--url", "sqlite:///kmsg.db", cwd=tmp_path)
    assert migrated.returncode == 0 and f"schema version 0 -> {LATEST_VERSION}" in migrated.stdout, migrated
    current = state(path)
    done = jobq_cli(*command, "--url", "sqlite:///kmsg.db", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert state(path) == current  # a current file is read, not written


def test_read_commands_do_not_create_a_file(tmp_path: Path) -> None:
    done = jobq_cli("stats", "--url", "sqlite:///nothing.db", cwd=tmp_path)
    assert_one_line_error(done, "'nothing.db' does not exist", "jobq migrate sqlite:///nothing.db")
    assert os.listdir(tmp_path) == []
