"""The claim loop: fills free slots with jobs, and waits well when there are none.

One loop per processor. Each pass counts the free slots (``concurrency``
minus the jobs running), claims up to that many (at most ``batch_size``, and
what the rate limit allows) in one statement, skipping the job types whose
circuit is open, and starts each claimed job in a tracked task (never
fire-and-forget), so ``stop()`` knows exactly what is in flight. With
per-queue concurrency, each queue with free slots is claimed on its own,
starting with a different queue each pass (round robin).

Paused queues (``Queue.pause``) are read at most every
``PAUSE_CHECK_INTERVAL`` and left out of the claims; while any is paused,
the idle wait is at most that long too, so a resume is seen as soon.

Every claim carries the outcomes waiting in the completer, so under load one
transaction finishes a batch of jobs and takes the next. When nothing is
claimed, the loop waits for the first of: an enqueue in this process, a
change stored by another process, the next delayed job coming due, an open
circuit half-opening, or ``poll_interval``. A pass of the loop that fails
anywhere (the claim, the idle wait) is logged (with its traceback when the
error is not a store outage) and tried again after a pause that doubles, up
to ``STORE_RETRY_MAX``; after ``GIVE_UP_AFTER`` unexpected failures in a row
the loop gives up and the worker exits non-zero.

A job one lost worker away from quarantine (``lost_count`` of
``max_lost_leases - 1`` or more) is a suspect: it may be what kills its
workers. It runs alone, in a worker with nothing else in flight, which
claims nothing more until it is done:

- a worker with jobs in flight never claims a suspect (its claims leave
  them out), not even in a claim that commits just as another of its jobs
  kills it;
- a worker with nothing in flight claims as usual; a suspect it gets with
  other jobs is handed back at once (no attempt spent, its place in line
  kept), and the worker, once its jobs are done, claims one suspect;
- the worker whose rescuer makes a job a suspect does the same: it stops
  claiming until its jobs are done, then claims one suspect.

So a good job that shared a worker with one that kills it is never
quarantined with it: only the job that kills its worker is. (A job rescued
for the first time runs as any other: most lost workers are not their
jobs' doing, and it starts again without delay.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from ..clock import FakeClock
from ..errors import JobqError
from ..events import ProcessorMetrics
from ..job import Job
from ..keylimits import wait_hint
from ..queue import Queue
from .completer import MAX_UNSYNCED, Completer
from .config import ProcessorConfig
from .executor import FINAL, Kind, Outcome, Running
from .leases import LeaseKeeper
from .limits import Circuit
from .maintenance import GIVE_UP_AFTER, STORE_RETRY_MAX, suspect_from

log = logging.getLogger("jobq")

CLAIM_RETRY_MIN = 0.05  # seconds; the first pause after a failed claim (it doubles)
SIZE_COUNT_INTERVAL = 1.0  # seconds; how often an idle worker counts the ready jobs (metrics)
#: Seconds between reads of the paused queues: a pause takes effect within
#: this long (a claim already in flight still starts its jobs).
PAUSE_CHECK_INTERVAL = 0.5


class Producer:
    """Claims jobs for one processor and starts each with ``run``."""

    def __init__(
        self,
        queue: Queue,
        config: ProcessorConfig,
        worker_id: str,
        running: dict[str, Running],
        run: Callable[[Running], Coroutine[Any, Any, Any]],
        completer: Completer,
        circuits: dict[str, Circuit],
        metrics: ProcessorMetrics,
        leases: LeaseKeeper,
        on_fatal: Callable[[BaseException], None],
    ) -> None:
        self.queue = queue
        self.config = config
        self.worker_id = worker_id
        self.running = running
        self.completer = completer
        self.circuits = circuits
        self.metrics = metrics
        self.leases = leases
        self.on_fatal = on_fatal
        #: Set (by ``stop()``, or a signal handler) to claim nothing more.
        self.stopping = False
        self._alone: str | None = None  # the suspect running alone here
        self._isolating = False  # a suspect waits: empty, then claim one suspect
        #: lost_count from which a job is a suspect (see the module docstring).
        self.suspect_after = suspect_from(queue.max_lost_leases)
        self._run = run
        self._next_queue = 0
        self._size_counted_at = 0.0
        #: The paused queues as last read, and when (monotonic seconds).
        self.paused: frozenset[str] = frozenset()
        self._paused_read_at = -math.inf
        self._wake = asyncio.Event()
        self._slot_free = asyncio.Event()

    def start(self) -> tuple[asyncio.Task[None], list[Callable[[], Any]]]:
        """Starts the claim loop; returns its task and the functions that undo
        its subscriptions (enqueues in this process, a fake clock's moves)."""
        loop = asyncio.get_running_loop()
        self.stopping = False
        self._wake, self._slot_free = asyncio.Event(), asyncio.Event()

        def wake() -> None:
            loop.call_soon_threadsafe(self._wake.set)

        unsubscribe = [self.queue.on_enqueue(wake)]
        if isinstance(self.queue.clock, FakeClock):
            unsubscribe.append(self.queue.clock.on_advance(wake))
        return asyncio.create_task(self._claim_loop(), name="jobq-claim"), unsubscribe

    def suspect_waiting(self) -> None:
        """A suspect waits to run alone (this worker's rescuer made one):
        this worker empties, then claims it."""
        self._isolating = True
        self._wake.set()

    def stop(self) -> None:
        """Claims nothing more; the loop returns after its current claim."""
        self.stopping = True
        self._wake.set()
        self._slot_free.set()

    # -- running jobs -------------------------------------------------------

    def spawn(self, job: Job[Any]) -> None:
        self.leases.held[job.id] = job  # renewed until its outcome is written
        running = Running(job)
        running.task = task = asyncio.create_task(self._run(running), name=f"jobq-job-{job.id}")
        self.running[job.id] = running
        task.add_done_callback(lambda done: self.finished(job.id, done))

    def finished(self, job_id: str, task: asyncio.Task[Any] | None = None) -> None:
        running = self.running.get(job_id)
        if running is not None and task is not None and running.task is not task:
            running = None  # the job runs again, claimed anew: that entry is the new run's
        else:
            self.running.pop(job_id, None)
        if job_id == self._alone:
            self._alone = None
        self._slot_free.set()
        if task is not None and (task.cancelled() or task.exception() is not None):
            # Its outcome may never be written: renew its lease no more, so
            # that it runs out and a rescuer takes the job back.
            if running is not None:
                self.leases.release(running.job)
            if not task.cancelled():
                log.error("running job %s failed", job_id, exc_info=task.exception())

    # -- the loop -----------------------------------------------------------

    async def _claim_loop(self) -> None:
        try:
            await self._claim_until_stopped()
        finally:
            # No claim follows: jobs finishing during the grace period have
            # their outcomes written at once, while their leases hold.
            self.completer.flush()

    async def _claim_until_stopped(self) -> None:
        failures = unexpected = 0
        while not self.stopping:
            try:
                await self._pass()
            except Exception as exc:
                failures += 1
                pause = min(STORE_RETRY_MAX, CLAIM_RETRY_MIN * 2**failures)
                if isinstance(exc, JobqError):
                    log.warning("claim failed (%s); trying again in %.2f s", exc, pause)
                else:
                    # Not a store outage jobq knows (a driver error it does
                    # not classify, a bug): say so loudly, and keep claiming.
                    unexpected += 1
                    if unexpected >= GIVE_UP_AFTER:
                        log.critical("the claim loop failed %d times in a row; giving up", unexpected)
                        self.on_fatal(exc)
                        return
                    log.error("the claim loop failed; trying again in %.2f s", pause, exc_info=exc)
                await self._pause(pause)
            else:
                failures = unexpected = 0

    async def _pass(self) -> None:
        """One pass: waits for a free slot, or claims and starts jobs, or
        waits for work."""
        config, completer = self.config, self.completer
        rate_limit = config.rate_limit
        # Cleared before each pass (not just before a claim), so a wake-up
        # that arrived during a rate-limit or error pause cannot turn the
        # next pass into a spin; one that arrives later still ends it.
        self._wake.clear()
        # Outcomes handed in meanwhile go with the next claim; every path
        # below that does not claim flushes them instead.
        completer.defer()
        free = config.concurrency - len(self.running)
        if free <= 0 or self._alone is not None or (self._isolating and self.running):
            # Full, or a suspect runs alone, or this worker empties before
            # it claims one job (a suspect, alone).
            self._slot_free.clear()
            await self._slot_free.wait()
            return
        await self._read_paused()
        now = self.queue.clock.now()
        limit = min(free, config.claim_batch)
        if self._isolating:
            limit = 1
            await completer.drain()  # the others' outcomes are stored before it runs
        if rate_limit is not None:
            allowed = rate_limit.available(now)
            if allowed <= 0:
                await self._pause(rate_limit.wait_time(now))
                return
            limit = min(limit, allowed)
        closed = [t for t, c in self.circuits.items() if not c.allows_claim(now)] if self.circuits else []
        busy = bool(self.running)  # then the claim leaves suspects out (see _claim)
        jobs = await self.leases.confirm(await self._claim_batch(limit, closed))
        if self.stopping:
            # The stop began while this claim was in flight: hand its
            # jobs back at once (no attempt spent) rather than start them.
            await completer.write(*(Outcome(Kind.RELEASED, job) for job in jobs))
            return
        if rate_limit is not None and jobs:
            rate_limit.record(now, len(jobs))
        if not busy and jobs and any(job.lost_count >= self.suspect_after for job in jobs):
            jobs = await self._isolate(jobs)
        elif self._isolating:
            self._isolating = False  # no suspect left: another worker runs it
        for job in jobs:
            self.spawn(job)
        if not jobs and not self._isolating:
            if config.limits or config.queue_concurrency:
                # Ready jobs may be held back by a limit or a full queue:
                # look again once one may have room, not at once.
                await self._idle_limited(now)
            else:
                await self._idle(now)

    async def _isolate(self, jobs: list[Job[Any]]) -> list[Job[Any]]:
        """The jobs of a claim holding a suspect to start now: the suspect
        alone, if nothing else was claimed or runs here; otherwise the
        others, the suspects handed back at once (then this worker empties
        and claims one job)."""
        if len(jobs) == 1 and not self.running:
            job = jobs[0]
            self._alone, self._isolating = job.id, False
            log.info("job %s lost %d workers; it runs alone", job.id, job.lost_count)
            return jobs
        suspects = [job for job in jobs if job.lost_count >= self.suspect_after]
        await self.completer.write(*(Outcome(Kind.RELEASED, job) for job in suspects))
        self._isolating = True
        return [job for job in jobs if job.lost_count < self.suspect_after]

    async def _read_paused(self) -> None:
        """Reads the paused queues if the last read is older than
        ``PAUSE_CHECK_INTERVAL`` (an error goes to the claim loop, which
        logs it and tries again after a pause)."""
        if time.monotonic() - self._paused_read_at < PAUSE_CHECK_INTERVAL:
            return
        paused = frozenset(await self.queue.paused())
        if paused != self.paused:
            log.info("paused queues: %s", ", ".join(sorted(paused)) or "none")
        self.paused, self._paused_read_at = paused, time.monotonic()

    def _serving(self) -> list[str] | None:
        """The named queues to claim from now: this processor's, less the
        paused ones (``None``: every queue, the paused ones then excluded in
        the claim)."""
        names = self.config.queue_names
        if names is None or not self.paused:
            return None if names is None else list(names)
        return [name for name in names if name not in self.paused]

    async def _claim_batch(self, limit: int, closed: list[str]) -> list[Job[Any]]:
        """One claim of up to ``limit`` jobs; with per-queue concurrency, one
        claim per queue that has free slots (starting with a different queue
        each time), each with the per-key limits. Paused queues are left out."""
        per_queue = self.config.queue_concurrency
        if per_queue is None:
            queues = self._serving()
            if queues == []:
                return []  # every queue it serves is paused
            return await self._claim(limit, queues, closed)
        busy: dict[str, int] = {}
        for running in self.running.values():
            busy[running.job.queue] = busy.get(running.job.queue, 0) + 1
        names = [name for name in per_queue if name not in self.paused]
        if not names:
            return []
        start, self._next_queue = self._next_queue % len(names), self._next_queue + 1
        jobs: list[Job[Any]] = []
        for name in names[start:] + names[:start]:
            free = min(per_queue[name] - busy.get(name, 0), limit - len(jobs))
            if free > 0:
                jobs += await self._claim(free, [name], closed)
        return jobs

    async def _claim(self, limit: int, queues: Sequence[str] | None, closed: list[str]) -> list[Job[Any]]:
        """One claim, carrying the outcomes waiting to be written."""
        completer = self.completer
        await completer.synced(below=MAX_UNSYNCED)
        batch = completer.take()
        if len(completer):
            completer.flush()  # more than one batch waits: the writer takes the rest
        # Suspects (see the module docstring): none beside jobs in flight;
        # one alone when this worker empties for one.
        lost_below = self.suspect_after if self.running else None
        lost_from = self.suspect_after if self._isolating else None
        # Where a commit and its sync can be apart, the claimed jobs start
        # while the settled outcomes are synced, then reported: only final
        # ones (a completion, a failure for good, a cancel), whose job never
        # runs again, so no report can come after the job's next start.
        apart = self.queue.store.syncs_apart and all(outcome.kind in FINAL for outcome in batch[0])
        try:
            errors, jobs = await self.queue.settle_and_claim(
                batch[1], limit, queues=queues, exclude_types=closed, owner=self.worker_id,
                limits=self.config.limits, lost_below=lost_below, lost_from=lost_from,
                exclude_queues=self.paused if queues is None else (), synced=not apart,
            )  # fmt: skip
        except BaseException:
            completer.give_back(batch)
            raise
        if apart:
            completer.settle_when_synced(batch, errors)
        else:
            completer.settle(batch, errors)
        return jobs

    # -- waiting ------------------------------------------------------------

    async def _idle_limited(self, now: float) -> None:
        """Waits for a local wake-up, another process's commit, or the time
        after which a limit may have room again."""
        self.completer.flush()
        limits, poll = self.config.limits, self.config.poll_interval
        timeout = min(poll, wait_hint(limits) if limits else poll, self._paused_cap())
        try:
            due = await self._next_due()
        except JobqError:
            due = None
        if due is not None and due > now:
            timeout = min(timeout, due - now)
        if self._wake.is_set():
            return
        await self._wait_for_work(timeout)

    async def _idle(self, now: float) -> None:
        """Waits for work: a local enqueue, another process's commit, the next
        delayed job coming due, a circuit half-opening, or ``poll_interval``."""
        self.completer.flush()
        timeout = min(self.config.poll_interval, self._paused_cap())
        queues = self._serving()
        try:
            due = await self._next_due()
            if time.monotonic() - self._size_counted_at > SIZE_COUNT_INTERVAL:
                self.metrics.queue_size = await self.queue.size(queues=queues)
                self._size_counted_at = time.monotonic()
        except JobqError:
            due = None
        if due is not None:
            timeout = min(timeout, max(due - now, 0.0))
        for circuit in self.circuits.values():
            if circuit.state == "open":
                timeout = min(timeout, max(circuit.opened_at + circuit.config.reset_timeout - now, 0.0))
        if timeout <= 0 or self._wake.is_set():
            await asyncio.sleep(0)
            return
        await self._wait_for_work(timeout)

    async def _wait_for_work(self, timeout: float) -> None:
        """Returns on a local wake-up, a change stored by another process, or
        after ``timeout`` seconds, whichever comes first."""
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

    def _paused_cap(self) -> float:
        """The longest idle wait: while a queue is paused, the time between
        reads of the paused queues, so a resume is seen that soon."""
        return PAUSE_CHECK_INTERVAL if self.paused else math.inf

    async def _next_due(self) -> float | None:
        """When the next job of the queues it claims from comes due. With
        every queue served and some paused, ``None``: a paused queue's jobs
        would be due at once, and the idle wait is capped instead."""
        queues = self._serving()
        if queues == [] or (queues is None and self.paused):
            return None
        return await self.queue.next_due(queues=queues)

    async def _anything_ready(self) -> bool:
        """A read, no lock: is a job ready in this processor's queues? (With
        every queue served and some paused, a paused queue's job counts:
        the claim then finds nothing, and the wait goes on.)"""
        queues = self._serving()
        if queues == []:
            return False
        try:
            return await self.queue.peek(queues=queues) is not None
        except JobqError:
            return True  # let the claim meet the error and back off

    async def _pause(self, seconds: float) -> None:
        """Sleeps up to ``seconds``, waking early on stop or a local enqueue."""
        self.completer.flush()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=max(seconds, 0))
