"""A real ``jobq worker --log-format json`` process: every line it logs is a
JSON object; a retry is one WARNING line, a final failure one ERROR line
with the traceback; the handler's own lines carry the job; the start line
says where the jobs are and which handlers run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import jobq
from jobq.cli import main

DEADLINE = 60.0  # seconds; generous, a pass never comes near it

APP = """
import logging

import jobq

log = logging.getLogger("myapp")


def make(queue):
    processor = jobq.JobProcessor(queue, retry_delays=[0])

    @processor.handler("charge")
    def charge(job):
        log.info("charging %s", job.data)
        raise ValueError(f"card {job.data} declined")

    processor.handle("ping", lambda job: "pong")
    return processor
"""


def lines_of(path: Path) -> list[dict[str, Any]]:
    text = path.read_text()
    complete = text[: text.rfind("\n") + 1]
    return [json.loads(line) for line in complete.splitlines() if line.strip()]


def test_a_worker_logs_json_lines_with_the_retry_and_the_final_traceback(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(textwrap.dedent(APP))
    db = tmp_path / "jobs.db"
    url = f"sqlite:///{db}"
    with jobq.connect_sync(url) as queue:
        job = queue.enqueue("charge", 42, max_attempts=2)
    err = tmp_path / "worker.err"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    with err.open("wb") as stderr:
        worker = subprocess.Popen(
            [sys.executable, "-m", "jobq", "worker", "app:make", "--url", url, "--log-format", "json",
             "--log-level", "info"],
            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=stderr,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + DEADLINE
        while not any(line.get("outcome") == "failed" for line in lines_of(err)):
            assert worker.poll() is None, err.read_text()
            assert time.monotonic() < deadline, err.read_text()
            time.sleep(0.05)
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(DEADLINE) == 0, err.read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    lines = lines_of(err)  # every line parses: nothing else was written
    assert len(lines) == len(err.read_text().splitlines())
    start = next(line for line in lines if line["logger"] == "jobq.worker")
    assert f"sqlite:///{db}" in start["message"] and "handlers charge,ping" in start["message"]
    (retry,) = [line for line in lines if line.get("outcome") == "retry"]
    assert retry["level"] == "WARNING" and retry["job_id"] == job.id and retry["job_type"] == "charge"
    assert (retry["attempt"], retry["max_attempts"], retry["error_type"]) == (1, 2, "ValueError")
    assert retry["error"] == "card 42 declined" and retry["duration"] >= 0 and "traceback" not in retry
    (failed,) = [line for line in lines if line.get("outcome") == "failed"]
    assert failed["level"] == "ERROR" and failed["attempt"] == 2 and failed["exception"] == "ValueError"
    assert failed["traceback"].startswith("Traceback (most recent call last):")
    assert 'in charge\n' in failed["traceback"]
    assert failed["traceback"].endswith("ValueError: card 42 declined")
    own = [line for line in lines if line["logger"] == "myapp"]
    assert len(own) == 2 and all(line["job_id"] == job.id and line["job_type"] == "charge" for line in own)
    assert lines[-1]["logger"] == "jobq.worker" and "stopped" in lines[-1]["message"]
    assert not any(line["message"].startswith("jobq:") for line in lines)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["worker", "app:make", "--log-format", "xml"], "--log-format takes one of text, json; not 'xml'"),
        (["worker", "app:make", "--log-level", "loud"], "--log-level takes one of DEBUG"),
        (["--log-level", "loud", "worker", "app:make"], "--log-level takes one of DEBUG"),
    ],
)
def test_a_bad_log_option_is_a_one_line_error(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1 and err.startswith("jobq: error:")


def test_a_bad_log_format_in_the_environment_is_an_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("JOBQ_LOG_FORMAT", "yaml")
    assert main(["worker", "app:make"]) == 2
    assert "$JOBQ_LOG_FORMAT='yaml': the log format is one of text, json" in capsys.readouterr().err
