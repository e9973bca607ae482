"""Group commit for job outcomes, and reporting each once written.

Writing each outcome in its own transaction makes a durable store pay one
sync per job. The executor hands every :class:`~.executor.Outcome` in here,
and outcomes are written together, as transitions fenced by their claims
(:meth:`jobq.Queue.settle`), two ways:

- While the claim loop is about to claim again (it :meth:`~Completer.defer`
  s), it takes every waiting outcome along with that claim
  (:meth:`~Completer.take`), and the store writes both in one transaction:
  under load, finishing a batch of jobs and taking the next costs one commit.
- Otherwise (the queue is empty, the worker is stopping, rate limited, or
  not started), the completer's own writer writes them at once, with any
  that arrive while a write is in flight.

A completion is handed in (:meth:`~Completer.hand_in`) and its job's slot is
free at once. Every other outcome (a retry, a failure, a snooze, a
cancellation, a release) is written (:meth:`~Completer.write`) before its
job's task ends: the writer starts at once, whatever the claim loop does,
and takes whatever else waits along. So a job's slot is taken until its
failure is stored, ``stop()`` returns only once failures are stored, and
``job_retry`` / ``job_failed`` come before the job can run again.

No outcome waits for a timer. Each outcome, with ``None`` or the error it
alone met (``LeaseLost``, ``JobNotFound``, or what the whole write raised),
goes to the ``report`` callback: :class:`Reporter` counts it, emits its event
and logs what could not be stored.

A write that fails is not the end of its outcomes:

- the store is unavailable (a :class:`jobq.JobqError`): the writer tries
  again after a pause that doubles, for as long as each job's lease stands
  (the lease it had when its write first failed; its lease keeper renews it
  meanwhile), and drops an outcome only once that lease is gone, which it
  logs: the job then runs again;
- anything else (an outcome the store refuses): the batch is written one
  outcome at a time, and an outcome that cannot be stored (a retry delay
  past year 9999, a result or reason the store cannot hold) fails its job
  for good with an error saying so (:meth:`.executor.Outcome.unstorable`),
  rather than losing the job's lease.

Once an outcome is reported, its job's lease is let go
(:meth:`.leases.LeaseKeeper.release`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .. import logs
from ..errors import JobqError, LeaseLost
from ..events import Emitter, Event, ProcessorMetrics
from ..job import Job, JobStatus
from ..queue import Queue
from ..transitions import Transition
from .executor import Kind, Outcome

if TYPE_CHECKING:
    from .leases import LeaseKeeper

log = logging.getLogger("jobq")

MAX_BATCH = 256  # outcomes written in one transaction at most
WRITE_RETRY_MIN = 0.05  # seconds; the first pause after a write the store refused (it doubles)
WRITE_RETRY_MAX = 2.0  # seconds; the longest pause between tries of a write

#: Batches written with a claim whose sync may still run at once (see
#: :meth:`Completer.settle_when_synced`): enough that the claim loop never
#: waits for a disk that keeps up, few enough that a slow one holds back
#: only a few batches' reports.
MAX_UNSYNCED = 4

#: Called once per outcome once written: ``None``, or the error it met.
Report = Callable[[Outcome, BaseException | None], None]
#: Outcomes taken to be written, and their transitions (same order).
Batch = tuple[list[Outcome], list[Transition]]


class Completer:
    def __init__(self, queue: Queue, report: Report, *, max_batch: int = MAX_BATCH) -> None:
        self.queue = queue
        self.report = report
        self.max_batch = max_batch
        #: The processor's lease keeper while it runs: told when a job's
        #: outcome is reported, asked how long a lease stands.
        self.leases: LeaseKeeper | None = None
        self._waiting: list[Outcome] = []
        self._writer: asyncio.Task[None] | None = None
        self._deferred = False
        #: Batches written but not yet synced (see :meth:`settle_when_synced`).
        self._syncing: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._waiting)

    def hand_in(self, outcome: Outcome) -> None:
        """Queues a completion; it is reported once written."""
        self._waiting.append(outcome)
        if not self._deferred:
            self._start_writer()

    async def write(self, *outcomes: Outcome) -> None:
        """Writes ``outcomes`` now, with whatever else waits, and returns
        once they are written and reported (a cancel of the caller does not
        stop the write)."""
        if not outcomes:
            return
        loop = asyncio.get_running_loop()
        waiters = []
        for outcome in outcomes:
            waiters.append(loop.create_future())
            outcome.waiter = waiters[-1]
        self._waiting += outcomes
        self._start_writer()
        await asyncio.shield(waiters[0] if len(waiters) == 1 else asyncio.gather(*waiters))

    def defer(self) -> None:
        """The claim loop will take the waiting completions with its next claim."""
        self._deferred = True

    def flush(self) -> None:
        """No claim is coming soon: the writer writes what waits, at once."""
        self._deferred = False
        if self._waiting:
            self._start_writer()

    def take(self) -> Batch:
        """Removes up to ``max_batch`` waiting outcomes and returns them with
        their transitions; the caller writes them and reports with
        :meth:`settle`, or hands them back with :meth:`give_back`. An
        outcome that cannot be written (a retry delay its policy got wrong)
        is reported with that error here."""
        batch = self._waiting[: self.max_batch]
        del self._waiting[: self.max_batch]
        try:
            return batch, [outcome.transition() for outcome in batch]
        except Exception:  # noqa: BLE001 - sorted out one by one below
            return self._one_by_one(batch)

    def _one_by_one(self, batch: list[Outcome]) -> Batch:
        kept: list[Outcome] = []
        decided: list[Transition] = []
        for outcome in batch:
            try:
                decided.append(outcome.transition())
            except Exception as exc:  # noqa: BLE001 - that outcome alone is not written as it is
                if outcome.replaces is not None:
                    self._report(outcome, exc)
                    continue
                # It fails its job instead, saying why (a failure can be written).
                outcome = outcome.unstorable(exc)
                decided.append(outcome.transition())
            kept.append(outcome)
        return kept, decided

    def settle(self, batch: Batch, errors: list[JobqError | None]) -> None:
        """Reports each outcome of a written batch."""
        report, leases = self.report, self.leases
        held = None if leases is None else leases.held
        for outcome, error in zip(batch[0], errors, strict=True):
            if held is not None:  # its lease is renewed no more (LeaseKeeper.release, inlined)
                job = outcome.job
                if held.get(job.id) is job:
                    del held[job.id]
            if outcome.waiter is None:
                report(outcome, error)
            else:
                self._report(outcome, error)

    def settle_when_synced(self, batch: Batch, errors: list[JobqError | None]) -> None:
        """:meth:`settle`, once the store has synced the transaction that
        wrote ``batch`` (committed by ``settle_and_claim(synced=False)``):
        nothing is reported done before it is durable, while the claim loop
        goes on with the jobs that transaction claimed."""
        if not batch[0]:
            return
        task = asyncio.get_running_loop().create_task(self._settle_when_synced(batch, errors))
        self._syncing.add(task)
        task.add_done_callback(self._syncing.discard)

    async def synced(self, below: int = 1) -> None:
        """Waits until fewer than ``below`` written batches wait for their
        sync (``1``: none). The claim loop waits here for fewer than
        :data:`MAX_UNSYNCED` before its next transaction, so the outcomes
        not yet reported stay few however slow the disk."""
        while len(self._syncing) >= below:
            await asyncio.wait(set(self._syncing), return_when=asyncio.FIRST_COMPLETED)

    async def _settle_when_synced(self, batch: Batch, errors: list[JobqError | None]) -> None:
        try:
            await self.queue.store.sync()
        except asyncio.CancelledError as exc:  # every outcome hears it
            for outcome in batch[0]:
                self._report(outcome, exc)
            raise
        except Exception:  # noqa: BLE001 - the commit stands: report it, and say it may not last
            # The transaction is committed and every reader sees it; a later
            # sync or checkpoint may still make it durable, or a power loss
            # undo it (its jobs then run again, as after a lost worker).
            log.error(
                "syncing the database failed: the outcomes of %d jobs are written but may not survive"
                " a power loss", len(batch[0]), exc_info=True,
            )  # fmt: skip
        self.settle(batch, errors)

    def give_back(self, batch: Batch) -> None:
        """Returns outcomes whose write failed along with something else (a
        claim): the writer tries them again on their own."""
        self._waiting[:0] = batch[0]
        self.flush()

    def _report(self, outcome: Outcome, error: BaseException | None) -> None:
        if self.leases is not None:
            self.leases.release(outcome.job)
        try:
            self.report(outcome, error)
        finally:
            waiter = outcome.waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def _start_writer(self) -> None:
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_all(), name="jobq-completer")

    async def _write_all(self) -> None:
        failures = 0
        try:
            while self._waiting:
                batch = self.take()
                if not batch[0]:
                    continue
                try:
                    errors = await self.queue.settle(batch[1])
                except asyncio.CancelledError as exc:  # every outcome hears it
                    for outcome in batch[0]:
                        self._report(outcome, exc)
                    raise
                except JobqError as exc:  # the store is unavailable: try again while leases stand
                    if self._again(batch[0], exc):
                        failures += 1
                        if failures == 1:
                            count = len(batch[0])
                            log.warning("writing %d outcomes failed (%s); trying again", count, exc)
                        await self._pause(failures)
                    continue
                except Exception:  # noqa: BLE001 - the store refused something: find what, alone
                    await self._each_alone(batch)
                    continue
                failures = 0
                self.settle(batch, errors)
        finally:
            self._writer = None

    async def _each_alone(self, batch: Batch) -> None:
        """Writes each outcome of a batch the store refused on its own; one
        it refuses alone fails its job instead (or, if even that cannot be
        stored, is dropped and logged)."""
        for outcome, transition in zip(*batch, strict=True):
            try:
                errors = await self.queue.settle([transition])
            except JobqError as exc:
                self._again([outcome], exc)
            except Exception as exc:  # noqa: BLE001 - this outcome is what the store refuses
                if outcome.replaces is None:
                    self._waiting.insert(0, outcome.unstorable(exc))
                else:
                    self._report(outcome, exc)
            else:
                self.settle(([outcome], [transition]), errors)

    def _again(self, outcomes: list[Outcome], error: JobqError) -> bool:
        """Puts back, to be written again, the outcomes whose job's lease
        still stands; reports the others as not written. Returns whether
        any was put back."""
        now = self.queue.clock.now()
        kept: list[Outcome] = []
        for outcome in outcomes:
            if outcome.retry_until is None:
                outcome.retry_until = self._lease_end(outcome.job)
            if outcome.retry_until is not None and now < outcome.retry_until:
                kept.append(outcome)
            else:
                self._report(outcome, error)  # logged: the job runs again after its lease
        self._waiting[:0] = kept
        return bool(kept)

    def _lease_end(self, job: Job[Any]) -> float | None:
        if self.leases is not None:
            return self.leases.lease_end(job)
        return None if job.lease_expires_at is None else job.lease_expires_at.timestamp()

    async def _pause(self, failures: int) -> None:
        """Waits before writing again, no later than the first lease to end."""
        pause = min(WRITE_RETRY_MAX, WRITE_RETRY_MIN * 2.0 ** min(failures, 30))
        ends = [o.retry_until for o in self._waiting if o.retry_until is not None]
        if ends:
            pause = max(0.0, min(pause, min(ends) - self.queue.clock.now()))
        await asyncio.sleep(pause)

    async def drain(self) -> None:
        """Waits until every outcome handed in so far is written (and synced)."""
        self.flush()
        while self._writer is not None or self._syncing:
            if self._writer is not None:
                await asyncio.shield(self._writer)
            await self.synced()


# -- reporting -------------------------------------------------------------------

#: Per kind: what a lost claim did not record ("": say nothing), and the
#: warning when the store could not be reached.
_AGAIN = "; it runs again after its lease"
_NOT_RECORDED = {
    Kind.COMPLETED: ("result", "could not record the result of job %s (%s)" + _AGAIN),
    Kind.RETRY: ("failure", "could not record the failure of job %s (%s)" + _AGAIN),
    Kind.FAILED: ("failure", "could not record the failure of job %s (%s)" + _AGAIN),
    Kind.SNOOZED: ("snooze", "could not record the snooze of job %s (%s)" + _AGAIN),
    Kind.CANCELLED: ("cancellation", "could not record the cancellation of job %s (%s)"),
    Kind.RELEASED: ("", "could not release job %s (%s); its lease will expire"),
}


class Reporter:
    """Counts each written outcome into the processor's metrics and emits
    its event; logs an outcome that could not be written."""

    def __init__(self, events: Emitter, metrics: ProcessorMetrics) -> None:
        self.events = events
        self.metrics = metrics
        self.last_processed: float | None = None  # epoch seconds; see get_metrics

    def __call__(self, outcome: Outcome, error: BaseException | None) -> None:
        kind = outcome.kind
        if error is not None:
            self._not_recorded(outcome, error)
        elif kind is Kind.COMPLETED:
            self.succeeded(outcome.job, outcome.elapsed)
            if logs.job_log.isEnabledFor(logs.DEBUG):  # completions are the hot path: DEBUG only
                logs.job_outcome(outcome.job, "completed", outcome.elapsed)
            if self.events.wants("job_completed"):
                self.events.emit(
                    Event(
                        "job_completed",
                        job=outcome.job,
                        result=outcome.result,
                        processing_time=outcome.elapsed,
                    )
                )
        else:
            self._other(outcome)

    def _other(self, outcome: Outcome) -> None:
        kind, job, elapsed, emit = outcome.kind, outcome.job, outcome.elapsed, self.events.emit
        exception = outcome.exception
        logs.job_outcome(
            job, kind.value, elapsed, error=outcome.error, exception=exception,
            delay=outcome.delay if kind is Kind.RETRY or kind is Kind.SNOOZED else None,
        )  # fmt: skip
        if kind is Kind.RETRY:
            self.count(job, "retried", elapsed)
            emit(
                Event(
                    "job_retry", job=job, error=outcome.error, retry_delay=outcome.delay,
                    processing_time=elapsed, exception=exception,
                )  # fmt: skip
            )
        elif kind is Kind.FAILED:
            self.count(job, "failed", elapsed)
            emit(Event("job_failed", job=job, error=outcome.error, processing_time=elapsed, exception=exception))
        elif kind is Kind.SNOOZED:
            self.metrics.snoozed += 1
            emit(
                Event(
                    "job_snoozed", job=job, retry_delay=outcome.delay, processing_time=elapsed,
                    exception=exception,
                )  # fmt: skip
            )
        elif kind is Kind.CANCELLED:
            self.metrics.cancelled += 1
            emit(Event("job_cancelled", job=job, error=outcome.error, processing_time=elapsed, exception=exception))
        elif kind is Kind.RELEASED:
            emit(Event("job_released", job=job, processing_time=elapsed))

    def _not_recorded(self, outcome: Outcome, error: BaseException) -> None:
        what, store_error = _NOT_RECORDED[outcome.kind]
        if isinstance(error, LeaseLost):
            if what:
                log.warning("%s; its %s was not recorded", error, what)
        elif isinstance(error, JobqError):
            log.warning(store_error, outcome.job.id, error)
        elif not isinstance(error, asyncio.CancelledError):
            noun = what or "release"
            log.error("recording the %s of job %s failed", noun, outcome.job.id, exc_info=error)

    def _per_type(self, job_type: str) -> dict[str, int]:
        per_type = self.metrics.by_type.get(job_type)
        if per_type is None:
            per_type = self.metrics.by_type[job_type] = {
                "processed": 0,
                "succeeded": 0,
                "failed": 0,
                "retried": 0,
            }
        return per_type

    def succeeded(self, job: Job[Any], elapsed: float) -> None:
        """:meth:`count` of a completion (the hot path, spelled out)."""
        m = self.metrics
        per_type = m.by_type.get(job.type) or self._per_type(job.type)
        per_type["succeeded"] += 1
        per_type["processed"] += 1
        m.succeeded += 1
        m.processed += 1
        m.average_processing_time += (elapsed - m.average_processing_time) / (m.succeeded + m.failed)
        self.last_processed = time.time()  # a datetime when metrics are read

    def count(self, job: Job[Any], outcome: str, elapsed: float) -> None:
        """Counts a ``"succeeded"``, ``"failed"`` or ``"retried"`` attempt."""
        m = self.metrics
        per_type = self._per_type(job.type)
        per_type[outcome] += 1
        if outcome == "retried":
            m.retried += 1
        else:
            setattr(m, outcome, getattr(m, outcome) + 1)
            m.processed += 1
            per_type["processed"] += 1
            m.average_processing_time += (elapsed - m.average_processing_time) / (m.succeeded + m.failed)
        self.last_processed = time.time()  # a datetime when metrics are read

    def rescued(self, job: Job[Any], max_lost: int) -> None:
        """A job the rescuer took back from a lost worker."""
        self.metrics.lost += 1
        logs.job_rescued(job)
        self.events.emit(Event("job_lost", job=job, error=job.error))
        if job.status is JobStatus.FAILED:
            if job.lost_count >= max_lost:
                self.metrics.quarantined += 1
                self.events.emit(Event("job_quarantined", job=job, error=job.error))
            self.events.emit(Event("job_failed", job=job, error=job.error))
