"""The FastAPI example under uvicorn, over real HTTP, on SQLite and
PostgreSQL: jobq.contrib.fastapi's lifespan (with its in-process worker, or
a ``jobq worker`` process beside it), its queue dependency, and the
dashboard mounted under /jobq."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from servers import Processes, environment, free_port, wait_http, wait_until

import jobq
from jobq.contrib.fastapi import NoJobqLifespan, QueueDep, lifespan

# QueueDep is resolved from this module's names (annotations are text here).

TOKEN = "a-token-for-the-tests"


def serve(queue_url: str, processes: Processes, *, in_process: bool) -> str:
    env = environment(
        {"JOBQ_URL": queue_url, "JOBQ_DASHBOARD_TOKEN": TOKEN, "EXAMPLE_IN_PROCESS_WORKER": "1" if in_process else "0"}
    )
    port = free_port()
    processes.python(
        "uvicorn", "-m", "uvicorn", "examples.fastapi_app.main:api", "--port", str(port), "--no-access-log", env=env
    )
    if not in_process:
        processes.python("worker", "-m", "jobq", "worker", "examples.fastapi_app.main:tasks", env=env)
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/docs", processes)
    return base


def finished(base: str, job_id: str, processes: Processes) -> dict[str, Any]:
    def read() -> dict[str, Any] | None:
        found: dict[str, Any] = httpx.get(f"{base}/jobs/{job_id}", timeout=30).json()
        return found if found["status"] in ("completed", "failed") else None

    done: dict[str, Any] = wait_until(read, f"job {job_id}", processes=processes)
    return done


@pytest.mark.slow
@pytest.mark.parametrize("in_process", [True, False], ids=["in-process-worker", "worker-process"])
def test_fastapi_defers_runs_and_reports(queue_url: str, processes: Processes, in_process: bool) -> None:
    base = serve(queue_url, processes, in_process=in_process)
    created = [
        httpx.post(f"{base}/thumbnails", json={"path": f"cat{n}.png", "width": 64 * (n + 1)}, timeout=30)
        for n in range(5)
    ]
    assert all(r.status_code == 202 for r in created), [r.text for r in created]
    for n, response in enumerate(created):
        done = finished(base, response.json()["id"], processes)
        assert done["status"] == "completed", done
        assert done["result"]["thumbnail"] == f"cat{n}@{64 * (n + 1)}.png"
    workers = {finished(base, r.json()["id"], processes)["result"]["pid"] for r in created}
    server_pid = processes.all[0].popen.pid
    assert (workers == {server_pid}) is in_process, (workers, server_pid)

    assert httpx.get(f"{base}/jobs/nope", timeout=30).status_code == 404
    assert httpx.post(f"{base}/thumbnails", json={"path": "x.png", "width": 0}, timeout=30).status_code == 422

    # The dashboard, mounted under /jobq on the same queue.
    assert httpx.get(f"{base}/jobq/api/overview", timeout=30).status_code == 401
    overview = httpx.get(f"{base}/jobq/api/overview", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
    assert overview.status_code == 200, overview.text
    assert "completed" in overview.text
    page = httpx.get(f"{base}/jobq/login?token={TOKEN}", follow_redirects=True, timeout=30)
    assert page.status_code == 200 and 'href="/jobq/' in page.text


@pytest.mark.slow
def test_the_server_stops_gracefully(queue_url: str, processes: Processes) -> None:
    base = serve(queue_url, processes, in_process=True)
    job_id = httpx.post(f"{base}/thumbnails", json={"path": "a.png", "width": 8}, timeout=30).json()["id"]
    assert finished(base, job_id, processes)["status"] == "completed"
    server = processes.all[0]
    # uvicorn shuts down, then re-raises the SIGTERM it caught.
    assert server.stop() in (0, -15), server.output()
    assert "Application shutdown complete" in server.output() and "Traceback" not in server.output()


async def test_the_queue_dependency_says_when_no_lifespan_ran() -> None:
    api = FastAPI()

    @api.get("/size")
    async def size(queue: QueueDep) -> int:
        return await queue.size()

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://test") as client:
        with pytest.raises(NoJobqLifespan, match="lifespan"):
            await client.get("/size")


async def test_the_lifespan_hands_endpoints_the_queue() -> None:
    tasks = jobq.App("memory://")
    api = FastAPI()

    @api.get("/size")
    async def size(queue: QueueDep) -> int:
        return await queue.size()

    async with lifespan(tasks)(api), httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api), base_url="http://test"
    ) as client:
        await (await tasks.open()).enqueue("t", {})
        assert (await client.get("/size")).json() == 1
    assert not hasattr(api.state, "jobq")
    with pytest.raises(jobq.InvalidOption, match="worker=True"):
        lifespan(tasks, concurrency=2)
