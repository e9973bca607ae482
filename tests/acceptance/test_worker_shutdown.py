"""``jobq worker`` stopping in production, as real processes on SQLite and
PostgreSQL: after SIGTERM it exits within its grace period even while a
synchronous handler is blocked, and the job runs again in another worker
process; a second SIGTERM or SIGINT exits at once, non-zero, the job
released; under systemd it says READY=1 once it claims jobs and STOPPING=1
when it begins to stop; its options come from ``JOBQ_*`` variables.

Every wait is on a file or the database with a generous deadline; the only
tight bound is the one under test (grace + 1 s from the signal to the exit).
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from suite_parts import postgres_param

import jobq

pytestmark = pytest.mark.slow

DEADLINE = 120.0  # seconds; generous, a pass never comes near it
GRACE = 2.0  # seconds: the worker's --shutdown-timeout in the bound test
BOUND = GRACE + 1.0  # seconds from SIGTERM to the exit, at most

APP = textwrap.dedent(
    """
    import json, os, time
    from pathlib import Path
    import jobq

    HERE = Path(__file__).resolve().parent

    def note(kind, value):
        fd = os.open(HERE / f"{kind}.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        os.write(fd, (json.dumps(value) + "\\n").encode())
        os.close(fd)

    def make(queue):
        processor = jobq.JobProcessor(queue, poll_interval=0.1)

        @processor.handler("work")
        def work(job):  # synchronous: a blocked one cannot be interrupted
            note("start", {"id": job.id, "pid": os.getpid()})
            if os.environ.get("BLOCK") == "1":
                time.sleep(3600)
            note("done", {"id": job.id, "pid": os.getpid()})
            return os.getpid()

        return processor
    """
)


@pytest.fixture(params=["sqlite", postgres_param()])
def backend(request: pytest.FixtureRequest) -> str:
    """Overrides the suite's backend: workers are other processes, so no memory://."""
    return str(request.param)


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    path = tmp_path / "app"
    path.mkdir()
    (path / "app.py").write_text(APP)
    return path


class Workers:
    """``jobq worker`` processes of one test; any left at the end are killed."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, env: dict[str, str] | None = None, name: str = "worker") -> subprocess.Popen[bytes]:
        with open(self.cwd / f"{name}.err", "wb") as err:
            worker = subprocess.Popen(
                [sys.executable, "-m", "jobq", "worker", *args],
                cwd=self.cwd, env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, stderr=err,
            )  # fmt: skip
        self.started.append(worker)
        return worker

    def stderr(self, name: str = "worker") -> str:
        path = self.cwd / f"{name}.err"
        return path.read_text(errors="replace") if path.exists() else ""

    def close(self) -> None:
        for worker in self.started:
            if worker.poll() is None:
                worker.kill()
            worker.wait()


@pytest.fixture
def workers(app_dir: Path) -> Iterator[Workers]:
    started = Workers(app_dir)
    try:
        yield started
    finally:
        started.close()


def lines(path: Path) -> list[dict[str, int | str]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def wait_for(what: str, check: Callable[[], object], worker: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + DEADLINE
    while not check():
        if worker is not None and worker.poll() is not None:
            raise AssertionError(f"the worker exited ({worker.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} within {DEADLINE:g} s")
        time.sleep(0.05)


def job_of(url: str, job_id: str) -> jobq.Job[object]:
    with jobq.connect_sync(url) as queue:
        job = queue.get_job(job_id)
    assert job is not None
    return job


def enqueue(url: str) -> str:
    with jobq.connect_sync(url) as queue:
        return queue.enqueue("work", {}).id


def time_to_exit(worker: subprocess.Popen[bytes]) -> float:
    """Seconds from now to the worker's exit (the caller has just signalled it)."""
    signalled = time.monotonic()
    worker.wait(DEADLINE)
    return time.monotonic() - signalled


def test_sigterm_exits_within_the_grace_and_the_job_runs_again_elsewhere(
    queue_url: str, app_dir: Path, workers: Workers
) -> None:
    job_id = enqueue(queue_url)
    blocked = workers.start(
        "app:make", "--url", queue_url, "--shutdown-timeout", f"{GRACE:g}s", env={"BLOCK": "1"}, name="blocked"
    )
    wait_for("handler start", lambda: lines(app_dir / "start.jsonl"), blocked)
    os.kill(blocked.pid, signal.SIGTERM)
    took = time_to_exit(blocked)
    assert blocked.returncode == 0, workers.stderr("blocked")
    assert took < BOUND, f"exited {took:.2f} s after SIGTERM (grace {GRACE:g} s)\n{workers.stderr('blocked')}"
    assert "Traceback" not in workers.stderr("blocked")
    released = job_of(queue_url, job_id)
    assert released.status is jobq.JobStatus.PENDING and released.attempts == 0  # given back, no attempt spent

    other = workers.start("app:make", "--url", queue_url, name="other")
    wait_for("the job's second run", lambda: job_of(queue_url, job_id).status is jobq.JobStatus.COMPLETED, other)
    done = job_of(queue_url, job_id)
    assert done.result == other.pid != blocked.pid
    assert [entry["pid"] for entry in lines(app_dir / "start.jsonl")] == [blocked.pid, other.pid]
    os.kill(other.pid, signal.SIGTERM)
    assert other.wait(DEADLINE) == 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_second_signal_exits_at_once(queue_url: str, app_dir: Path, workers: Workers, signum: int) -> None:
    job_id = enqueue(queue_url)
    blocked = workers.start("app:make", "--url", queue_url, "--shutdown-timeout", "10m", env={"BLOCK": "1"})
    wait_for("handler start", lambda: lines(app_dir / "start.jsonl"), blocked)
    os.kill(blocked.pid, signum)
    wait_for("the first signal's log line", lambda: "stopping" in workers.stderr(), blocked)
    os.kill(blocked.pid, signum)
    took = time_to_exit(blocked)
    assert blocked.returncode == 128 + signum, workers.stderr()
    assert took < 10, f"exited {took:.2f} s after the second signal"  # not the 10 min grace
    assert "Traceback" not in workers.stderr()
    released = job_of(queue_url, job_id)
    assert released.status is jobq.JobStatus.PENDING and released.attempts == 0


def test_supervised_workers_stop_at_once_on_a_second_signal(
    queue_url: str, app_dir: Path, workers: Workers
) -> None:
    job_id = enqueue(queue_url)
    supervisor = workers.start(
        "app:make", "--url", queue_url, "--processes", "2", "--shutdown-timeout", "10m", env={"BLOCK": "1"}
    )
    wait_for("handler start", lambda: lines(app_dir / "start.jsonl"), supervisor)
    os.kill(supervisor.pid, signal.SIGINT)
    wait_for("the child's log of the first signal", lambda: "SIGINT: stopping" in workers.stderr(), supervisor)
    os.kill(supervisor.pid, signal.SIGINT)
    took = time_to_exit(supervisor)
    assert supervisor.returncode == 1 and took < 15, (took, workers.stderr())
    released = job_of(queue_url, job_id)
    assert released.status is jobq.JobStatus.PENDING and released.attempts == 0


def test_systemd_hears_ready_and_stopping(queue_url: str, app_dir: Path, workers: Workers) -> None:
    name = f"jobq-test-{secrets.token_hex(8)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind("\0" + name)  # the abstract namespace: no path length limit
        listener.settimeout(DEADLINE)
        worker = workers.start("app:make", "--url", queue_url, env={"NOTIFY_SOCKET": "@" + name})
        ready = listener.recv(4096).decode()
        assert ready.splitlines()[0] == "READY=1" and "claiming jobs" in ready
        job_id = enqueue(queue_url)  # it claims jobs once ready
        wait_for("the job to run", lambda: job_of(queue_url, job_id).status is jobq.JobStatus.COMPLETED, worker)
        os.kill(worker.pid, signal.SIGTERM)
        assert listener.recv(4096).decode() == "STOPPING=1"
    assert worker.wait(DEADLINE) == 0


def test_options_come_from_the_environment(queue_url: str, app_dir: Path, workers: Workers) -> None:
    env = {
        "JOBQ_APP": "app:make", "JOBQ_URL": queue_url, "JOBQ_CONCURRENCY": "3", "JOBQ_QUEUES": "a,b",
        "JOBQ_SHUTDOWN_TIMEOUT": "1m30s", "JOBQ_LOG_LEVEL": "info",
    }  # fmt: skip
    worker = workers.start(env=env)
    wait_for("the worker's first line", lambda: "concurrency" in workers.stderr(), worker)
    assert "concurrency 3, queues a,b, grace 90 s" in workers.stderr()
    os.kill(worker.pid, signal.SIGTERM)
    assert worker.wait(DEADLINE) == 0
    flags = workers.start("--concurrency", "2", env=env, name="flags")  # the command line wins
    wait_for("the worker's first line", lambda: "concurrency" in workers.stderr("flags"), flags)
    assert "concurrency 2, queues a,b" in workers.stderr("flags")
    os.kill(flags.pid, signal.SIGTERM)
    assert flags.wait(DEADLINE) == 0


@pytest.mark.parametrize(
    "variable, value",
    [("JOBQ_CONCURRENCY", "many"), ("JOBQ_SHUTDOWN_TIMEOUT", "soon"), ("JOBQ_QUEUES", "a,,b")],
)
def test_a_bad_environment_value_is_one_line(app_dir: Path, variable: str, value: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "jobq", "worker", "app:make", "--url", f"sqlite:///{app_dir / 'jobs.db'}"],
        cwd=app_dir, env={**os.environ, variable: value}, capture_output=True, text=True, timeout=DEADLINE,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith(f"jobq: error: ${variable}={value!r}: ")
