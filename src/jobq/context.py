"""The job a handler is running, and what the handler may do with it.

The processor marks each job it runs with :func:`enter_job` (undone by
:func:`leave_job`); inside the handler, :func:`current_job` returns it and
:func:`report_progress` (or :func:`report_progress_sync` in a plain, sync
handler) stores its progress through the queue that claimed it.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import TYPE_CHECKING, Any

from .errors import NoCurrentJob
from .job import Job

if TYPE_CHECKING:
    from .queue import Queue


class _Current:
    """The job a handler runs, for :func:`report_progress`."""

    __slots__ = ("queue", "job", "loop")

    def __init__(self, queue: Queue, job: Job[Any], loop: asyncio.AbstractEventLoop) -> None:
        self.queue, self.job, self.loop = queue, job, loop


_CURRENT: contextvars.ContextVar[_Current | None] = contextvars.ContextVar("jobq_current_job", default=None)


def enter_job(queue: Queue, job: Job[Any]) -> contextvars.Token[_Current | None]:
    """Marks ``job`` as the one running in this context (the processor does
    it around each handler call), so the handler can call
    :func:`report_progress`; :func:`leave_job` undoes it."""
    return _CURRENT.set(_Current(queue, job, asyncio.get_running_loop()))


def leave_job(token: contextvars.Token[_Current | None]) -> None:
    _CURRENT.reset(token)


def current_job() -> Job[Any] | None:
    """The job whose handler is running here, or ``None``."""
    current = _CURRENT.get()
    return None if current is None else current.job


def _current(verb: str) -> _Current:
    current = _CURRENT.get()
    if current is None:
        raise NoCurrentJob(f"{verb} works only inside a handler run by a jobq.JobProcessor")
    return current


async def report_progress(value: float, message: str | None = None) -> None:
    """From inside a handler: stores the running job's progress (fenced by
    its claim). Raises :class:`~jobq.NoCurrentJob` outside a handler."""
    current = _current("report_progress")
    call = current.queue.set_progress(current.job, value, message)
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is current.loop:
        await call
    else:  # a sync handler's thread running a loop of its own
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(call, current.loop))


def report_progress_sync(value: float, message: str | None = None) -> None:
    """:func:`report_progress` for a plain (sync) handler, which runs in a
    worker thread. Raises :class:`~jobq.NoCurrentJob` outside a handler."""
    current = _current("report_progress_sync")
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        raise NoCurrentJob("report_progress_sync is for sync handlers; await report_progress instead")
    future = asyncio.run_coroutine_threadsafe(
        current.queue.set_progress(current.job, value, message), current.loop
    )
    future.result()
