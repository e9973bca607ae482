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
        stdin=subprocess.DEVNULL,
    )


def test_enqueue_then_stats_on_the_default_url(tmp_path: Path) -> None:
    first = run("enqueue", "send_message", '{"to": "+8210"}', "--priority", "10", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    job_id = first.stdout.strip()
    assert (tmp_path / "jobq.db").exists()  # sqlite:///jobq.db is the default
    later = run("enqueue", "later", "--delay", "60", cwd=tmp_path)
    assert later.returncode == 0, later.stderr

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


APP = """
import datetime as dt
import jobq

app = jobq.App()  # $JOBQ_URL, else sqlite:///jobq.db

@app.task(name="sms.send", queue="sms", priority=4, max_attempts=6)
def send(to: str, count: int = 1, at: dt.datetime | None = None) -> None: ...

@app.task(name="mail.send")
def mail(to: str) -> None: ...

@app.task(name="other.send")
def other_send(to: str) -> None: ...
"""


def test_enqueue_defers_a_task_of_an_app(tmp_path: Path) -> None:
    (tmp_path / "tasksapp.py").write_text(APP)
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    by_json = run("enqueue", "--app", "tasksapp:app", "sms.send", '{"to": "12345", "count": 2}', cwd=tmp_path, env=env)
    assert by_json.returncode == 0, by_json.stderr
    # --arg: text for a str parameter (so "12345" stays a string), JSON otherwise.
    by_args = run(
        "enqueue", "--app", "tasksapp:app", "sms.send", "--arg", "to=12345", "--arg", "count=3",
        "--arg", "at=2026-12-07T09:00:00Z", "--priority", "9", cwd=tmp_path, env=env,
    )  # fmt: skip
    assert by_args.returncode == 0, by_args.stderr
    short = run("enqueue", "--app", "tasksapp:app", "mail", "--arg", "to=a@example.com", cwd=tmp_path, env=env)
    assert short.returncode == 0, short.stderr  # the function's name, when only one task has it
    with jobq.connect_sync(f"sqlite:///{tmp_path / 'jobq.db'}") as queue:
        first = queue.get_job(by_json.stdout.strip())
        second = queue.get_job(by_args.stdout.strip())
        third = queue.get_job(short.stdout.strip())
    assert (first.type, first.data, first.queue, first.priority, first.max_attempts) == (
        "sms.send", {"to": "12345", "count": 2}, "sms", 4, 6,
    )  # fmt: skip
    assert second.data == {"to": "12345", "count": 3, "at": "2026-12-07T09:00:00Z"} and second.priority == 9
    assert third.type == "mail.send"


@pytest.mark.parametrize(
    "args, message",
    [
        (["sms.send", '{"count": 1}'], "sms.send(): missing a required argument: 'to'"),
        (["sms.send", "--arg", "to=1", "--arg", "cnt=2"], "unexpected keyword argument 'cnt'"),
        (["sms.send", "--arg", "to=1", "--arg", "count=many"], "argument 'count' does not fit int"),
        (["sms.send", "[1, 2]"], "are a JSON object, not list"),
        (["nope"], "the app has no task 'nope' (its tasks: mail.send, other.send, sms.send)"),
        (["send"], "'send' names several tasks"),
        (["sms.send", "--arg", "to"], "--arg takes NAME=VALUE"),
    ],
)
def test_enqueue_with_an_app_refuses_bad_arguments_in_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "tasksapp.py").write_text(APP)
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    done = run("enqueue", "--app", "tasksapp:app", *args, cwd=tmp_path, env=env)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr
    assert not (tmp_path / "jobq.db").exists() or jobq.connect_sync(f"sqlite:///{tmp_path / 'jobq.db'}").size() == 0


def test_arg_without_app_and_an_app_that_is_not_one_are_one_line_errors(tmp_path: Path) -> None:
    (tmp_path / "notapp.py").write_text("app = 42\n")
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    done = run("enqueue", "t", "--arg", "a=1", cwd=tmp_path, env=env)
    assert done.returncode == 1 and "--arg names a task's argument; it needs --app" in done.stderr
    done = run("enqueue", "--app", "notapp:app", "t", cwd=tmp_path, env=env)
    assert done.returncode == 1 and "notapp:app is a int, not a jobq.App" in done.stderr
