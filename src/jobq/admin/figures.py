"""The overview's slow figures, counted in the background once they are slow.

Per-queue and per-type counts and the throughput read every job: on a
small table that takes milliseconds and the overview counts them for each
request, exactly; at a million jobs it takes seconds, and three open
dashboards polling every two seconds would keep the database counting. Once
a count took longer than :data:`FRESH_ENOUGH`, :class:`Recounted` answers at
once with the last figures and their age, and recounts in the background,
one count at a time, at most every :data:`RECOUNT_EVERY` seconds. The
overview labels such figures with their age, so nobody reads them as exact
and current. The first count is waited for :data:`FIRST_WAIT` seconds at
most; until it ends, the caller answers without it (the overview: with the
unfinished jobs alone, said so).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")

FRESH_ENOUGH = 0.1  # seconds: figures counted faster are counted again for every request
RECOUNT_EVERY = 30.0  # seconds between background recounts of slow figures (each slows the other reads meanwhile)
#: Seconds between background recounts of the jobs per status, once slow to
#: count (a tenth of a second or more at a million jobs): the overview's
#: headline, kept fresher than the per-queue figures, and counted once per
#: dashboard process however many pages poll.
STATUS_RECOUNT_EVERY = 5.0
RETRY_AFTER = 30.0  # seconds before recounting again after a recount failed
#: Seconds the first count is waited for before answering without it: as
#: long as a count may take and still be made for every request.
FIRST_WAIT = FRESH_ENOUGH

log = logging.getLogger("jobq.admin")


class Recounted(Generic[T]):
    """Figures from ``count``, exact while counting is fast, else the last
    ones counted, recounted in the background."""

    def __init__(
        self, count: Callable[[], Awaitable[T]], *, clock: Callable[[], float] = time.monotonic,
        every: float | None = None, first_wait: float | None = None,
    ) -> None:  # fmt: skip
        """``every``: seconds between background recounts (default
        :data:`RECOUNT_EVERY`); ``first_wait``: seconds the first count is
        waited for (default :data:`FIRST_WAIT`; ``math.inf``: until it ends)."""
        self._count = count
        self._clock = clock
        self._every = every
        self._first_wait = first_wait
        self._value: T | None = None
        self._at = 0.0  # when the value was counted (clock seconds)
        self._took = 0.0  # seconds the last count took
        self._next = 0.0  # not recounting before this (clock seconds)
        self._task: asyncio.Task[None] | None = None

    @property
    def counted(self) -> bool:
        """Whether a count has ended: :meth:`get` answers with figures from now on."""
        return self._value is not None

    async def get(self, *, first_wait: float | None = None) -> tuple[T | None, float | None]:
        """The figures, and how many seconds ago they were counted (``None``:
        counted for this call); ``(None, None)`` while the first count has
        run :data:`FIRST_WAIT` seconds (or ``first_wait``, this once; 0:
        start it and do not wait) without ending. An error of the first
        count is raised to a caller."""
        if self._value is None:
            if self._task is None or self._task.done():
                self._task = asyncio.create_task(self._recount())
            wait = first_wait if first_wait is not None else self._first_wait
            wait = FIRST_WAIT if wait is None else wait
            done, _ = await asyncio.wait({self._task}, timeout=None if wait == math.inf else wait)
            if not done:
                return None, None
            task, self._task = self._task, None
            task.result()  # its error, if it failed
            assert self._value is not None
            return self._value, (None if self._took < FRESH_ENOUGH else 0.0)
        if self._took < FRESH_ENOUGH:
            if self._task is not None and not self._task.done():
                await asyncio.shield(self._task)  # one count at a time
            else:
                await self._recount()
            if self._took < FRESH_ENOUGH:
                return self._value, None
        now = self._clock()
        every = RECOUNT_EVERY if self._every is None else self._every
        if now - self._at >= every and now >= self._next and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._recount_logged())
        return self._value, max(0.0, now - self._at)

    async def _recount(self) -> None:
        started = self._clock()
        value = await self._count()
        self._value, self._at, self._took = value, self._clock(), self._clock() - started

    async def _recount_logged(self) -> None:
        """A background recount: a failure is logged and the last figures kept."""
        try:
            await self._recount()
        except Exception:
            log.exception("recounting the overview's figures failed; retrying in %g s", RETRY_AFTER)
            self._next = self._clock() + RETRY_AFTER
