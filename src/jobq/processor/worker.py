"""JobProcessor: claims jobs, runs their handlers, records the outcome.

One claim loop fills free slots with one batch claim; each claimed job runs in
a tracked task (never fire-and-forget), so ``stop`` knows exactly what is in
flight. Beside it, a lease keeper renews the leases of running jobs and a
rescuer returns jobs whose worker was lost.

The retry decision lives here alone: a handler that raises is failed with a
retry while ``job.attempts + 1 < job.max_attempts``, after the delay the retry
policy gives, and for good otherwise (k-msg's rules).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

from ..admin import Retention
from ..clock import FakeClock
from ..context import enter_job, leave_job
from ..errors import (
    CancelJob,
    InvalidOption,
    JobqError,
    JobTimeout,
    LeaseLost,
    RetryJob,
    SnoozeJob,
)
from ..events import Emitter, Event, ProcessorMetrics, QueueStatus
from ..job import DEFAULT_QUEUE, Job, JobStatus, RetryDirective
from ..keylimits import KeyLimit, check_limits, wait_hint
from ..options import reject_unknown
from ..queue import RESCUE_INTERVAL, NewJob, Queue
from ..retry import RETRY_DELAYS, FixedDelays, RetryPolicy
from .completer import Completer, Completion
from .cron import CRON_RETRY, CronSchedule, seconds_until_next
from .limits import Circuit, CircuitBreaker, RateLimit

log = logging.getLogger("jobq")

Handler = Callable[[Job[Any]], Any]
H = TypeVar("H", bound=Handler)

CONCURRENCY = 5  # jobs run at once by one processor
MAX_RETRIES = 3  # max_attempts of jobs added through the processor
POLL_INTERVAL = 1.0  # seconds; the longest an idle worker waits before looking again
HEARTBEAT_INTERVAL = 10.0  # seconds between lease renewals of running jobs
SHUTDOWN_TIMEOUT = 30.0  # seconds stop() lets jobs in flight finish before releasing them
ADD_PRIORITY = 5  # priority of jobs added through the processor, as in k-msg
STORE_RETRY_MAX = 5.0  # seconds; longest pause after a store error before trying again
ABANDONED_THREADS = 32  # spare handler threads, so abandoned sync handlers do not hold slots
#: Metadata key of a job's own timeout in seconds (set by ``add(timeout=)``).
TIMEOUT_KEY = "jobq.timeout"

_OPTIONS = {
    "concurrency", "retry_delays", "max_retries", "poll_interval", "rate_limit",
    "circuit_breaker", "retry_policy", "queues", "heartbeat_interval", "rescue_interval",
    "shutdown_timeout", "job_timeout", "batch_size", "worker_id",
    "limits", "prune_interval", "retention", "cancel_check_interval",
}  # fmt: skip
PRUNE_INTERVAL = 300.0  # seconds between prunes of finished jobs (None: never)
CANCEL_CHECK_INTERVAL = 1.0  # seconds between checks for cancel requests on running jobs


def no_handler_error(job_type: str) -> str:
    return f"No handler registered for job type: {job_type}"


def _check_timeout(timeout: object) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout < float("inf"):
        raise InvalidOption(f"timeout must be a positive number of seconds, not {timeout!r}")
    return float(timeout)


def _is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))  # noqa: B004 - finds an async __call__


class JobProcessor:
    """Runs the handlers registered for job types against one queue.

    Options (keyword-only, each with its default):

    - ``concurrency=5``: jobs run at once.
    - ``retry_delays=[1, 5, 15, 60]``: seconds; attempt n waits
      ``retry_delays[min(n, len-1)]``. ``retry_policy`` (for example
      :class:`jobq.ExponentialBackoff`) replaces it.
    - ``max_retries=3``: ``max_attempts`` of jobs added with :meth:`add`.
    - ``poll_interval=1.0``: seconds; the longest an idle worker waits before
      looking again. Enqueues wake it sooner (at once in this process, within
      about 10 ms from another process on SQLite).
    - ``rate_limit=None``: a :class:`jobq.RateLimit` on job starts.
    - ``circuit_breaker=None``: a :class:`jobq.CircuitBreaker`, one state per
      job type.
    - ``queues=None``: the named queues to take jobs from (``None``: all).
    - ``heartbeat_interval=10.0``, ``rescue_interval=1.0``: seconds.
    - ``shutdown_timeout=30.0``: seconds :meth:`stop` lets jobs in flight
      finish; the rest are released to run again at once.
    - ``job_timeout=None``: seconds a handler may run before it is cancelled
      and the job fails with :class:`jobq.JobTimeout` (retried as usual). A
      job type's ``timeout`` (:meth:`handle`) overrides it, and a job's own
      (``add(timeout=)``, metadata key ``"jobq.timeout"``) overrides both. A
      sync handler cannot be interrupted: it is abandoned in its thread, its
      slot is freed, and whatever it returns later is ignored.
    - ``batch_size=None``: most jobs claimed in one statement (default:
      ``concurrency``).
    - ``queues`` may also map queue names to their own concurrency
      (``{"emails": 4, "default": 8}``): each queue gets that many slots and
      is claimed on its own; ``concurrency`` is then their sum.
    - ``limits=()``: :class:`jobq.KeyLimit` s (per-key rate or concurrency),
      enforced by the store across every process configured with them.
    - ``prune_interval=300.0``: seconds between deletions of finished jobs
      older than ``retention`` (a :class:`jobq.Retention`; default: completed
      after 1 day, failed and cancelled after 7 days); ``None`` disables it.
    - ``cancel_check_interval=1.0``: seconds between checks for cancel
      requests on running jobs (a cancel through this process's queue object
      is seen at once).
    """

    def __init__(
        self,
        queue: Queue,
        *,
        concurrency: int = CONCURRENCY,
        retry_delays: Sequence[float] = RETRY_DELAYS,
        max_retries: int = MAX_RETRIES,
        poll_interval: float = POLL_INTERVAL,
        rate_limit: RateLimit | None = None,
        circuit_breaker: CircuitBreaker | None = None,
        retry_policy: RetryPolicy | None = None,
        queues: Sequence[str] | Mapping[str, int] | None = None,
        heartbeat_interval: float = HEARTBEAT_INTERVAL,
        rescue_interval: float = RESCUE_INTERVAL,
        shutdown_timeout: float = SHUTDOWN_TIMEOUT,
        job_timeout: float | None = None,
        batch_size: int | None = None,
        worker_id: str | None = None,
        limits: Sequence[KeyLimit] = (),
        prune_interval: float | None = PRUNE_INTERVAL,
        retention: Retention | None = None,
        cancel_check_interval: float = CANCEL_CHECK_INTERVAL,
        **unknown: Any,
    ) -> None:
        reject_unknown("JobProcessor", unknown, _OPTIONS)
        per_queue: dict[str, int] | None = None
        if isinstance(queues, Mapping):
            per_queue = {}
            for name, slots in queues.items():
                if not isinstance(name, str) or not name:
                    raise InvalidOption(f"queue names must be non-empty strs, not {name!r}")
                if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
                    raise InvalidOption(f"concurrency of queue {name!r} must be an int >= 1, not {slots!r}")
                per_queue[name] = slots
            if not per_queue:
                raise InvalidOption("queues must name at least one queue")
            concurrency = sum(per_queue.values())
        elif isinstance(queues, str):
            raise InvalidOption(f"queues must be a list of names (or a mapping), not the str {queues!r}")
        for name, seconds in (("prune_interval", prune_interval), ("cancel_check_interval", cancel_check_interval)):
            if seconds is not None and (
                isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0
            ):
                raise InvalidOption(f"{name} must be a positive number of seconds, not {seconds!r}")
        if retention is not None and not isinstance(retention, Retention):
            raise InvalidOption(f"retention must be a jobq.Retention, not {type(retention).__name__}")
        self.limits = check_limits(limits)
        self.queue_concurrency = per_queue
        self.prune_interval = prune_interval
        self.retention = retention or Retention()
        self.cancel_check_interval = float(cancel_check_interval)
        self._cancelling: set[str] = set()
        self._next_queue = 0
        if not isinstance(queue, Queue):
            raise TypeError(f"JobProcessor needs a jobq queue, not {type(queue).__name__}")
        for name, value in (("concurrency", concurrency), ("max_retries", max_retries)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidOption(f"{name} must be an int >= 1, not {value!r}")
        intervals: tuple[tuple[str, float], ...] = (
            ("poll_interval", poll_interval),
            ("heartbeat_interval", heartbeat_interval),
            ("rescue_interval", rescue_interval),
        )
        for name, seconds in intervals:
            if not isinstance(seconds, (int, float)) or seconds <= 0:
                raise InvalidOption(f"{name} must be a positive number of seconds, not {seconds!r}")
        if heartbeat_interval >= queue.lease:
            raise InvalidOption(
                f"heartbeat_interval ({heartbeat_interval:g} s) must be shorter than the queue's"
                f" lease ({queue.lease:g} s), or leases expire under running jobs"
            )
        if not isinstance(shutdown_timeout, (int, float)) or shutdown_timeout < 0:
            raise InvalidOption(f"shutdown_timeout must be a number of seconds >= 0, not {shutdown_timeout!r}")
        if job_timeout is not None and (not isinstance(job_timeout, (int, float)) or job_timeout <= 0):
            raise InvalidOption(f"job_timeout must be a positive number of seconds, not {job_timeout!r}")
        if rate_limit is not None and not isinstance(rate_limit, RateLimit):
            raise InvalidOption(f"rate_limit must be a jobq.RateLimit, not {type(rate_limit).__name__}")
        if circuit_breaker is not None and not isinstance(circuit_breaker, CircuitBreaker):
            raise InvalidOption(
                f"circuit_breaker must be a jobq.CircuitBreaker, not {type(circuit_breaker).__name__}"
            )
        self.queue = queue
        self.clock = queue.clock
        self.concurrency = concurrency
        self.retry_policy: RetryPolicy = retry_policy or FixedDelays(retry_delays)
        self.max_retries = max_retries
        self.poll_interval = float(poll_interval)
        self.rate_limit = rate_limit
        self.circuit_breaker = circuit_breaker
        self.queues = list(queues) if queues is not None else None
        self.heartbeat_interval = float(heartbeat_interval)
        self.rescue_interval = float(rescue_interval)
        self.shutdown_timeout = float(shutdown_timeout)
        self.job_timeout = job_timeout
        self.batch_size = batch_size or concurrency
        self.worker_id = worker_id or queue.worker_id

        self._handlers: dict[str, Handler] = {}
        self._async_handlers: dict[str, bool] = {}  # by job type: is its handler a coroutine function
        self._type_timeouts: dict[str, float] = {}
        self._crons: dict[str, CronSchedule] = {}
        self._cron_wake: asyncio.Event | None = None
        self._circuits: dict[str, Circuit] = {}
        self._events = Emitter()
        self._metrics = ProcessorMetrics()
        self._last_processed: float | None = None  # epoch seconds; see get_metrics
        self._renewed_at = 0.0  # clock time of the last lease renewal (see _rescue)
        self._active: dict[str, tuple[Job[Any], asyncio.Task[None]]] = {}
        self._releasing: set[str] = set()
        # Jobs whose handler is done and whose outcome is being stored: their
        # lease ends with that write, so the lease keeper must not call it lost.
        self._settling: set[str] = set()
        self._completer = Completer(queue, self._completion_settled)
        self._running = False
        self._stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._wake: asyncio.Event | None = None
        self._slot_free: asyncio.Event | None = None
        self._unsubscribe: list[Callable[[], Any]] = []
        self._threads: ThreadPoolExecutor | None = None
        self._size_counted_at = 0.0

    # -- registration ------------------------------------------------------

    def handle(self, job_type: str, handler: Handler, *, timeout: float | None = None) -> None:
        """Registers ``handler`` for ``job_type`` (async or plain function).
        ``timeout``: seconds a job of this type may run (overrides
        ``job_timeout``; a job's own timeout overrides this)."""
        if not callable(handler):
            raise TypeError(f"handler for {job_type!r} is not callable")
        self._handlers[job_type] = handler
        self._async_handlers[job_type] = _is_async(handler)
        if timeout is None:
            self._type_timeouts.pop(job_type, None)
        else:
            self._type_timeouts[job_type] = _check_timeout(timeout)

    def handler(self, job_type: str, *, timeout: float | None = None) -> Callable[[H], H]:
        """Decorator form of :meth:`handle`."""

        def register(fn: H) -> H:
            self.handle(job_type, fn, timeout=timeout)
            return fn

        return register

    def cron(
        self,
        expression: str,
        job_type: str,
        data: Any = None,
        *,
        name: str | None = None,
        timezone: str = "UTC",
        priority: int = ADD_PRIORITY,
        max_attempts: int | None = None,
        metadata: dict[str, Any] | None = None,
        queue: str | None = None,
    ) -> Callable[[H], H]:
        """Enqueues a ``job_type`` job with ``data`` at every slot of the cron
        ``expression`` while this processor runs; with any number of
        processors (or processes) on the same store, exactly one job per
        slot. A slot missed while no worker ran is run once at start-up
        (see :mod:`jobq.processor.cron`). Needs ``jobq[cron]``.

        Returns a decorator that registers the type's handler, so
        ``@processor.cron("*/5 * * * *", "report")`` over a function does both.
        """
        if self._running:
            raise InvalidOption("add cron schedules before start()")
        schedule = CronSchedule(
            expression,
            job_type,
            data,
            name=name or "",
            timezone=timezone,
            priority=priority,
            max_attempts=max_attempts,
            metadata=metadata,
            queue=queue,
        )
        if schedule.name in self._crons:
            raise InvalidOption(f"a cron schedule named {schedule.name!r} exists; give this one a name=")
        self.queue.validate(self._cron_job(schedule, 0))  # bad data or options fail now, not at each slot
        self._crons[schedule.name] = schedule

        def register(fn: H) -> H:
            self.handle(job_type, fn)
            return fn

        return register

    @property
    def cron_schedules(self) -> dict[str, CronSchedule]:
        """The cron schedules, by name."""
        return dict(self._crons)

    def on(self, event: str, callback: Callable[[Event], Any]) -> Callable[[Event], Any]:
        """Calls ``callback(event)`` on each ``event`` (see :data:`jobq.events.EVENTS`)."""
        return self._events.on(event, callback)

    def off(self, event: str, callback: Callable[[Event], Any]) -> None:
        self._events.off(event, callback)

    # -- the k-msg verbs ---------------------------------------------------

    async def add(
        self,
        job_type: str,
        data: Any = None,
        *,
        priority: int = ADD_PRIORITY,
        delay: float = 0,
        max_attempts: int | None = None,
        metadata: dict[str, Any] | None = None,
        queue: str | None = None,
        timeout: float | None = None,
    ) -> str:
        """Enqueues a job (priority 5 and ``max_retries`` attempts unless
        told) and returns its id. ``timeout``: seconds this job may run
        (kept in its metadata as ``"jobq.timeout"``)."""
        if timeout is not None:
            metadata = {**(metadata or {}), TIMEOUT_KEY: _check_timeout(timeout)}
        job = await self.queue.enqueue(
            job_type,
            data,
            priority=priority,
            delay=delay,
            max_attempts=self.max_retries if max_attempts is None else max_attempts,
            metadata=metadata,
            queue=queue or (self.queues[0] if self.queues else "default"),
        )
        self._events.emit(Event("job_added", job=job))
        return job.id

    def get_metrics(self) -> ProcessorMetrics:
        metrics = ProcessorMetrics(**{k: getattr(self._metrics, k) for k in self._metrics})
        metrics.active_jobs = len(self._active)
        if self._last_processed is not None:
            metrics.last_processed_at = datetime.fromtimestamp(self._last_processed, UTC)
        metrics.by_type = {t: dict(c) for t, c in self._metrics.by_type.items()}
        return metrics

    async def get_queue_status(self) -> QueueStatus:
        pending = await self.queue.size(queues=self.queues)
        self._metrics.queue_size = pending
        return QueueStatus(
            pending=pending,
            processing=len(self._active),
            failed=self._metrics.failed,
            total_processed=self._metrics.processed,
        )

    async def cleanup(self) -> int:
        """Deletes completed and failed jobs; returns how many."""
        return await self.queue.cleanup_terminal()

    async def get_job(self, job_id: str) -> Job[Any] | None:
        return await self.queue.get_job(job_id)

    async def remove_job(self, job_id: str) -> bool:
        return await self.queue.remove(job_id)

    @property
    def running(self) -> bool:
        return self._running

    def bind(self, queue: Queue) -> None:
        """Points a processor that is not running at another queue (the CLI's
        ``--url``); handlers and options stay."""
        if self._running:
            raise InvalidOption("cannot change the queue of a running processor")
        if self.worker_id == self.queue.worker_id:
            self.worker_id = queue.worker_id
        self.queue, self.clock = queue, queue.clock
        self._completer = Completer(queue, self._completion_settled)

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """Starts the workers in the background and returns."""
        if self._running:
            return
        loop = asyncio.get_running_loop()
        self._running, self._stopping = True, False
        self._renewed_at = self.clock.now()  # no lease of this processor's is older
        self._wake = asyncio.Event()
        self._slot_free = asyncio.Event()
        # Slots bound how many handlers run; the spare threads keep a sync
        # handler abandoned after its timeout from holding up the next one.
        self._threads = ThreadPoolExecutor(
            max_workers=self.concurrency + ABANDONED_THREADS, thread_name_prefix="jobq-handler"
        )

        def wake() -> None:
            loop.call_soon_threadsafe(self._wake.set)  # type: ignore[union-attr]

        self._unsubscribe = [self.queue.on_enqueue(wake)]
        if isinstance(self.clock, FakeClock):
            self._unsubscribe.append(self.clock.on_advance(wake))
        self._tasks = [
            asyncio.create_task(self._claim_loop(), name="jobq-claim"),
            asyncio.create_task(self._every(self.heartbeat_interval, self._renew_leases), name="jobq-leases"),
            asyncio.create_task(self._every(self.rescue_interval, self._rescue), name="jobq-rescue"),
            asyncio.create_task(
                self._every(self.cancel_check_interval, self._check_cancels), name="jobq-cancels"
            ),
        ]
        if self.prune_interval is not None:
            self._tasks.append(asyncio.create_task(self._every(self.prune_interval, self._prune), name="jobq-prune"))

        def cancel_requested(job_id: str) -> None:
            loop.call_soon_threadsafe(self._request_cancel, job_id)

        self._unsubscribe.append(self.queue.on_cancel(cancel_requested))
        if self._crons:
            cron_wake = self._cron_wake = asyncio.Event()
            if isinstance(self.clock, FakeClock):

                def cron_tick() -> None:
                    loop.call_soon_threadsafe(cron_wake.set)

                self._unsubscribe.append(self.clock.on_advance(cron_tick))
            self._tasks.append(asyncio.create_task(self._cron_loop(), name="jobq-cron"))
        self._events.emit(Event("processor_started"))

    async def stop(self, timeout: float | None = None) -> None:
        """Stops claiming, lets jobs in flight finish for up to ``timeout``
        seconds (default ``shutdown_timeout``), then releases the rest so they
        run again at once, and returns."""
        if not self._running:
            return
        self._stopping = True
        assert self._wake is not None and self._slot_free is not None
        self._wake.set()
        self._slot_free.set()
        claim_loop, *background = self._tasks
        await claim_loop  # finishes its current claim, so no claimed job is dropped
        grace = self.shutdown_timeout if timeout is None else timeout
        in_flight = [task for _, task in self._active.values()]
        if in_flight:
            await asyncio.wait(in_flight, timeout=grace)
        leftover = list(self._active.items())
        for job_id, (_, task) in leftover:
            self._releasing.add(job_id)
            task.cancel()
        if leftover:
            await asyncio.gather(*(task for _, (_, task) in leftover), return_exceptions=True)
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        if self._threads is not None:
            # Threads of abandoned sync handlers may still run; don't wait for them.
            self._threads.shutdown(wait=False, cancel_futures=True)
        self._running = False
        await self._completer.drain()
        self._events.emit(Event("processor_stopped"))
        await self._events.drain()

    async def drain(self, *, max_jobs: int = 10_000) -> int:
        """Runs every job that is ready now, one at a time in the calling
        task, until none is (or ``max_jobs`` ran); returns how many ran.

        The processor need not be started: this is the inline mode of
        :mod:`jobq.testing` and of scripts. Each job goes through the same
        code as under :meth:`start` (handlers, timeouts, retries, steering,
        circuit breakers, events); cron schedules settle their due slot
        first. Rate limits are not applied. A handler that snoozes with no
        delay is run again at once, up to ``max_jobs``.
        """
        ran = 0
        if self._crons:
            await self._cron_tick(self.clock.now())
        while ran < max_jobs:
            now = self.clock.now()
            closed = [t for t, c in self._circuits.items() if not c.allows_claim(now)]
            jobs = await self.queue.claim(
                1, queues=self.queues, exclude_types=closed, owner=self.worker_id, rescue=False
            )
            if not jobs:
                break
            job = jobs[0]
            task = asyncio.current_task()
            assert task is not None
            self._active[job.id] = (job, task)
            try:
                await self._run_job(job)
                await self._completer.drain()  # stored before the next job, as a caller expects
            finally:
                self._finished(job.id)
            ran += 1
        await self._events.drain()
        return ran

    async def run(self, *, handle_signals: bool = True) -> None:
        """Runs until SIGTERM or SIGINT (or cancellation), then stops gracefully."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        previous: dict[signal.Signals, Any] = {}

        def on_signal(signum: int, frame: object) -> None:
            # A Python-level handler runs at once in the main thread, even
            # while the loop is busy: from here on nothing more is claimed
            # (a loop-level handler would run an iteration or two later,
            # after a claim of jobs that finished meanwhile). The graceful
            # stop itself runs on the loop.
            self._stopping = True
            loop.call_soon_threadsafe(stop.set)

        if handle_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, on_signal)
        await self.start()
        try:
            await stop.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            await self.stop()

    # -- the claim loop ----------------------------------------------------

    async def _claim_loop(self) -> None:
        try:
            await self._claim_until_stopped()
        finally:
            # No claim follows: jobs finishing during the grace period have
            # their completions written at once, while their leases hold.
            self._completer.flush()

    async def _claim_until_stopped(self) -> None:
        assert self._wake is not None and self._slot_free is not None
        failures = 0
        while not self._stopping:
            # Cleared before each pass (not just before a claim), so a wake-up
            # that arrived during a rate-limit or error pause cannot turn the
            # next pause into a spin; one that arrives later still ends it.
            self._wake.clear()
            # Completions handed in meanwhile go with the next claim; every
            # path below that does not claim flushes them instead.
            self._completer.defer()
            free = self.concurrency - len(self._active)
            if free <= 0:
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            now = self.clock.now()
            limit = min(free, self.batch_size)
            if self.rate_limit is not None:
                allowed = self.rate_limit.available(now)
                if allowed <= 0:
                    await self._pause(self.rate_limit.wait_time(now))
                    continue
                limit = min(limit, allowed)
            closed = [t for t, c in self._circuits.items() if not c.allows_claim(now)]
            try:
                jobs = await self._claim_batch(limit, closed)
            except Exception as exc:
                failures += 1
                pause = min(STORE_RETRY_MAX, 0.05 * 2**failures)
                if isinstance(exc, JobqError):
                    log.warning("jobq: claim failed (%s); trying again in %.2f s", exc, pause)
                else:
                    # Not a store outage jobq knows (a driver error it does
                    # not classify, a bug): say so loudly, and keep claiming.
                    log.error("jobq: claim failed; trying again in %.2f s", pause, exc_info=exc)
                await self._pause(pause)
                continue
            failures = 0
            if self._stopping:
                # The stop began while this claim was in flight: hand its
                # jobs back at once (no attempt spent) rather than start them.
                for job in jobs:
                    await self._release(job, delay=None)
                    self._settling.discard(job.id)
                return
            if self.rate_limit is not None and jobs:
                self.rate_limit.record(now, len(jobs))
            for job in jobs:
                self._spawn(job)
            if not jobs:
                if self.limits or self.queue_concurrency:
                    # Ready jobs may be held back by a limit or a full queue:
                    # look again once one may have room, not at once.
                    await self._idle_limited(now)
                else:
                    await self._idle(now)

    async def _claim_batch(self, limit: int, closed: list[str]) -> list[Job[Any]]:
        """One claim of up to ``limit`` jobs; with per-queue concurrency, one
        claim per queue that has free slots (starting with a different queue
        each time), each with the per-key limits."""
        if self.queue_concurrency is None:
            return await self._complete_and_claim(limit, self.queues, closed)
        busy: dict[str, int] = {}
        for job, _ in self._active.values():
            busy[job.queue] = busy.get(job.queue, 0) + 1
        names = list(self.queue_concurrency)
        start, self._next_queue = self._next_queue % len(names), self._next_queue + 1
        jobs: list[Job[Any]] = []
        for name in names[start:] + names[:start]:
            free = min(self.queue_concurrency[name] - busy.get(name, 0), limit - len(jobs))
            if free > 0:
                jobs += await self._complete_and_claim(free, [name], closed)
        return jobs

    async def _complete_and_claim(
        self, limit: int, queues: Sequence[str] | None, closed: list[str]
    ) -> list[Job[Any]]:
        """One claim, carrying the completions waiting to be written."""
        batch = self._completer.take()
        if len(self._completer):
            self._completer.flush()  # more than one batch waits: the writer takes the rest
        try:
            outcomes, jobs = await self.queue.complete_and_claim(
                [(job, result) for job, result, _ in batch], limit, queues=queues, exclude_types=closed,
                owner=self.worker_id, limits=self.limits,
            )  # fmt: skip
        except BaseException:
            self._completer.give_back(batch)
            raise
        self._completer.settle(batch, outcomes)
        return jobs

    def _completion_settled(self, completion: Completion, error: BaseException | None) -> None:
        job, result, elapsed = completion
        if error is None:
            self._count(job, "succeeded", elapsed)
            if self._events.wants("job_completed"):
                self._events.emit(Event("job_completed", job=job, result=result, processing_time=elapsed))
        elif isinstance(error, LeaseLost):
            log.warning("jobq: %s; its result was not recorded", error)
        elif isinstance(error, JobqError):
            # The store stayed unreachable: the job's lease expires and it runs again.
            log.warning(
                "jobq: could not record the result of job %s (%s); it runs again after its lease", job.id, error
            )
        elif not isinstance(error, asyncio.CancelledError):
            log.error("jobq: recording the result of job %s failed", job.id, exc_info=error)

    async def _idle_limited(self, now: float) -> None:
        """Waits for a local wake-up, another process's commit, or the time
        after which a limit may have room again."""
        self._completer.flush()
        assert self._wake is not None
        timeout = min(self.poll_interval, wait_hint(self.limits) if self.limits else self.poll_interval)
        try:
            due = await self.queue.next_due(queues=self.queues)
        except JobqError:
            due = None
        if due is not None and due > now:
            timeout = min(timeout, due - now)
        if self._wake.is_set():
            return
        await self._wait_for_work(timeout)

    async def _wait_for_work(self, timeout: float) -> None:
        """Returns on a local wake-up, a change stored by another process, or
        after ``timeout`` seconds, whichever comes first."""
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        woken = asyncio.ensure_future(self._wake.wait())
        changed = asyncio.ensure_future(self.queue.wait_for_change(timeout))
        try:
            while True:
                await asyncio.wait((woken, changed), timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                timeout = deadline - loop.time()
                if woken.done() or not changed.done() or timeout <= 0:
                    return
                if changed.result() or await self._anything_ready():
                    return  # work was announced, or a read found some
                # Another connection committed, but nothing became ready (a
                # claim or completion elsewhere): a claim would be an empty
                # write transaction, so keep waiting.
                changed = asyncio.ensure_future(self.queue.wait_for_change(timeout))
        finally:
            for waiter in (woken, changed):
                waiter.cancel()
            await asyncio.gather(woken, changed, return_exceptions=True)

    async def _anything_ready(self) -> bool:
        """A read, no lock: is a job ready in this processor's queues?"""
        try:
            return await self.queue.peek(queues=self.queues) is not None
        except JobqError:
            return True  # let the claim meet the error and back off

    async def _pause(self, seconds: float) -> None:
        """Sleeps up to ``seconds``, waking early on stop or a local enqueue."""
        self._completer.flush()
        assert self._wake is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=max(seconds, 0))

    async def _idle(self, now: float) -> None:
        """Waits for work: a local enqueue, another process's commit, the next
        delayed job coming due, a circuit half-opening, or ``poll_interval``."""
        self._completer.flush()
        assert self._wake is not None
        timeout = self.poll_interval
        try:
            due = await self.queue.next_due(queues=self.queues)
            if time.monotonic() - self._size_counted_at > 1.0:
                self._metrics.queue_size = await self.queue.size(queues=self.queues)
                self._size_counted_at = time.monotonic()
        except JobqError:
            due = None
        if due is not None:
            timeout = min(timeout, max(due - now, 0.0))
        for circuit in self._circuits.values():
            if circuit.state == "open":
                timeout = min(timeout, max(circuit.opened_at + circuit.config.reset_timeout - now, 0.0))
        if timeout <= 0 or self._wake.is_set():
            await asyncio.sleep(0)
            return
        await self._wait_for_work(timeout)

    def _spawn(self, job: Job[Any]) -> None:
        task = asyncio.create_task(self._run_job(job), name=f"jobq-job-{job.id}")
        self._active[job.id] = (job, task)
        task.add_done_callback(lambda _: self._finished(job.id))

    def _finished(self, job_id: str) -> None:
        self._active.pop(job_id, None)
        self._releasing.discard(job_id)
        self._settling.discard(job_id)
        self._cancelling.discard(job_id)
        if self._slot_free is not None:
            self._slot_free.set()

    # -- running one job ---------------------------------------------------

    def _circuit(self, job_type: str) -> Circuit | None:
        if self.circuit_breaker is None:
            return None
        circuit = self._circuits.get(job_type)
        if circuit is None:
            circuit = self._circuits[job_type] = Circuit(self.circuit_breaker)
        return circuit

    def _timeout(self, job: Job[Any]) -> float | None:
        """The job's own timeout, else its type's, else ``job_timeout``; a
        circuit breaker's ``timeout`` caps it."""
        if (
            TIMEOUT_KEY not in job.metadata
            and not self._type_timeouts
            and self.job_timeout is None
            and (self.circuit_breaker is None or not self.circuit_breaker.timeout)
        ):
            return None
        own = job.metadata.get(TIMEOUT_KEY)
        if isinstance(own, bool) or not isinstance(own, (int, float)) or own <= 0:
            own = None
        chosen = own or self._type_timeouts.get(job.type) or self.job_timeout
        limits = [t for t in (chosen, self.circuit_breaker and self.circuit_breaker.timeout) if t]
        return min(limits) if limits else None

    async def _call(self, handler: Handler, job: Job[Any]) -> Any:
        # The handler (and a sync one's thread) sees its job, for report_progress.
        token = enter_job(self.queue, job)
        try:
            if self._async_handlers.get(job.type, False):
                return await handler(job)
            loop = asyncio.get_running_loop()
            context = contextvars.copy_context()
            outcome = await loop.run_in_executor(self._threads, context.run, handler, job)
            if inspect.isawaitable(outcome):
                outcome = await outcome
            return outcome
        finally:
            leave_job(token)

    async def _run_job(self, job: Job[Any]) -> None:
        circuit = self._circuit(job.type)
        if circuit is not None and not circuit.start():
            # Its circuit opened after the claim: give it back, no attempt spent.
            await self._release(job, delay=None)
            return
        handler = self._handlers.get(job.type)
        if handler is None:
            await self._failed(job, no_handler_error(job.type), retry=False, elapsed=0.0)
            return
        if self._events.wants("job_started"):
            self._events.emit(Event("job_started", job=job))
        started = time.monotonic()
        timeout = self._timeout(job)
        try:
            call = self._call(handler, job)
            result = await (asyncio.wait_for(call, timeout) if timeout else call)
        except asyncio.CancelledError:
            if job.id in self._releasing:
                await self._release(job, delay=None)
                return
            if job.id in self._cancelling:
                await self._cancelled_by_request(job, time.monotonic() - started)
                return
            raise
        except (RetryJob, SnoozeJob, CancelJob) as steer:
            if circuit is not None:
                circuit.abandon_trial()
            await self._steer(job, steer, time.monotonic() - started)
            return
        except Exception as exc:
            elapsed = time.monotonic() - started
            if circuit is not None:
                circuit.failure(self.clock.now())
            if isinstance(exc, TimeoutError) and not isinstance(exc, JobqError):
                exc = JobTimeout(f"job {job.id} ran past its {timeout:g} s timeout")
            await self._failed(job, exc, retry=True, elapsed=elapsed)
            return
        elapsed = time.monotonic() - started
        if circuit is not None:
            circuit.success()
        # The task ends here and frees its slot; the completion is written
        # with the next claim, or by the completer (see completer.py).
        self._completer.hand_in(job, result, elapsed)

    async def _steer(self, job: Job[Any], steer: RetryJob | SnoozeJob | CancelJob, elapsed: float) -> None:
        """Does what a handler asked by raising a steering exception."""
        if isinstance(steer, RetryJob):
            await self._failed(job, steer, retry=True, elapsed=elapsed, delay=steer.delay)
        elif isinstance(steer, SnoozeJob):
            self._settling.add(job.id)
            try:
                await self.queue.release(job, delay=steer.delay)
            except LeaseLost as exc:
                log.warning("jobq: %s; its snooze was not recorded", exc)
                return
            self._metrics.snoozed += 1
            self._events.emit(Event("job_snoozed", job=job, retry_delay=steer.delay, processing_time=elapsed))
        else:
            self._settling.add(job.id)
            try:
                await self._cancel_running(job, steer.reason)
            except LeaseLost as exc:
                log.warning("jobq: %s; its cancellation was not recorded", exc)
                return
            self._metrics.cancelled += 1
            self._events.emit(Event("job_cancelled", job=job, error=steer.reason, processing_time=elapsed))

    def _request_cancel(self, job_id: str) -> None:
        """Stops a running job whose cancel was requested: its task is
        cancelled (an async handler sees ``CancelledError`` at its next
        await; a sync one is abandoned in its thread)."""
        entry = self._active.get(job_id)
        if entry is None or job_id in self._settling or job_id in self._cancelling or job_id in self._releasing:
            return
        self._cancelling.add(job_id)
        entry[1].cancel()

    async def _check_cancels(self) -> None:
        running = [job for job_id, (job, _) in self._active.items() if job_id not in self._settling]
        if running:
            for job_id in await self.queue.cancel_requests(running):
                self._request_cancel(job_id)

    async def _cancelled_by_request(self, job: Job[Any], elapsed: float) -> None:
        self._settling.add(job.id)
        try:
            await asyncio.shield(self.queue.cancel_running(job))
        except LeaseLost as exc:
            log.warning("jobq: %s; its cancellation was not recorded", exc)
            return
        except JobqError as exc:
            log.warning("jobq: could not record the cancellation of job %s (%s)", job.id, exc)
            return
        finally:
            self._cancelling.discard(job.id)
        self._metrics.cancelled += 1
        self._events.emit(Event("job_cancelled", job=job, error="cancel requested", processing_time=elapsed))

    async def _prune(self) -> None:
        r = self.retention
        await self.queue.prune(
            completed_after=r.completed_after, failed_after=r.failed_after, cancelled_after=r.cancelled_after
        )

    async def _cancel_running(self, job: Job[Any], reason: str) -> None:
        """Ends the job as ``cancelled`` under this processor's claim, through
        the queue's fenced cancel verb."""
        await self.queue.cancel_running(job, reason)

    async def _failed(
        self,
        job: Job[Any],
        error: BaseException | str,
        *,
        retry: bool,
        elapsed: float,
        delay: float | None = None,
    ) -> None:
        message = error if isinstance(error, str) else (str(error) or type(error).__name__)
        will_retry = retry and job.attempts + 1 < job.max_attempts
        if will_retry and delay is None:
            delay = self.retry_policy.delay(job.attempts)
        elif not will_retry:
            delay = None
        self._settling.add(job.id)
        try:
            await self.queue.fail(job, error, RetryDirective(True, delay) if will_retry else None)
        except LeaseLost as exc:
            log.warning("jobq: %s; its failure was not recorded", exc)
            return
        except JobqError as exc:
            log.warning(
                "jobq: could not record the failure of job %s (%s); it runs again after its lease", job.id, exc
            )
            return
        if will_retry:
            self._count(job, "retried", elapsed)
            self._events.emit(
                Event("job_retry", job=job, error=message, retry_delay=delay, processing_time=elapsed)
            )
        else:
            self._count(job, "failed", elapsed)
            self._events.emit(Event("job_failed", job=job, error=message, processing_time=elapsed))

    async def _release(self, job: Job[Any], *, delay: float | None) -> None:
        self._settling.add(job.id)
        try:
            await asyncio.shield(self.queue.release(job, delay=delay))
        except LeaseLost:
            pass
        except JobqError as exc:
            log.warning("jobq: could not release job %s (%s); its lease will expire", job.id, exc)

    def _count(self, job: Job[Any], outcome: str, elapsed: float) -> None:
        m = self._metrics
        per_type = m.by_type.get(job.type)
        if per_type is None:
            per_type = m.by_type[job.type] = {"processed": 0, "succeeded": 0, "failed": 0, "retried": 0}
        per_type[outcome] += 1
        if outcome == "retried":
            m.retried += 1
        else:
            setattr(m, outcome, getattr(m, outcome) + 1)
            m.processed += 1
            per_type["processed"] += 1
            finished = m.succeeded + m.failed
            m.average_processing_time += (elapsed - m.average_processing_time) / finished
        self._last_processed = time.time()  # a datetime when metrics are read

    # -- background duties -------------------------------------------------

    async def _cron_loop(self) -> None:
        """Settles each schedule's latest due slot, then sleeps until the next
        slot of any schedule (or a fake clock moves)."""
        assert self._cron_wake is not None
        while True:
            self._cron_wake.clear()
            now = self.clock.now()
            retry = not await self._cron_tick(now)
            wait = seconds_until_next(list(self._crons.values()), now)
            if retry:
                wait = min(wait, CRON_RETRY)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._cron_wake.wait(), timeout=wait)

    async def _cron_tick(self, now: float) -> bool:
        """Settles every schedule's due slot; ``False`` if a store error left
        one to try again."""
        settled = True
        for schedule in list(self._crons.values()):
            slot = schedule.due(now)
            if slot is None:
                continue
            try:
                await self._fire_cron(schedule, slot)
            except Exception as exc:  # noqa: BLE001 - the schedule tries again; the loop must not die
                log.warning("jobq: cron schedule %r could not claim its slot: %s", schedule.name, exc)
                settled = False
                continue
            schedule.last_seen_ms = slot
        return settled

    def _cron_job(self, schedule: CronSchedule, slot_ms: int) -> NewJob:
        return NewJob(
            type=schedule.job_type,
            data=schedule.data,
            priority=ADD_PRIORITY if schedule.priority is None else schedule.priority,
            max_attempts=self.max_retries if schedule.max_attempts is None else schedule.max_attempts,
            metadata=schedule.job_metadata(slot_ms),
            queue=schedule.queue or (self.queues[0] if self.queues else DEFAULT_QUEUE),
        )

    async def _fire_cron(self, schedule: CronSchedule, slot_ms: int) -> None:
        job = await self.queue.enqueue_for_slot(schedule.name, slot_ms, self._cron_job(schedule, slot_ms))
        if job is None:
            return
        log.info("jobq: cron schedule %r enqueued job %s for its slot", schedule.name, job.id)
        self._events.emit(Event("cron_enqueued", job=job))

    async def _every(self, interval: float, duty: Callable[[], Awaitable[None]]) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await duty()
            except JobqError as exc:
                log.warning("jobq: %s failed: %s", getattr(duty, "__name__", "duty"), exc)

    async def _renew_leases(self) -> None:
        self._renewed_at = self.clock.now()
        jobs = [job for job_id, (job, _) in self._active.items() if job_id not in self._settling]
        if not jobs:
            return
        for job_id in await self.queue.extend_leases(jobs):
            # A job whose outcome was stored meanwhile (by this processor)
            # has no lease left to renew; that is not a lost lease.
            if job_id in self._active and job_id not in self._settling:
                log.warning("jobq: lost the lease on job %s; its outcome will not be recorded", job_id)

    async def _rescue(self) -> None:
        # A clock that jumped ahead makes every lease look expired, healthy
        # ones too: when this processor's own leases may have run out by the
        # clock, it renews them before sweeping (normally the heartbeat,
        # every third of a lease or sooner, keeps them far from that).
        if self.clock.now() >= self._renewed_at + self.queue.lease:
            await self._renew_leases()
        for job in await self.queue.rescue_expired():
            self._metrics.lost += 1
            log.warning("jobq: job %s was rescued: %s", job.id, job.error)
            self._events.emit(Event("job_lost", job=job, error=job.error))
            if job.status is JobStatus.FAILED:
                if job.lost_count >= self.queue.max_lost_leases:
                    self._metrics.quarantined += 1
                    self._events.emit(Event("job_quarantined", job=job, error=job.error))
                self._events.emit(Event("job_failed", job=job, error=job.error))
