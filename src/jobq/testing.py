"""Helpers for testing code that uses jobq, with no sleeping and no threads
of your own.

:func:`inline` gives a :class:`Inline` harness: an in-memory queue on a
:class:`~jobq.FakeClock` and your :class:`~jobq.JobProcessor` bound to it.
Jobs run when you say so (:meth:`Inline.drain`), or at once when enqueued
(``eager=True``); :meth:`Inline.advance` moves the clock through delays,
retries and cron slots, running what comes due in time order. Jobs run
through the processor's own code (:meth:`jobq.JobProcessor.drain`), so
retries, timeouts, steering exceptions and events behave as in production.

The assertions (:func:`assert_enqueued`, :func:`assert_not_enqueued`,
:func:`enqueued_jobs`) read any in-memory queue.

::

    async def test_signup_sends_a_welcome_email() -> None:
        async with jobq.testing.inline(make_processor) as jobs:
            await signup(jobs.queue, "kim@example.com")
            jobq.testing.assert_enqueued(jobs.queue, "send_email", {"to": "kim@example.com"})
            await jobs.drain()
            await jobs.advance(60)        # a retry due in 5 s runs; nothing sleeps
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final, Self

from .backends import MemoryQueue
from .clock import FakeClock
from .job import Job, JobStatus
from .newjobs import NewJob
from .processor.processor import JobProcessor
from .queue import Queue
from .store.memory import MemoryStore

__all__ = [
    "ANY",
    "Inline",
    "InlineQueue",
    "assert_enqueued",
    "assert_not_enqueued",
    "enqueued_jobs",
    "inline",
]


class _Any:
    def __repr__(self) -> str:
        return "ANY"


#: Matches any payload in the assertions.
ANY: Final[Any] = _Any()

ProcessorSource = JobProcessor | Callable[[Queue], JobProcessor | Awaitable[JobProcessor]] | None


class InlineQueue(MemoryQueue):
    """An in-memory queue that, when ``eager``, runs the jobs enqueued
    through it (and any they enqueue) before ``enqueue`` returns. The ``Job``
    returned is the job as enqueued; read it again for its outcome."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.processor: JobProcessor | None = None
        self.eager = False
        self._draining = False

    async def enqueue_many(self, jobs: Iterable[NewJob], *args: Any, **kwargs: Any) -> list[Job[Any]]:
        stored = await super().enqueue_many(jobs, *args, **kwargs)
        if self.eager and self.processor is not None and not self._draining:
            await self.run_ready()
        return stored

    async def run_ready(self) -> int:
        """Runs every ready job through the processor; returns how many ran.
        A job enqueued by a running handler runs after it, in the same call."""
        if self.processor is None:
            raise RuntimeError("this InlineQueue has no processor; use jobq.testing.inline()")
        if self._draining:
            return 0
        self._draining = True
        try:
            return await self.processor.drain()
        finally:
            self._draining = False


class Inline:
    """An in-memory queue, a fake clock and a processor, run by hand.

    ``queue``, ``clock`` and ``processor`` are the real objects: enqueue
    through either, register more handlers, subscribe to events.
    """

    def __init__(self, queue: InlineQueue, processor: JobProcessor) -> None:
        self.queue = queue
        self.processor = processor
        clock = queue.clock
        assert isinstance(clock, FakeClock)
        self.clock: FakeClock = clock

    async def drain(self) -> int:
        """Runs every job ready now, and those they enqueue that are ready,
        until none is; returns how many ran. The clock does not move."""
        return await self.queue.run_ready()

    async def advance(self, seconds: float) -> int:
        """Moves the clock ``seconds`` ahead, stopping at each moment a job
        comes due (a delay, a retry, a snooze), a cron slot falls or an open
        circuit breaker half-opens, and running what is ready there. Returns
        how many jobs ran."""
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        target = self.clock.now() + seconds
        ran = await self.drain()
        while True:
            now = self.clock.now()
            moments = [t for t in await self._moments(now) if now < t <= target]
            if not moments:
                break
            self.clock.set(min(moments))
            ran += await self.drain()
        self.clock.set(target)
        return ran + await self.drain()

    async def _moments(self, now: float) -> list[float]:
        moments: list[float] = []
        due = await self.queue.next_due(queues=self.processor.queues)
        if due is not None:
            moments.append(due)
        for schedule in self.processor.cron_schedules.values():
            moments.append(schedule.next_slot(now))
        for circuit in self.processor.circuits.values():
            if circuit.state == "open":
                moments.append(circuit.opened_at + circuit.config.reset_timeout)
        return moments

    async def close(self) -> None:
        await self.processor.stop()
        await self.queue.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def _make_inline(
    source: ProcessorSource, *, eager: bool, clock: FakeClock | None, options: dict[str, Any]
) -> Inline:
    queue = InlineQueue(clock=clock or FakeClock(), **options)
    if source is None:
        processor = JobProcessor(queue)
    elif isinstance(source, JobProcessor):
        processor = source
        processor.bind(queue)
    elif callable(source):
        made = source(queue)
        processor = await made if inspect.isawaitable(made) else made
        if not isinstance(processor, JobProcessor):
            raise TypeError(f"the processor factory returned {type(processor).__name__}, not a JobProcessor")
        if processor.queue is not queue:
            processor.bind(queue)
    else:
        raise TypeError("inline() takes a JobProcessor, a function(queue) returning one, or nothing")
    queue.processor, queue.eager = processor, eager
    return Inline(queue, processor)


class _InlineFactory:
    """``inline(...)`` is awaitable (``jobs = await inline(...)``) and an async
    context manager (``async with inline(...) as jobs``), which closes it."""

    def __init__(
        self, source: ProcessorSource, eager: bool, clock: FakeClock | None, options: dict[str, Any]
    ) -> None:
        self._args = (source, eager, clock, options)
        self._made: Inline | None = None

    def __await__(self):  # type: ignore[no-untyped-def]
        source, eager, clock, options = self._args
        return _make_inline(source, eager=eager, clock=clock, options=options).__await__()

    async def __aenter__(self) -> Inline:
        source, eager, clock, options = self._args
        self._made = await _make_inline(source, eager=eager, clock=clock, options=options)
        return self._made

    async def __aexit__(self, *exc: object) -> None:
        if self._made is not None:
            await self._made.close()


def inline(
    processor: ProcessorSource = None,
    *,
    eager: bool = False,
    clock: FakeClock | None = None,
    **queue_options: Any,
) -> _InlineFactory:
    """An :class:`Inline` harness for ``processor``: a :class:`~jobq.JobProcessor`
    (rebound to the harness's queue), a function taking a queue and
    returning one (your app's factory), or ``None`` for a bare processor to
    register handlers on. ``eager=True`` runs jobs as they are enqueued.
    ``clock`` defaults to a new :class:`~jobq.FakeClock`; ``queue_options``
    go to the queue (``lease``, ``max_lost_leases``, ...)."""
    return _InlineFactory(processor, eager, clock, queue_options)


# -- assertions ------------------------------------------------------------------


def enqueued_jobs(
    queue: Queue, type: str | None = None, *, status: JobStatus | str | None = None
) -> list[Job[Any]]:
    """Every job in an in-memory ``queue`` (in the order enqueued), or those
    of ``type`` / in ``status``, whatever happened to them since."""
    store = queue.store
    if not isinstance(store, MemoryStore):
        raise TypeError(f"enqueued_jobs reads in-memory queues only, not a {store.name} queue")
    with store._lock:
        records = list(store._jobs.values())
    jobs = [queue._lenient_job(record) for record in records]  # the store keeps insertion order
    wanted = None if status is None else JobStatus(status)
    return [j for j in jobs if (type is None or j.type == type) and (wanted is None or j.status is wanted)]


def _describe(jobs: list[Job[Any]]) -> str:
    if not jobs:
        return "no jobs were enqueued"
    shown = ", ".join(f"{j.type}({j.data!r}, {j.status.value})" for j in jobs[:20])
    more = f" and {len(jobs) - 20} more" if len(jobs) > 20 else ""
    return f"enqueued: {shown}{more}"


def assert_enqueued(
    queue: Queue, type: str, data: Any = ANY, *, count: int | None = None, **fields: Any
) -> list[Job[Any]]:
    """Asserts that a job of ``type`` (with payload equal to ``data``, and
    ``Job`` fields equal to ``fields``, such as ``priority=9``) was enqueued:
    exactly ``count`` of them when given, else at least one. Returns them."""
    everything = enqueued_jobs(queue)
    found = [
        j
        for j in everything
        if j.type == type
        and (data is ANY or j.data == data)
        and all(getattr(j, name) == value for name, value in fields.items())
    ]
    wanted = f"a {type!r} job" + ("" if data is ANY else f" with data {data!r}")
    if fields:
        wanted += " and " + ", ".join(f"{k}={v!r}" for k, v in fields.items())
    if count is None and not found:
        raise AssertionError(f"expected {wanted}; {_describe(everything)}")
    if count is not None and len(found) != count:
        raise AssertionError(f"expected {count} x {wanted}, found {len(found)}; {_describe(everything)}")
    return found


def assert_not_enqueued(queue: Queue, type: str, data: Any = ANY) -> None:
    """Asserts that no job of ``type`` (with payload equal to ``data``) was enqueued."""
    everything = enqueued_jobs(queue)
    found = [j for j in everything if j.type == type and (data is ANY or j.data == data)]
    if found:
        what = f"{type!r} job" + ("" if data is ANY else f" with data {data!r}")
        raise AssertionError(f"expected no {what}; {_describe(everything)}")
