"""Shared values and helpers of the dashboard tests."""

from __future__ import annotations

from typing import Any

import jobq

TOKEN = "test-token-0123456789"
ORIGIN = "http://testserver"


async def failed_job(queue: jobq.Queue, job_type: str = "send_message", data: Any = None) -> jobq.Job[Any]:
    """A job that failed for good."""
    job = await queue.enqueue(
        job_type, data if data is not None else {"to": "+8210"}, max_attempts=1, priority=1000
    )
    claimed = await queue.dequeue()
    assert claimed is not None and claimed.id == job.id
    await queue.fail(claimed, "provider said no")
    got = await queue.get_job(job.id)
    assert got is not None and got.status is jobq.JobStatus.FAILED
    return got


def csrf_of(html: str) -> str:
    marker = 'name="csrf-token" content="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]
