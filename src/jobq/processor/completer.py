"""Group commit for job completions.

Writing each completion in its own transaction makes a durable store pay one
sync per job. A job's task hands its completion in here and ends, freeing
its slot; completions are then written together, two ways:

- While the claim loop is about to claim again (it :meth:`defer` s), it takes
  every waiting completion along with that claim (:meth:`take`), and the
  store writes both in one transaction: under load, finishing a batch of
  jobs and taking the next costs one commit.
- Otherwise (the queue is empty, the worker is stopping, rate limited, or
  not started), the completer's own writer writes them at once, with any
  that arrive while a write is in flight.

No completion waits for a timer. Each outcome, including ``LeaseLost`` or
``JobNotFound`` for one job alone, goes to the ``settled`` callback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ..errors import JobqError
from ..job import Job
from ..queue import Queue

MAX_BATCH = 256  # completions written in one transaction at most

#: A job, its handler's result, and the seconds its handler took.
Completion = tuple[Job[Any], Any, float]
#: Called once per completion with its outcome: ``None`` when it is stored.
Settled = Callable[[Completion, BaseException | None], None]


class Completer:
    def __init__(self, queue: Queue, settled: Settled, *, max_batch: int = MAX_BATCH) -> None:
        self.queue = queue
        self.settled = settled
        self.max_batch = max_batch
        self._waiting: list[Completion] = []
        self._writer: asyncio.Task[None] | None = None
        self._deferred = False

    def __len__(self) -> int:
        return len(self._waiting)

    def hand_in(self, job: Job[Any], result: Any, elapsed: float) -> None:
        """Queues ``job``'s completion with ``result``; its outcome reaches
        the ``settled`` callback once written."""
        self._waiting.append((job, result, elapsed))
        if not self._deferred:
            self._start_writer()

    def defer(self) -> None:
        """The claim loop will take the waiting completions with its next claim."""
        self._deferred = True

    def flush(self) -> None:
        """No claim is coming soon: the writer writes what waits, at once."""
        self._deferred = False
        if self._waiting:
            self._start_writer()

    def take(self) -> list[Completion]:
        """Removes and returns the completions waiting to be written (at most
        ``max_batch``); the caller writes them and reports with :meth:`settle`,
        or hands them back with :meth:`give_back`."""
        batch = self._waiting[: self.max_batch]
        del self._waiting[: self.max_batch]
        return batch

    def settle(self, batch: list[Completion], outcomes: list[JobqError | None]) -> None:
        """Reports each completion's outcome."""
        for completion, error in zip(batch, outcomes, strict=True):
            self.settled(completion, error)

    def give_back(self, batch: list[Completion]) -> None:
        """Returns completions whose write failed along with something else
        (a claim): the writer tries them again on their own."""
        self._waiting[:0] = batch
        self.flush()

    def _start_writer(self) -> None:
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_all(), name="jobq-completer")

    async def _write_all(self) -> None:
        try:
            while self._waiting:
                batch = self.take()
                try:
                    outcomes = await self.queue.complete_many([(job, result) for job, result, _ in batch])
                except BaseException as exc:  # the whole write failed: every completion hears it
                    for completion in batch:
                        self.settled(completion, exc)
                    if isinstance(exc, asyncio.CancelledError):
                        raise
                    continue
                self.settle(batch, outcomes)
        finally:
            self._writer = None

    async def drain(self) -> None:
        """Waits until every completion handed in so far is written."""
        self.flush()
        while self._writer is not None:
            await asyncio.shield(self._writer)
