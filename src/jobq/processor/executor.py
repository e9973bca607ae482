"""Running one job, and deciding its :class:`Outcome`.

The executor looks up the job's handler, runs it (an async handler in the
worker's loop, a plain one in a thread, each seeing its job for
``report_progress``) under its timeout and circuit breaker, and decides,
once, what becomes of the job:

- the handler returned: **completed** with its result;
- it raised: a failed attempt, **retry** after the retry policy's delay while
  attempts are left (:func:`jobq.transitions.will_retry`), else **failed**
  for good; a timeout is a :class:`jobq.JobTimeout` failure, retried the same
  way; a job type with no handler fails for good at once;
- it steered its job (:class:`jobq.RetryJob` retries after its own delay,
  :class:`jobq.SnoozeJob` is **snoozed** without spending an attempt,
  :class:`jobq.CancelJob` is **cancelled** for good, :class:`jobq.FailJob`
  **fails** for good whatever attempts are left);
- its result has no JSON form: **failed** for good (a run again would
  return the same);
- it was stopped: **cancelled** on a cancel request, **released** (given
  back, no attempt spent) when the processor stops or the type's circuit
  opened after the claim.

The outcome goes to the completer, which writes it (:meth:`Outcome.transition`,
fenced by the job's claim) and then reports it. A completion is handed in and
the job's slot is free at once; any other outcome is awaited until written,
so its slot stays taken until then, as ``stop()`` and tests expect.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import inspect
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor as ThreadPool
from dataclasses import dataclass, field
from typing import Any

from .. import codec, hooks, logs, transitions
from ..clock import Clock, to_ms
from ..context import enter_job, leave_job
from ..errors import CancelJob, FailJob, InvalidJob, JobqError, JobTimeout, RetryJob, SnoozeJob
from ..events import Emitter, Event
from ..history import format_traceback
from ..job import MAX_TIME_MS, Job
from ..newjobs import TIMEOUT_KEY
from ..queue import Queue
from ..retry import RetryPolicy
from ..transitions import Transition
from .config import ProcessorConfig
from .limits import Circuit

Handler = Callable[[Job[Any]], Any]


def no_handler_error(job_type: str) -> str:
    return f"No handler registered for job type: {job_type}"


def is_async(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))  # noqa: B004 - finds an async __call__


@dataclass(slots=True)
class Registered:
    """A job type's handler, whether it is a coroutine function, and the
    type's own timeout in seconds and retry policy (``None``: the
    processor's)."""

    fn: Handler
    is_async: bool
    timeout: float | None = None
    retry: RetryPolicy | None = None


class Kind(enum.Enum):
    """What became of a job its processor ran."""

    COMPLETED = "completed"  #: the handler returned; ``result`` is kept
    RETRY = "retry"  #: a failed attempt, run again after ``delay`` seconds
    FAILED = "failed"  #: a failed attempt with none left (or no handler): failed for good
    SNOOZED = "snoozed"  #: waits ``delay`` seconds, no attempt spent (SnoozeJob)
    CANCELLED = "cancelled"  #: ended for good (CancelJob, or a cancel request)
    RELEASED = "released"  #: given back to run again at once, no attempt spent


#: The outcomes after which the job never runs again.
FINAL = frozenset({Kind.COMPLETED, Kind.FAILED, Kind.CANCELLED})


@dataclass(slots=True)
class Outcome:
    """What the executor decided for one job; the completer writes it."""

    kind: Kind
    job: Job[Any]
    result: Any = None
    """The handler's return value (``COMPLETED``)."""
    error: str | None = None
    """The error message: stored with a failed attempt or a ``CancelJob``,
    and the ``error`` of the event."""
    exception: BaseException | None = None
    """What the handler raised, if it raised."""
    delay: float | None = None
    """Seconds before the job runs again (``RETRY``, ``SNOOZED``)."""
    elapsed: float = 0.0
    """Seconds the handler ran."""
    waiter: asyncio.Future[None] | None = field(default=None, repr=False, compare=False)
    """Set by the completer for an outcome whose writer waits for it."""
    stored_result: str | None = None
    """``result`` as the JSON text stored (``COMPLETED``)."""
    replaces: Kind | None = None
    """Set on the failure that stands in for an outcome that could not be
    stored (see :meth:`unstorable`)."""
    retry_until: float | None = None
    """Set by the completer once a write of this outcome failed: epoch
    seconds until which it tries again (the end of the job's lease then)."""

    def transition(self) -> Transition:
        """The write that records this outcome, fenced by the job's claim,
        with its attempt's row in the history. Raises
        (:class:`jobq.InvalidJob`) for an outcome that cannot be stored,
        such as a retry delay past year 9999."""
        job, kind = self.job, self.kind
        token = job.lease_token
        if kind is Kind.COMPLETED:
            return transitions.completed(job.id, token, self.stored_result)
        run = transitions.attempt_of(job)
        if kind is Kind.RETRY or kind is Kind.FAILED:
            delay_ms = None
            if kind is Kind.RETRY:
                delay_ms = _delay_ms(self.delay or 0, "retry delay")
            return transitions.failed_attempt(
                job.id, token=token, attempts=job.attempts, max_attempts=job.max_attempts,
                error=codec.error_text(self.error or ""), retry_delay_ms=delay_ms,
                error_type=codec.error_type(self.exception), run=run,
                traceback=format_traceback(self.exception), timed_out=isinstance(self.exception, JobTimeout),
            )  # fmt: skip
        assert token is not None, "only a claimed job is given back or cancelled"
        if kind is Kind.CANCELLED:
            # A handler's CancelJob stores its reason; a cancel request keeps
            # the stored error as it is.
            if self.exception is None:
                return transitions.cancelled(job.id, token, None, run=run)
            reason = codec.error_text(self.error or "")
            return transitions.cancelled(job.id, token, reason, codec.error_type(self.exception), run)
        delay_ms = None if self.delay is None else _delay_ms(self.delay, "delay")
        return transitions.released(job.id, token, delay_ms, run, snoozed=kind is Kind.SNOOZED)

    def unstorable(self, error: BaseException) -> Outcome:
        """The failure (for good) that stands in for this outcome when it
        cannot be stored (its retry delay, its result, its cancel reason):
        the job fails with an error saying why, rather than losing its lease."""
        what = _WHAT[self.kind]
        return Outcome(
            Kind.FAILED, self.job, None, f"its {what} could not be stored ({_message(error)})", error,
            None, self.elapsed, self.waiter, replaces=self.kind,
        )  # fmt: skip


#: What each kind of outcome records, in an error saying it could not be stored.
_WHAT = {
    Kind.COMPLETED: "result",
    Kind.RETRY: "retry",
    Kind.FAILED: "failure",
    Kind.SNOOZED: "snooze",
    Kind.CANCELLED: "cancellation",
    Kind.RELEASED: "release",
}


def _delay_ms(delay: Any, what: str) -> int:
    """A delay in ms, refused when the job would then wait past year 9999
    (which no store can hold)."""
    delay_ms = to_ms(codec.check_delay(delay, what))
    if delay_ms > MAX_TIME_MS - to_ms(time.time()):
        raise InvalidJob(f"a {what} of {delay:g} s ends after year 9999")
    return delay_ms


class Phase(enum.Enum):
    """Where a running job is."""

    RUNNING = "running"  #: its handler runs
    CANCELLING = "cancelling"  #: a cancel request stopped its task; it ends cancelled
    RELEASING = "releasing"  #: stop() ran out of grace; it is given back
    SETTLING = "settling"  #: its outcome is being written: its lease ends with that write


class Running:
    """One job in flight: the job, the task running it, and its phase."""

    __slots__ = ("job", "task", "phase")

    def __init__(
        self, job: Job[Any], task: asyncio.Task[Any] | None = None, phase: Phase = Phase.RUNNING
    ) -> None:
        self.job = job
        self.task = task
        self.phase = phase


def _message(error: BaseException | str) -> str:
    if isinstance(error, str):
        return error
    try:
        return str(error) or type(error).__name__
    except Exception:  # noqa: BLE001 - an exception whose __str__ raises still fails its job
        return type(error).__name__


class Executor:
    """Runs jobs for one processor (see the module docstring).

    ``handlers`` and ``circuits`` are the processor's own dicts, so handlers
    registered later are seen. ``hand_in`` takes a completion (the slot is
    free at once); ``write`` writes any other outcome and returns once it is
    written and reported."""

    def __init__(
        self,
        queue: Queue,
        config: ProcessorConfig,
        handlers: dict[str, Registered],
        circuits: dict[str, Circuit],
        events: Emitter,
        hand_in: Callable[[Outcome], None],
        write: Callable[[Outcome], Awaitable[None]],
    ) -> None:
        self.queue = queue
        self.clock: Clock = queue.clock
        self.config = config
        self.handlers = handlers
        self.circuits = circuits
        self.threads: ThreadPool | None = None  # sync handlers' threads (None: the loop's default)
        self._events = events
        self._hand_in = hand_in
        self._write = write
        self._breaker = config.circuit_breaker
        self._cap = config.circuit_breaker.timeout if config.circuit_breaker else None

    async def run(self, running: Running) -> Outcome:
        """Runs ``running.job``, hands its outcome to the completer (a
        failure, snooze, cancellation or release is written before this
        returns), and returns the outcome."""
        job = running.job
        circuit = self._circuit(job.type) if self._breaker is not None else None
        if circuit is not None and not circuit.start():
            # Its circuit opened after the claim: give it back, no attempt spent.
            return await self._settle(running, Outcome(Kind.RELEASED, job))
        registered = self.handlers.get(job.type)
        if registered is None:
            outcome = self.failure(job, no_handler_error(job.type), retry=False, elapsed=0.0)
            return await self._settle(running, outcome)
        if self._events.wants("job_started"):
            self._events.emit(Event("job_started", job=job))
        if logs.job_log.isEnabledFor(logs.DEBUG):
            logs.job_started(job)
        started = time.monotonic()
        timeout = self._timeout(job, registered)
        try:
            call = self._traced(registered, job) if hooks.active() else self._call(registered, job)
            result = await (asyncio.wait_for(call, timeout) if timeout else call)
        except asyncio.CancelledError:
            elapsed = time.monotonic() - started
            if running.phase is Phase.RELEASING:
                outcome = Outcome(Kind.RELEASED, job, elapsed=elapsed)
            elif running.phase is Phase.CANCELLING:
                outcome = Outcome(Kind.CANCELLED, job, error=transitions.CANCEL_REQUESTED, elapsed=elapsed)
            else:
                raise
        except (RetryJob, SnoozeJob, CancelJob, FailJob) as steer:
            if circuit is not None:
                circuit.abandon_trial()
            outcome = self.steered(job, steer, time.monotonic() - started)
        except Exception as exc:
            elapsed = time.monotonic() - started
            if circuit is not None:
                circuit.failure(self.clock.now())
            if isinstance(exc, TimeoutError) and not isinstance(exc, JobqError):
                exc = JobTimeout(f"job {job.id} ran past its {timeout:g} s timeout")
            outcome = self.failure(job, exc, retry=True, elapsed=elapsed)
        else:
            if circuit is not None:
                circuit.success()
            try:
                stored = codec.encode_result(result)
            except InvalidJob as exc:
                # Running it again would redo its work and return the same.
                outcome = self.failure(job, exc, retry=False, elapsed=time.monotonic() - started)
            else:
                # The task ends here and frees its slot; the completion is written
                # with the next claim, or by the completer's writer (completer.py).
                elapsed = time.monotonic() - started
                outcome = Outcome(Kind.COMPLETED, job, result, None, None, None, elapsed, None, stored)
                self._hand_in(outcome)
                return outcome
        return await self._settle(running, outcome)

    async def _settle(self, running: Running, outcome: Outcome) -> Outcome:
        running.phase = Phase.SETTLING
        await self._write(outcome)
        return outcome

    def failure(
        self,
        job: Job[Any],
        error: BaseException | str,
        *,
        retry: bool,
        elapsed: float,
        delay: float | None = None,
    ) -> Outcome:
        """A failed attempt: ``RETRY`` after ``delay`` (default: the retry
        policy's) if ``retry`` and attempts are left, else ``FAILED``."""
        exception = None if isinstance(error, str) else error
        if retry and transitions.will_retry(job.attempts, job.max_attempts):
            if delay is None:
                registered = self.handlers.get(job.type)
                policy = registered.retry if registered is not None and registered.retry else self.config.policy
                delay = policy.delay(job.attempts)
            return Outcome(Kind.RETRY, job, None, _message(error), exception, delay, elapsed)
        return Outcome(Kind.FAILED, job, None, _message(error), exception, None, elapsed)

    def steered(
        self, job: Job[Any], steer: RetryJob | SnoozeJob | CancelJob | FailJob, elapsed: float
    ) -> Outcome:
        """What a handler asked for by raising a steering exception."""
        if isinstance(steer, FailJob):
            return self.failure(job, steer, retry=False, elapsed=elapsed)
        if isinstance(steer, RetryJob):
            return self.failure(job, steer, retry=True, elapsed=elapsed, delay=steer.delay)
        if isinstance(steer, SnoozeJob):
            return Outcome(Kind.SNOOZED, job, None, _message(steer), steer, steer.delay, elapsed)
        return Outcome(Kind.CANCELLED, job, None, steer.reason, steer, None, elapsed)

    def _circuit(self, job_type: str) -> Circuit:
        circuit = self.circuits.get(job_type)
        if circuit is None:
            assert self._breaker is not None
            circuit = self.circuits[job_type] = Circuit(self._breaker)
        return circuit

    def _timeout(self, job: Job[Any], registered: Registered) -> float | None:
        """The job's own timeout, else its type's, else ``job_timeout``; a
        circuit breaker's ``timeout`` caps it."""
        own = job.metadata.get(TIMEOUT_KEY)
        chosen = registered.timeout or self.config.job_timeout
        if own is None and chosen is None and not self._cap:
            return None
        if isinstance(own, bool) or not isinstance(own, (int, float)) or own <= 0:
            own = None
        chosen = own or chosen
        limits = [t for t in (chosen, self._cap) if t]
        return min(limits) if limits else None

    async def _traced(self, registered: Registered, job: Job[Any]) -> Any:
        """:meth:`_call` inside each hook's context (tracing: jobq.otel)."""
        with hooks.running(job):
            return await self._call(registered, job)

    async def _call(self, registered: Registered, job: Job[Any]) -> Any:
        # The handler (and a sync one's thread) sees its job, for report_progress.
        token = enter_job(self.queue, job)
        try:
            if registered.is_async:
                return await registered.fn(job)
            loop = asyncio.get_running_loop()
            context = contextvars.copy_context()
            outcome = await loop.run_in_executor(self.threads, context.run, registered.fn, job)
            if inspect.isawaitable(outcome):
                outcome = await outcome
            return outcome
        finally:
            leave_job(token)
