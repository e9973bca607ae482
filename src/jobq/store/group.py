"""Group commit: concurrent writes of one process share one transaction.

A web application enqueues one job per request, from many tasks at once.
Each enqueue on its own pays a whole transaction: on SQLite at durability
``full`` a sync of the WAL, on PostgreSQL a round trip and a commit. With
:class:`GroupCommit`, an enqueue made while another is being committed
waits for that commit to end, then goes in the next one together with every
other enqueue that arrived meanwhile. A lone producer commits at once, as
before (no waiting window): the batch grows only with concurrency, while
the previous commit holds the disk or the connection.

Each call still returns only after the transaction holding its write
committed, so it is as durable when it returns as it was alone; and each
call's outcome is its own: the store's ``commit`` reports an error per
item (a savepoint around each on SQLite, a retry one by one on PostgreSQL),
so one bad enqueue fails alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")

#: What a store's commit returns: per item, in order, ``None`` when it was
#: written, else the exception its caller gets.
Outcomes = list[BaseException | None]


class GroupCommit(Generic[T]):
    """Runs ``commit`` on the batches of items :meth:`submit` collects, one
    batch at a time, in one task of the event loop, and answers each caller
    with its item's outcome. ``commit`` raising answers every caller of its
    batch with that exception."""

    def __init__(self, commit: Callable[[Sequence[T]], Awaitable[Outcomes]]) -> None:
        self._commit = commit
        self._pending: list[tuple[T, asyncio.Future[None]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, item: T) -> None:
        """Returns once ``item`` is committed; raises its error otherwise.
        A cancelled caller stops waiting; its item is still committed."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._pending.append((item, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = loop.create_task(self._flush())
        await asyncio.shield(done)

    async def _flush(self) -> None:
        while self._pending:
            batch, self._pending = self._pending, []
            try:
                outcomes = await self._commit([item for item, _ in batch])
                if len(outcomes) != len(batch):
                    raise RuntimeError(f"group commit: {len(outcomes)} outcomes for {len(batch)} items")
            except Exception as exc:  # every caller of the batch learns it; the task goes on
                outcomes = [exc] * len(batch)
            except BaseException:  # cancelled (the loop is going away): nobody is left waiting
                for _, done in batch + self._pending:
                    done.cancel()
                self._pending = []
                raise
            self._settle(batch, outcomes)

    @staticmethod
    def _settle(batch: list[tuple[T, asyncio.Future[None]]], outcomes: Outcomes) -> None:
        for (_, done), outcome in zip(batch, outcomes, strict=True):
            if done.done():
                continue
            if outcome is None:
                done.set_result(None)
            else:
                done.set_exception(outcome)
