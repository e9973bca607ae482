"""The ``jobq`` command, run as a real subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import jobq


def run(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jobq", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_enqueue_then_stats_on_the_default_url(tmp_path: Path) -> None:
    first = run("enqueue", "send_message", '{"to": "+8210"}', "--priority", "10", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    job_id = first.stdout.strip()
    assert (tmp_path / "jobq.db").exists()  # sqlite:///jobq.db is the default
    run("enqueue", "later", "--delay", "60", cwd=tmp_path)

    stats = run("stats", "--json", cwd=tmp_path)
    assert stats.returncode == 0, stats.stderr
    counts = json.loads(stats.stdout)["counts"]
    assert counts["pending"] == 1 and counts["delayed"] == 1

    table = run("stats", cwd=tmp_path).stdout
    assert "pending" in table and "total" in table

    with jobq.connect_sync(f"sqlite:///{tmp_path / 'jobq.db'}") as queue:
        job = queue.get_job(job_id)
        assert job.type == "send_message" and job.data == {"to": "+8210"} and job.priority == 10


def test_url_comes_from_the_environment(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'other.db'}"
    assert run("enqueue", "x", env={"JOBQ_URL": url}, cwd=tmp_path).returncode == 0
    assert (tmp_path / "other.db").exists() and not (tmp_path / "jobq.db").exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["enqueue", "x", "{not json"], "not valid JSON"),
        (["enqueue", "", "1"], "must not be empty"),
        (["enqueue", "x", "1", "--max-attempts", "0"], "max_attempts"),
        (["stats", "--url", "redis://localhost"], "unknown queue URL scheme"),
        (["worker", "no_such_module:processor"], "cannot import"),
    ],
)
def test_errors_are_one_line_without_traceback(tmp_path: Path, args: list[str], message: str) -> None:
    result = run(*args, cwd=tmp_path)
    assert result.returncode == 1
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0


def test_worker_runs_jobs_and_stops_on_sigterm(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(
        textwrap.dedent(
            """
            import jobq

            def make(queue):
                processor = jobq.JobProcessor(queue, concurrency=4)

                @processor.handler("double")
                def double(job):
                    return job.data * 2

                return processor
            """
        )
    )
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    with jobq.connect_sync(url) as queue:
        ids = [queue.enqueue("double", n).id for n in range(20)]
    worker = subprocess.Popen(
        [sys.executable, "-m", "jobq", "worker", "app:make", "--url", url, "--concurrency", "2"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        with jobq.connect_sync(url) as queue:
            while time.monotonic() < deadline:
                if queue.counts()[jobq.JobStatus.COMPLETED] == 20:
                    break
                time.sleep(0.05)
            results = {queue.get_job(i).result for i in ids}
        assert results == {n * 2 for n in range(20)}
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=30)
        assert worker.returncode == 0, stderr
        assert "Traceback" not in stderr
    finally:
        if worker.poll() is None:
            worker.kill()
        worker.communicate()


def test_demo_runs_to_completion(tmp_path: Path) -> None:
    result = run("demo", "--jobs", "200", "--seed", "7", "--quiet", cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "summary" in result.stdout and "completed" in result.stdout
    with jobq.connect_sync(f"sqlite:///{tmp_path / 'jobq.db'}") as queue:
        counts = queue.counts()
    assert counts[jobq.JobStatus.COMPLETED] + counts[jobq.JobStatus.FAILED] == 200
