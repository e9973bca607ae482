"""A FastAPI service whose thumbnails are made in the background by jobq.

Run it (the worker in the same process, SQLite in ./jobq.db)::

    JOBQ_DASHBOARD_TOKEN=secret uvicorn examples.fastapi_app.main:api

or with workers of their own (``EXAMPLE_IN_PROCESS_WORKER=0``)::

    jobq worker examples.fastapi_app.main:tasks

- ``POST /thumbnails {"path": "cat.png", "width": 640}`` defers a job and
  returns its id;
- ``GET /jobs/{id}`` reports its status and, once done, its result;
- ``/jobq/`` is the dashboard (``Authorization: Bearer $JOBQ_DASHBOARD_TOKEN``).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

import jobq
from jobq.contrib.fastapi import QueueDep, dashboard, lifespan

tasks = jobq.App(os.environ.get("JOBQ_URL", "sqlite:///jobq.db"))


class Thumbnail(BaseModel):
    path: str
    width: int = Field(gt=0, le=4096)


@tasks.task(queue="images", max_attempts=3, timeout=30)
async def make_thumbnail(request: Thumbnail) -> dict[str, Any]:
    await asyncio.sleep(0.01)  # the resizing would happen here
    return {"thumbnail": f"{request.path.rsplit('.', 1)[0]}@{request.width}.png", "pid": os.getpid()}


in_process = os.environ.get("EXAMPLE_IN_PROCESS_WORKER", "1") == "1"
api = FastAPI(lifespan=lifespan(tasks, worker=True, concurrency=4) if in_process else lifespan(tasks))
api.mount("/jobq", dashboard())  # credentials from JOBQ_DASHBOARD_TOKEN


@api.post("/thumbnails", status_code=202)
async def create_thumbnail(request: Thumbnail) -> dict[str, str]:
    handle = await make_thumbnail.defer(request)
    return {"id": handle.id, "status": handle.job.status.value}


@api.get("/jobs/{job_id}")
async def job_status(job_id: str, queue: QueueDep) -> dict[str, Any]:
    job = await queue.get_job(job_id)
    if job is None:
        raise HTTPException(404, "no such job")
    return {"id": job.id, "status": job.status.value, "attempts": job.attempts, "result": job.result}
