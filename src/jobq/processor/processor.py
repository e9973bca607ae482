"""JobProcessor: runs the handlers registered for job types against one queue.

The processor registers handlers and cron schedules, and wires its parts:

- :mod:`~jobq.processor.config`: its options, documented and checked;
- :mod:`~jobq.processor.producer`: the claim loop, filling free slots;
- :mod:`~jobq.processor.executor`: runs one job and decides its outcome;
- :mod:`~jobq.processor.completer`: writes outcomes in groups, then reports;
- :mod:`~jobq.processor.maintenance`: lease renewal, rescue, pruning, cancel polling;
- :mod:`~jobq.processor.cron`: schedules and their loop;
- :mod:`~jobq.processor.compat`: k-msg's verbs (``add``, ``get_metrics``, ...).

Every job in flight is in one map, ``job id -> Running(job, task, phase)``:
the claim loop counts it to find free slots, the lease keeper renews it
unless its outcome is being written, a cancel request or ``stop()`` moves
its phase and cancels its task, and the executor reads the phase to tell a
cancel from a release.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, Generic, TypeVar, overload

from .. import logs
from ..admin import Retention
from ..clock import Clock
from ..errors import InvalidOption, WorkerFailed
from ..events import Emitter, Event, ProcessorMetrics
from ..keylimits import KeyLimit
from ..newjobs import check_timeout
from ..options import reject_unknown
from ..queue import Queue
from ..rescue import RESCUE_INTERVAL
from ..retry import RETRY_DELAYS, RetryPolicy
from .compat import KmsgVerbs
from .completer import Completer, Reporter
from .config import (
    ADD_PRIORITY,
    CANCEL_CHECK_INTERVAL,
    CONCURRENCY,
    HEARTBEAT_INTERVAL,
    MAX_RETRIES,
    OPTIONS,
    POLL_INTERVAL,
    PRUNE_INTERVAL,
    ProcessorConfig,
    total_concurrency,
)
from .cron import CronLoop, CronSchedule, cron_job
from .executor import Executor, Handler, Phase, Registered, Running, is_async
from .leases import LeaseKeeper
from .limits import Circuit, CircuitBreaker, RateLimit
from .maintenance import Maintenance
from .producer import Producer
from .registry import Registration

H = TypeVar("H", bound=Handler)
T = TypeVar("T")

log = logging.getLogger("jobq")

ABANDONED_THREADS = 32  # spare handler threads, so abandoned sync handlers do not hold slots


class _Option(Generic[T]):
    """A processor attribute that reads its config (``read``: a derived
    field) and, when set, replaces the config (checked again)."""

    def __init__(self, read: str | None = None) -> None:
        self.read = read

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name
        self.read = self.read or name

    @overload
    def __get__(self, processor: None, owner: type) -> _Option[T]: ...
    @overload
    def __get__(self, processor: JobProcessor, owner: type | None = None) -> T: ...
    def __get__(self, processor: JobProcessor | None, owner: type | None = None) -> T | _Option[T]:
        if processor is None:
            return self
        return getattr(processor.config, self.read)  # type: ignore[arg-type, no-any-return]

    def __set__(self, processor: JobProcessor, value: T) -> None:
        processor.configure(**{self.name: value})


class JobProcessor(KmsgVerbs):
    """Runs the handlers registered for job types against one queue.

    Options are keyword-only; each is documented beside its default in
    :class:`~jobq.processor.config.ProcessorConfig` (``concurrency=5``,
    ``retry_delays=[1, 5, 15, 60]``, ``max_retries=3``, ``poll_interval=1.0``,
    ``rate_limit``, ``circuit_breaker``, ``retry_policy``, ``queues``,
    ``heartbeat_interval``, ``rescue_interval``, ``shutdown_timeout``,
    ``job_timeout``, ``batch_size``, ``worker_id``, ``limits``,
    ``prune_interval``, ``retention``, ``cancel_check_interval``). An unknown
    option is refused with a suggestion. ``processor.config`` holds them; the
    attributes of the same names read it.
    """

    concurrency = _Option[int]()
    max_retries = _Option[int]()
    poll_interval = _Option[float]()
    rate_limit = _Option[RateLimit | None]()
    circuit_breaker = _Option[CircuitBreaker | None]()
    retry_policy = _Option[RetryPolicy]("policy")
    queues = _Option[list[str] | None]("queue_names")
    queue_concurrency = _Option[dict[str, int] | None]()
    heartbeat_interval = _Option[float]()
    rescue_interval = _Option[float]()
    shutdown_timeout = _Option[float]("grace")
    job_timeout = _Option[float | None]()
    batch_size = _Option[int]("claim_batch")
    limits = _Option[Sequence[KeyLimit]]()
    prune_interval = _Option[float | None]()
    retention = _Option[Retention]("keep")
    cancel_check_interval = _Option[float]()

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
        shutdown_timeout: float | None = None,
        job_timeout: float | None = None,
        batch_size: int | None = None,
        worker_id: str | None = None,
        limits: Sequence[KeyLimit] = (),
        prune_interval: float | None = PRUNE_INTERVAL,
        retention: Retention | None = None,
        cancel_check_interval: float = CANCEL_CHECK_INTERVAL,
        **unknown: Any,
    ) -> None:
        reject_unknown("JobProcessor", unknown, OPTIONS)
        if not isinstance(queue, Queue):
            raise TypeError(f"JobProcessor needs a jobq queue, not {type(queue).__name__}")
        config = ProcessorConfig(
            concurrency=total_concurrency(queues, concurrency), retry_delays=retry_delays,
            retry_policy=retry_policy, max_retries=max_retries, poll_interval=poll_interval,
            rate_limit=rate_limit, circuit_breaker=circuit_breaker, queues=queues,
            heartbeat_interval=heartbeat_interval, rescue_interval=rescue_interval,
            shutdown_timeout=shutdown_timeout, job_timeout=job_timeout, batch_size=batch_size,
            worker_id=worker_id, limits=limits, prune_interval=prune_interval, retention=retention,
            cancel_check_interval=cancel_check_interval,
        )  # fmt: skip
        config.check_lease(queue.lease)
        self.queue = queue
        self.config = config
        self._handlers: dict[str, Registered] = {}
        self._crons: dict[str, CronSchedule] = {}
        self._circuits: dict[str, Circuit] = {}
        self._events = Emitter()
        self._metrics = ProcessorMetrics()
        self._reporter = Reporter(self._events, self._metrics)
        self._jobs: dict[str, Running] = {}  # every job in flight, by id
        self._running = False
        self._producer: Producer | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._unsubscribe: list[Callable[[], Any]] = []
        # request_stop()'s targets on the loop that runs this processor: end
        # run()'s wait, and cut stop()'s grace short.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_asked: asyncio.Event | None = None
        self._hurry: asyncio.Event | None = None
        self._completer = Completer(queue, self._reporter)
        self._keeper: LeaseKeeper | None = None
        self._registration: Registration | None = None
        self._stop_requested: asyncio.Event | None = None  # run()'s, while it waits
        self._stopping_task: asyncio.Task[None] | None = None
        #: Why the worker stopped on its own (a duty that could not recover), else ``None``.
        self.failure: BaseException | None = None
        self._wire()

    def _wire(self) -> None:
        """(Re)builds the parts that hold the queue or the config."""
        completer = self._completer
        self._executor = Executor(
            self.queue, self.config, self._handlers, self._circuits, self._events,
            completer.hand_in, completer.write,
        )  # fmt: skip
        self._cron = CronLoop(self.queue, self.config, self._crons, self._events)

    def configure(self, **options: Any) -> None:
        """Changes options of a processor that is not running (each checked
        as at construction)."""
        if self._running:
            raise InvalidOption("cannot change the options of a running processor; stop it first")
        reject_unknown("JobProcessor", {k: v for k, v in options.items() if k not in OPTIONS}, OPTIONS)
        if isinstance(options.get("queues"), Mapping) and "concurrency" not in options:
            options["concurrency"] = total_concurrency(options["queues"], self.config.concurrency)
        config = replace(self.config, **options)
        config.check_lease(self.queue.lease)
        self.config = config
        self._wire()

    @property
    def worker_id(self) -> str:
        """Names this processor in leases and logs (default: its queue's)."""
        return self.config.worker_id or self.queue.worker_id

    @worker_id.setter
    def worker_id(self, value: str) -> None:
        self.configure(worker_id=value)

    @property
    def clock(self) -> Clock:
        return self.queue.clock

    @property
    def circuits(self) -> dict[str, Circuit]:
        """The circuit breakers' states, by job type (once a job of the type ran)."""
        return self._circuits

    @property
    def paused_queues(self) -> frozenset[str]:
        """The paused queues (``Queue.pause``) this processor leaves out of
        its claims, as it last read them (empty before it starts)."""
        return frozenset() if self._producer is None else self._producer.paused

    # -- registration ------------------------------------------------------

    def handle(
        self,
        job_type: str,
        handler: Handler,
        *,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        """Registers ``handler`` for ``job_type`` (async or plain function).
        ``timeout``: seconds a job of this type may run (overrides
        ``job_timeout``; a job's own timeout overrides this). ``retry``: the
        type's own retry policy (overrides the processor's)."""
        if not callable(handler):
            raise TypeError(f"handler for {job_type!r} is not callable")
        seconds = None if timeout is None else check_timeout(timeout)
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise InvalidOption(f"retry must be a retry policy such as jobq.ExponentialBackoff, not {retry!r}")
        self._handlers[job_type] = Registered(handler, is_async(handler), seconds, retry)

    def handler(
        self, job_type: str, *, timeout: float | None = None, retry: RetryPolicy | None = None
    ) -> Callable[[H], H]:
        """Decorator form of :meth:`handle`."""

        def register(fn: H) -> H:
            self.handle(job_type, fn, timeout=timeout, retry=retry)
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
            expression, job_type, data, name=name or "", timezone=timezone, priority=priority,
            max_attempts=max_attempts, metadata=metadata, queue=queue,
        )  # fmt: skip
        if schedule.name in self._crons:
            raise InvalidOption(f"a cron schedule named {schedule.name!r} exists; give this one a name=")
        # Bad data or options fail now, not at each slot.
        self.queue.validate(cron_job(schedule, 0, self.config))
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

    @property
    def running(self) -> bool:
        return self._running

    @property
    def job_types(self) -> list[str]:
        """The job types this processor has handlers for, sorted."""
        return sorted(self._handlers)

    def bind(self, queue: Queue) -> None:
        """Points a processor that is not running at another queue (the CLI's
        ``--url``); handlers and options stay."""
        if self._running:
            raise InvalidOption("cannot change the queue of a running processor")
        self.queue = queue
        self._completer = Completer(queue, self._reporter)
        self._wire()

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """Starts the workers in the background and returns."""
        if self._running:
            return
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._stop_asked is None or self._hurry is None:
            self._loop, self._stop_asked, self._hurry = loop, asyncio.Event(), asyncio.Event()
        self._running = True
        # Slots bound how many handlers run; the spare threads keep a sync
        # handler abandoned after its timeout from holding up the next one.
        self._executor.threads = ThreadPoolExecutor(
            max_workers=self.config.concurrency + ABANDONED_THREADS, thread_name_prefix="jobq-handler"
        )
        self.failure = None
        keeper = LeaseKeeper(self.queue, self.config.heartbeat_interval, self._jobs, self._fatal)
        self._keeper = keeper
        self._completer.leases = keeper
        keeper.start()
        producer = self._producer = Producer(
            self.queue, self.config, self.worker_id, self._jobs, self._executor.run, self._completer,
            self._circuits, self._metrics, keeper, self._fatal,
        )  # fmt: skip
        claim_loop, self._unsubscribe = producer.start()
        jobs = self._jobs
        registration = self._registration = Registration(
            self.queue, self.config, self.worker_id, self._metrics, lambda: len(jobs), lambda: self._circuits
        )
        maintenance = Maintenance(
            self.queue, self.config, self._jobs, self._reporter, self._request_cancel, keeper,
            producer.suspect_waiting, registration,
        )  # fmt: skip
        self._tasks = [claim_loop, *maintenance.tasks(self._fatal)]

        for task in self._tasks:
            task.add_done_callback(self._ended)

        def cancel_requested(job_id: str) -> None:
            loop.call_soon_threadsafe(self._request_cancel, job_id)

        self._unsubscribe.append(self.queue.on_cancel(cancel_requested))
        if self._crons:
            cron_loop, unsubscribe = self._cron.start()
            self._tasks.append(cron_loop)
            self._unsubscribe.append(unsubscribe)
        logs.worker_started(
            self.worker_id, self.queue, self.queues, self.job_types,
            self.config.concurrency, self.config.grace,
        )  # fmt: skip
        self._events.emit(Event("processor_started"))

    async def stop(self, timeout: float | None = None) -> None:
        """Stops claiming, lets jobs in flight finish for up to ``timeout``
        seconds (default ``shutdown_timeout``), then releases the rest so they
        run again at once, and returns."""
        if not self._running:
            return
        assert self._producer is not None
        self._producer.stop()
        claim_loop, *background = self._tasks
        await claim_loop  # finishes its current claim, so no claimed job is dropped
        grace = self.config.grace if timeout is None else timeout
        in_flight = [r.task for r in self._jobs.values() if r.task is not None]
        if in_flight:
            await self._grace(in_flight, grace)
        leftover = [(r, r.task) for r in self._jobs.values() if r.task is not None]
        for running, task in leftover:
            if running.phase is not Phase.SETTLING:  # one being written is not given back
                running.phase = Phase.RELEASING
            task.cancel()
        if leftover:
            await asyncio.gather(*(task for _, task in leftover), return_exceptions=True)
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        threads, self._executor.threads = self._executor.threads, None
        if isinstance(threads, ThreadPoolExecutor):
            # Threads of abandoned sync handlers may still run; don't wait for them.
            threads.shutdown(wait=False, cancel_futures=True)
        self._running = False
        self._loop = self._stop_asked = self._hurry = None
        await self._completer.drain()  # leases are renewed until the outcomes are written
        if self._keeper is not None:
            await self._keeper.stop()
        self._completer.leases = None
        if self._registration is not None:
            await self._registration.unregister()
            self._registration = None
        logs.worker_stopped(self.worker_id)
        self._events.emit(Event("processor_stopped"))
        await self._events.drain()

    async def _grace(self, in_flight: list[asyncio.Task[Any]], grace: float) -> None:
        """Waits until the jobs in flight are done, ``grace`` seconds have
        passed, or :meth:`request_stop` asks to stop now."""
        hurry = self._hurry or asyncio.Event()
        done = asyncio.ensure_future(asyncio.wait(in_flight))
        hurried = asyncio.ensure_future(hurry.wait())
        try:
            await asyncio.wait([done, hurried], timeout=grace, return_when=asyncio.FIRST_COMPLETED)
        finally:
            done.cancel()  # stops the waits only; the jobs go on
            hurried.cancel()
            await asyncio.gather(done, hurried, return_exceptions=True)

    def request_stop(self, *, now: bool = False) -> None:
        """Asks a running processor to stop; safe from a signal handler or
        another thread. It claims nothing more from this moment, and
        :meth:`run` stops gracefully. ``now=True`` also cuts the grace of a
        stop short: the jobs still running are released at once, to run
        again elsewhere (``run()``'s handlers do this on a second signal)."""
        if self._producer is not None:
            self._producer.stopping = True
        loop, asked, hurry = self._loop, self._stop_asked, self._hurry
        if loop is None or asked is None or hurry is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(asked.set)
        if now:
            loop.call_soon_threadsafe(hurry.set)

    def _ended(self, task: asyncio.Task[None]) -> None:
        """A background loop ended: only ``stop()`` should end one."""
        if task.cancelled() or not self._running or self.failure is not None:
            return
        if self._producer is not None and self._producer.stopping:
            return
        error = task.exception() or RuntimeError(f"{task.get_name()} ended")
        log.critical("%s ended unexpectedly", task.get_name(), exc_info=error)
        self._fatal(error)

    def _fatal(self, error: BaseException) -> None:
        """A duty cannot go on: the worker stops (``run()`` then raises
        :class:`jobq.WorkerFailed`, so ``jobq worker`` exits non-zero
        and a supervisor starts a fresh one). ``failure`` keeps the error."""
        if self.failure is not None or not self._running:
            return
        self.failure = error
        log.critical("worker %s cannot go on (%s); stopping it", self.worker_id, _describe(error))
        if self._stop_requested is not None:
            self._stop_requested.set()  # run() stops it, and raises
        else:
            self._stopping_task = asyncio.get_running_loop().create_task(self.stop(), name="jobq-stop")

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
            await self._cron.tick(self.clock.now())
        task = asyncio.current_task()
        assert task is not None
        while ran < max_jobs:
            now = self.clock.now()
            closed = [t for t, c in self._circuits.items() if not c.allows_claim(now)]
            jobs = await self.queue.claim(
                1, queues=self.config.queue_names, exclude_types=closed, owner=self.worker_id, rescue=False
            )
            if not jobs:
                break
            job = jobs[0]
            running = self._jobs[job.id] = Running(job, task)
            try:
                await self._executor.run(running)
                await self._completer.drain()  # stored before the next job, as a caller expects
            finally:
                self._jobs.pop(job.id, None)
            ran += 1
        await self._events.drain()
        return ran

    async def run(self, *, handle_signals: bool = True) -> None:
        """Runs until SIGTERM or SIGINT (or :meth:`request_stop`, or
        cancellation), then stops gracefully. A second signal during that
        stop cuts it short: the jobs still running are released at once."""
        loop = asyncio.get_running_loop()
        asked = self._stop_asked = asyncio.Event()
        self._loop, self._hurry = loop, asyncio.Event()
        previous: dict[signal.Signals, Any] = {}
        signals = 0

        def on_signal(signum: int, frame: object) -> None:
            # A Python-level handler runs at once in the main thread, even
            # while the loop is busy: from here on nothing more is claimed
            # (a loop-level handler would run an iteration or two later,
            # after a claim of jobs that finished meanwhile). The graceful
            # stop itself runs on the loop, and a second signal hurries it.
            nonlocal signals
            signals += 1
            self.request_stop(now=signals > 1)

        if handle_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                previous[sig] = signal.signal(sig, on_signal)
        self._stop_requested = asked
        try:
            await self.start()
            try:
                await asked.wait()
            finally:
                await self.stop()
        finally:
            self._stop_requested = None
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if self.failure is not None:
            raise WorkerFailed(
                f"worker {self.worker_id} stopped: {_describe(self.failure)} (see the log)"
            ) from self.failure

    def _request_cancel(self, job_id: str) -> None:
        """Stops a running job whose cancel was requested: its task is
        cancelled (an async handler sees ``CancelledError`` at its next
        await; a sync one is abandoned in its thread)."""
        running = self._jobs.get(job_id)
        if running is None or running.phase is not Phase.RUNNING or running.task is None:
            return
        running.phase = Phase.CANCELLING
        running.task.cancel()


def _describe(error: BaseException) -> str:
    try:
        return f"{type(error).__name__}: {error}"
    except Exception:  # noqa: BLE001 - an error whose __str__ raises is still named
        return type(error).__name__
