"""Group commit for job completions.

Writing each completion in its own transaction makes a durable store pay one
sync per job. The completer writes the first completion at once, and every
completion that arrives while that write is in flight goes into the next
write, together: no completion waits for a timer, and under load one
transaction (one sync) records many jobs. Each caller still learns its own
outcome: ``LeaseLost`` or ``JobNotFound`` for its job alone.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..job import Job
from ..queue import Queue

MAX_BATCH = 256  # completions written in one transaction at most


class Completer:
    def __init__(self, queue: Queue, *, max_batch: int = MAX_BATCH) -> None:
        self.queue = queue
        self.max_batch = max_batch
        self._waiting: list[tuple[Job[Any], Any, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def complete(self, job: Job[Any], result: Any) -> None:
        """Records ``job`` as completed with ``result``; returns once it is stored."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((job, result, done))
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_all(), name="jobq-completer")
        await asyncio.shield(done)

    async def _write_all(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[: self.max_batch]
                del self._waiting[: self.max_batch]
                try:
                    outcomes = await self.queue.complete_many([(job, result) for job, result, _ in batch])
                except BaseException as exc:  # the whole write failed: every caller hears it
                    for _, _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                    continue
                for (_, _, done), error in zip(batch, outcomes, strict=True):
                    if done.done():
                        continue
                    if error is None:
                        done.set_result(None)
                    else:
                        done.set_exception(error)
        finally:
            self._writer = None

    async def drain(self) -> None:
        """Waits until every completion handed in so far is written."""
        while self._writer is not None:
            await asyncio.shield(self._writer)
