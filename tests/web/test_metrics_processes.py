"""``jobq worker --processes N --metrics-port PORT``: the supervisor serves one
endpoint summing every worker process's counters, from a temporary
``PROMETHEUS_MULTIPROC_DIR`` it creates and removes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

import jobq

pytest.importorskip("prometheus_client")

DEADLINE = 90.0  # seconds; generous, a pass never comes near it
JOBS = 40


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_one_endpoint_sums_the_workers_of_a_supervisor(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(
        textwrap.dedent(
            """
            import os
            import time

            import jobq

            def ping(job):
                while not os.path.exists("go"):  # until both workers hold jobs
                    time.sleep(0.02)
                return os.getpid()

            def make(queue):
                processor = jobq.JobProcessor(queue, concurrency=2)
                processor.handle("ping", ping)
                return processor
            """
        )
    )
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    with jobq.connect_sync(url) as queue:
        for n in range(JOBS):
            queue.enqueue("ping", n)
    temp = tmp_path / "tmp"
    temp.mkdir()
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]),
        "TMPDIR": str(temp),
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "jobq", "worker", "app:make", "--url", url, "--processes", "2",
         "--metrics-port", str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    expected = f'jobq_jobs_succeeded_total{{type="ping"}} {float(JOBS)}'
    try:
        deadline = time.monotonic() + DEADLINE
        with jobq.connect_sync(url) as queue:
            while len({job.lease_owner for job in queue.list_jobs(status="processing").jobs}) < 2:
                assert supervisor.poll() is None, supervisor.communicate()[1]
                assert time.monotonic() < deadline, "both workers to hold jobs"
                time.sleep(0.05)
        (tmp_path / "go").touch()
        body = ""
        while expected not in body:
            assert supervisor.poll() is None, supervisor.communicate()[1]
            assert time.monotonic() < deadline, body[-2000:]
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                    body = response.read().decode()
            except OSError:
                pass
            time.sleep(0.2)
        (shared,) = temp.glob("jobq-metrics-*")
        assert len(list(shared.glob("*.db"))) >= 2  # one file per worker process and kind
        assert 'jobq_job_attempts_total{outcome="completed",type="ping"} 40.0' in body
        with jobq.connect_sync(url) as queue:
            pids = {job.result for job in queue.list_jobs(limit=JOBS).jobs}
        assert len(pids) == 2, pids  # both workers ran jobs, and both were counted
        supervisor.send_signal(signal.SIGTERM)
        _, stderr = supervisor.communicate(timeout=DEADLINE)
        assert supervisor.returncode == 0, stderr
    finally:
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.communicate()
    assert not list(temp.glob("jobq-metrics-*"))  # removed at the end
