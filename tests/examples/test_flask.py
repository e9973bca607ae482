"""The Flask example under gunicorn with ``--preload`` and two forked
workers, over real HTTP, on SQLite and PostgreSQL: the queue opened in the
master before the fork, each worker process reopening its own, and
``flask jobq-worker`` running the jobs."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from servers import Processes, environment, free_port, wait_http, wait_until

pytestmark = pytest.mark.slow


def test_gunicorn_preload_defers_from_forked_workers(queue_url: str, processes: Processes) -> None:
    env = environment({"JOBQ_URL": queue_url})
    port = free_port()
    gunicorn = processes.python(
        "gunicorn", "-m", "gunicorn", "--preload", "--workers", "2", "--bind", f"127.0.0.1:{port}",
        "examples.flask_app.app:app", env=env,
    )  # fmt: skip
    processes.python("worker", "-m", "flask", "--app", "examples.flask_app.app", "jobq-worker", env=env)
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/jobs/none", processes)

    sent = [httpx.post(f"{base}/resize", json={"path": f"p{n}.png", "width": n + 1}, timeout=30) for n in range(12)]
    assert all(r.status_code == 202 for r in sent), [r.text for r in sent]
    # Served by forked workers, with the queue the master opened before forking.
    for response in sent:
        body = response.json()
        assert body["queue_opened_in"] == gunicorn.popen.pid != body["served_by"]

    def result(job_id: str) -> dict[str, Any] | None:
        found: dict[str, Any] = httpx.get(f"{base}/jobs/{job_id}", timeout=30).json()
        return found if found["status"] == "completed" else None

    for n, response in enumerate(sent):
        job_id = response.json()["id"]
        done = wait_until(lambda job_id=job_id: result(job_id), "a resize job", processes=processes)
        assert done["result"]["path"] == f"p{n}@{n + 1}.png"
    assert httpx.get(f"{base}/jobs/nope", timeout=30).status_code == 404
    assert gunicorn.stop() == 0, gunicorn.output()
    assert "Traceback" not in gunicorn.output()
