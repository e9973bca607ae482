"""Waiting for a job to finish, on the store's own wake-ups.

Each store announces jobs reaching a final status (PostgreSQL: a
notification on the table's finish channel; SQLite: a commit seen through
``PRAGMA data_version``; in memory: a signal). One watcher per queue object
listens while anyone waits and wakes every waiter, who then reads its job
again. Waiters also read their job once a second, in case a wake-up was
missed (a listening connection that dropped and came back).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from .errors import JobNotFound, ResultTimeout
from .job import TERMINAL_STATUSES, Job
from .store.base import Store

log = logging.getLogger("jobq.results")

RECHECK = 1.0  # seconds between reads of an awaited job when no wake-up came
FIRST_RECHECK = 0.05  # seconds before the second read: the watcher may still be starting
WATCH_SLICE = 5.0  # seconds one wait of the watcher lasts before it looks for waiters
WATCH_RETRY = 1.0  # seconds the watcher pauses after its store raised


class Finishes:
    """Wakes the callers waiting for jobs of one queue object whenever its
    store says a job may have finished."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._waiters = 0
        self._event: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    def _generation(self) -> asyncio.Event:
        """The event the next wake-up sets (one per wake-up)."""
        if self._event is None:
            self._event = asyncio.Event()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._watch(), name="jobq-result-watch")
        return self._event

    async def _watch(self) -> None:
        while self._waiters > 0:
            try:
                finished = await self._store.wait_for_finish(WATCH_SLICE)
            except asyncio.CancelledError:
                raise
            except Exception:  # the waiters re-read their jobs meanwhile
                log.warning("waiting for finished jobs failed; retrying", exc_info=True)
                await asyncio.sleep(WATCH_RETRY)
                continue
            if finished and self._event is not None:
                event, self._event = self._event, asyncio.Event()
                event.set()

    async def wait(self, job_id: str, read: Any, timeout: float | None) -> Job[Any]:
        """Reads the job with ``read(job_id)`` until it has finished; returns
        it. :class:`~jobq.ResultTimeout` after ``timeout`` seconds (``None``:
        no limit); :class:`~jobq.JobNotFound` if it is removed."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        self._waiters += 1
        try:
            recheck = FIRST_RECHECK
            while True:
                event = self._generation()
                job: Job[Any] | None = await read(job_id)
                if job is None:
                    raise JobNotFound(job_id)
                if job.status in TERMINAL_STATUSES:
                    return job
                pause = recheck
                if deadline is not None:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        raise ResultTimeout(job_id, timeout or 0.0, job.status.value)
                    pause = min(pause, remaining)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(event.wait(), pause)
                recheck = RECHECK
        finally:
            self._waiters -= 1

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self._task = None
