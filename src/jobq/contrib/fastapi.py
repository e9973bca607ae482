"""jobq in a FastAPI application (``pip install 'jobq[fastapi]'``).

::

    from jobq.contrib.fastapi import QueueDep, dashboard, lifespan

    tasks = jobq.App("sqlite:///jobq.db")
    api = FastAPI(lifespan=lifespan(tasks, worker=True, concurrency=4))
    api.mount("/jobq", dashboard(auth=("ops", "a long password")))

    @api.get("/jobs/{job_id}")
    async def job_status(job_id: str, queue: QueueDep) -> dict[str, str]:
        job = await queue.get_job(job_id)
        ...

The pieces are :mod:`jobq.contrib.starlette`'s; this module adds
:data:`QueueDep`, the dependency as an annotation.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from ..queue import Queue
from .starlette import Jobq, NoJobqLifespan, dashboard, get_queue, jobq_of, lifespan

#: The open queue, handed to an endpoint: ``async def f(queue: QueueDep)``.
QueueDep = Annotated[Queue, Depends(get_queue)]

__all__ = ["Jobq", "NoJobqLifespan", "QueueDep", "dashboard", "get_queue", "jobq_of", "lifespan"]
