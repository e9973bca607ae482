"""The ``jobq`` command forgives a new user's mistakes, as a real subprocess:
global options after the command, "did you mean" for commands, options and
choices, ``--version``, durations such as ``10m`` everywhere, a missing
SQLite file refused by the read commands, destructive commands that ask
first, worker targets that name the wrong thing, a dashboard port in use,
and a demo of no jobs. Every refusal is one line on stderr and a non-zero
exit."""

from __future__ import annotations

import json
import os
import pty
import select
import socket
import subprocess
import sys
import textwrap
import time
from datetime import timedelta
from pathlib import Path

import pytest
from suite_parts import postgres_param

import jobq

TIMEOUT = 60  # seconds one command may take; generous


def jobq_cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("JOBQ_") or k.startswith("JOBQ_TEST")}
    return subprocess.run(
        [sys.executable, "-m", "jobq", *args], cwd=cwd, env={**environment, **(env or {})},
        capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def refused(done: subprocess.CompletedProcess[str], *says: str, status: int = 1) -> str:
    """The one line of a refusal, checked."""
    assert done.returncode == status, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("jobq: error: "), done.stderr
    for text in says:
        assert text in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'jobs.db'}"


# -- the command line ---------------------------------------------------------------


def test_global_options_go_before_or_after_the_command(tmp_path: Path, url: str) -> None:
    assert jobq_cli("enqueue", "t", "--url", url, cwd=tmp_path).returncode == 0
    for args in (
        ["--url", url, "stats", "--json"],
        ["stats", "--json", "--url", url],
        ["--log-level", "DEBUG", "stats", "--json", "--url", url],
        ["stats", "--url", url, "--log-level", "debug", "--json"],
    ):
        done = jobq_cli(*args, cwd=tmp_path)
        assert done.returncode == 0, (args, done.stderr)
        assert json.loads(done.stdout)["total"] == 1
    # worker takes them too (this one stops at its import, after parsing)
    done = jobq_cli("worker", "nowhere:app", "--log-level", "DEBUG", "--url", url, cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1] == "jobq: error: cannot import 'nowhere': no module named 'nowhere'"


@pytest.mark.parametrize(
    "args, says",
    [
        (["wrker", "app:make"], ["unknown command 'wrker'", "did you mean 'worker'?"]),
        (["prnue"], ["did you mean 'prune'?"]),
        (["enqueue", "t", "--prority", "3"], ["jobq enqueue: unknown option --prority", "did you mean '--priority'?"]),
        (["list", "--staus", "failed"], ["did you mean '--status'?"]),
        (["list", "--status", "faild"], ["--status takes one of", "did you mean 'failed'?"]),
        (["--log-level", "DEBG", "stats"], ["did you mean 'DEBUG'?"]),
        (["show"], ["the following arguments are required: id"]),
        (["show", "a", "b"], ["unexpected argument 'b'"]),
        (["enqueue", "t", "--delay", "10 minutes"], ["is not a duration", "10m"]),
        (["prune", "--older-than=-1d"], ["cannot be negative"]),
        (["worker", "app:make", "--shutdown-timeout", "soon"], ["is not a duration"]),
        (["worker"], ["MODULE:NAME", "$JOBQ_APP"]),
    ],
    ids=lambda value: " ".join(value)[:40] if isinstance(value, list) else None,
)
def test_usage_errors_are_one_line_with_a_suggestion(tmp_path: Path, args: list[str], says: list[str]) -> None:
    refused(jobq_cli(*args, cwd=tmp_path), *says, status=2)


def test_version(tmp_path: Path) -> None:
    for args in (["--version"], ["stats", "--version"]):
        done = jobq_cli(*args, cwd=tmp_path)
        assert done.returncode == 0 and done.stdout.strip() == f"jobq {jobq.__version__}", done


@pytest.mark.parametrize(
    "delay, seconds", [("10m", 600), ("1h30m", 5400), ("90", 90), ("1.5s", 1.5), ("2d", 172800), ("500ms", 0.5)]
)
def test_delay_takes_a_duration(tmp_path: Path, url: str, delay: str, seconds: float) -> None:
    done = jobq_cli("enqueue", "t", "--delay", delay, "--url", url, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    with jobq.connect_sync(url) as queue:
        job = queue.get_job(done.stdout.strip())
    assert job is not None and job.delay == seconds
    assert job.process_at - job.created_at == timedelta(seconds=seconds)


# -- read commands on a file that is not there ------------------------------------------


def test_read_commands_refuse_a_missing_file_and_create_nothing(tmp_path: Path) -> None:
    for command in (["stats"], ["list"], ["show", "x"]):
        refused(jobq_cli(*command, "--url", "sqlite:///typo.db", cwd=tmp_path), "'typo.db' does not exist")
        # From a folder without jobq.db and no URL given: not an empty queue, but where to look.
        refused(jobq_cli(*command, cwd=tmp_path), "no queue here", str(tmp_path / "jobq.db"), "--url", "$JOBQ_URL")
    assert os.listdir(tmp_path) == []


# -- destructive commands ask first --------------------------------------------------


@pytest.fixture(params=["sqlite", postgres_param()])
def backend(request: pytest.FixtureRequest) -> str:
    """Overrides the suite's backend: the CLI runs in other processes, so no memory://."""
    return str(request.param)


def finished_jobs(url: str, completed: int, failed: int) -> list[str]:
    """Jobs completed and failed (for good) now, and one waiting; their ids."""
    ids = []
    with jobq.connect_sync(url) as queue:
        for n in range(completed + failed):
            job = queue.enqueue("t", {"n": n}, max_attempts=1)
            claimed = queue.dequeue()
            assert claimed is not None and claimed.id == job.id
            if n < completed:
                queue.complete(claimed)
            else:
                queue.fail(claimed, "boom")
            ids.append(job.id)
        ids.append(queue.enqueue("t", {"n": "waiting"}).id)
    return ids


def total(url: str) -> int:
    with jobq.connect_sync(url) as queue:
        return sum(queue.counts().values())


def test_prune_says_what_it_will_delete_and_asks(queue_url: str, tmp_path: Path) -> None:
    finished_jobs(queue_url, completed=3, failed=2)
    at = ("--url", queue_url)
    line = refused(jobq_cli("prune", "--older-than", "0", *at, cwd=tmp_path), "prune: 5 finished jobs", "--yes")
    assert "stdin is not a terminal" in line
    assert total(queue_url) == 6

    dry = jobq_cli("prune", "--older-than", "0", "--dry-run", *at, cwd=tmp_path)
    assert dry.returncode == 0 and "5 finished jobs" in dry.stdout and "dry run" in dry.stdout, dry
    dry_json = json.loads(jobq_cli("prune", "--older-than", "0", "--dry-run", "--json", *at, cwd=tmp_path).stdout)
    assert dry_json["dry_run"] is True and dry_json["would_delete"] == 5
    assert total(queue_url) == 6

    done = jobq_cli("prune", "--older-than", "0", "--status", "failed", "--yes", *at, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == "deleted 2 jobs", done
    assert jobq_cli("prune", *at, cwd=tmp_path).stdout.strip() == "deleted 0 jobs"  # nothing to ask about
    assert total(queue_url) == 4


def test_remove_clear_and_retry_all_ask_too(queue_url: str, tmp_path: Path) -> None:
    ids = finished_jobs(queue_url, completed=1, failed=2)
    at = ("--url", queue_url)
    refused(jobq_cli("remove", ids[0], *at, cwd=tmp_path), f"remove: job {ids[0]} (t, completed)", "--yes")
    refused(jobq_cli("retry", "--all-failed", *at, cwd=tmp_path), "retry: 2 failed jobs", "--yes")
    refused(jobq_cli("clear", *at, cwd=tmp_path), "clear: every job to delete, 4 in all", "--yes")
    for command in (["remove", ids[0]], ["retry", "--all-failed"], ["clear"]):
        dry = jobq_cli(*command, "--dry-run", *at, cwd=tmp_path)
        assert dry.returncode == 0 and "dry run" in dry.stdout, dry
    assert total(queue_url) == 4
    with jobq.connect_sync(queue_url) as queue:
        assert queue.counts()[jobq.JobStatus.FAILED] == 2

    assert jobq_cli("remove", ids[0], "--yes", *at, cwd=tmp_path).stdout.strip() == f"{ids[0]} removed"
    assert "retried 2 failed jobs" in jobq_cli("retry", "--all-failed", "-y", *at, cwd=tmp_path).stdout
    assert jobq_cli("clear", "--yes", "--json", *at, cwd=tmp_path).stdout.strip() == '{"deleted": 3}'
    assert total(queue_url) == 0


def answer_on_a_terminal(args: list[str], cwd: Path, answer: str) -> tuple[int, str]:
    """Runs ``jobq`` with a terminal as stdin, answers its question, and
    returns the exit status and what it wrote to stderr."""
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "jobq", *args], cwd=cwd, stdin=terminal,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        os.close(terminal)
        terminal = -1
        assert process.stderr is not None
        seen = ""
        deadline = time.monotonic() + TIMEOUT
        while "[y/N]" not in seen:  # the question is asked before the answer is read
            assert time.monotonic() < deadline and process.poll() is None, seen
            ready, _, _ = select.select([process.stderr], [], [], 1.0)
            if ready:
                seen += os.read(process.stderr.fileno(), 4096).decode()
        os.write(controller, (answer + "\n").encode())
        _, rest = process.communicate(timeout=TIMEOUT)
        return process.returncode, seen + rest
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)


def test_on_a_terminal_it_asks(tmp_path: Path, url: str) -> None:
    finished_jobs(url, completed=2, failed=0)
    status, said = answer_on_a_terminal(["prune", "--older-than", "0", "--url", url], tmp_path, "n")
    assert status == 1 and "prune: 2 finished jobs to delete" in said and "nothing was changed" in said, said
    assert total(url) == 3
    status, said = answer_on_a_terminal(["prune", "--older-than", "0", "--url", url], tmp_path, "y")
    assert status == 0, said
    assert total(url) == 1


# -- jobq worker: what MODULE:NAME names --------------------------------------------------


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    package = tmp_path / "myapp"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "jobs.py").write_text(
        textwrap.dedent(
            """
            import jobq

            app = jobq.App()
            empty = jobq.App()
            processor = jobq.JobProcessor(jobq.MemoryQueue())
            count = 3

            @app.task
            def send_sms(to: str) -> None: ...

            async def send_message(job: jobq.Job) -> dict:
                return {"sent_to": job.data["to"]}

            def handler_by_name(job):
                return None

            def make(queue):
                return jobq.JobProcessor(queue)
            """
        )
    )
    return tmp_path


@pytest.mark.parametrize(
    "target, says",
    [
        ("jobq:JobProcessor", ["jobq:JobProcessor made a JobProcessor with no handlers", "nothing to run"]),
        ("myapp.jobs:make", ["myapp.jobs:make made a JobProcessor with no handlers"]),
        ("myapp.jobs:processor", ["myapp.jobs:processor is a JobProcessor with no handlers"]),
        ("myapp.jobs:empty", ["myapp.jobs:empty is a jobq.App with no tasks"]),
        ("myapp.jobs:send_message", ["myapp.jobs:send_message is a job handler (it takes a job)", "@app.task"]),
        ("myapp.jobs:handler_by_name", ["is a job handler"]),
        ("myapp.jobs:send_sms", ["is the task 'myapp.jobs.send_sms' of an app", "name the app itself"]),
        ("myapp.jobs:count", ["myapp.jobs:count is a int"]),
        ("jobq:App", ["jobq:App is the class App"]),
        ("myapp.jobs", ["myapp.jobs is a module", "use MODULE:NAME, for example myapp.jobs:app"]),
        ("myapp", ["myapp is a module", "use MODULE:NAME"]),
        ("myapp.jobs:nothing", ["module 'myapp.jobs' has no attribute 'nothing'", "it has app, empty, processor"]),
        ("myapp.nothing", ["use MODULE:NAME"]),
    ],
)
def test_worker_says_what_the_target_named(app_dir: Path, target: str, says: list[str]) -> None:
    refused(jobq_cli("worker", target, "--url", f"sqlite:///{app_dir / 'jobs.db'}", cwd=app_dir), *says)


# -- dashboard, demo -----------------------------------------------------------------


def test_dashboard_on_a_busy_port_is_one_line_and_prints_no_url(tmp_path: Path, url: str) -> None:
    pytest.importorskip("uvicorn")
    assert jobq_cli("enqueue", "t", "--url", url, cwd=tmp_path).returncode == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = jobq_cli("dashboard", "--port", str(port), "--url", url, cwd=tmp_path)
    refused(done, f"cannot listen on 127.0.0.1:{port}", "in use", "--port")
    assert done.stdout == ""


@pytest.mark.parametrize("jobs", ["0", "-1"])
def test_demo_of_no_jobs_is_refused(tmp_path: Path, url: str, jobs: str) -> None:
    refused(jobq_cli("demo", "--jobs", jobs, "--url", url, cwd=tmp_path), f"--jobs must be at least 1, not {jobs}")
