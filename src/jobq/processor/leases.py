"""Lease renewal on a thread of its own, and a watch on the event loop.

A processor holds a job's lease from its claim until its outcome is written
(or dropped, see :mod:`.completer`), and renews it every
``heartbeat_interval`` seconds meanwhile. The renewals run on a thread with
an event loop and store connections of its own (:meth:`jobq.Queue.twin`), so
an ``async`` handler that blocks the worker's event loop (CPU-bound code, a
synchronous client call) does not stop them: the jobs of a live worker keep
their leases, and no rescuer runs them a second time elsewhere. (A worker
frozen whole, by SIGSTOP or a stalled machine, stops renewing, and its jobs
are rescued as they should be.)

Fencing: each renewal is fenced by the claim token the job was claimed with,
so one that reaches the store after the job's outcome was written, or after
the job was rescued and claimed again, changes nothing. A lease found gone is
not renewed again; a job leaves :attr:`LeaseKeeper.held` when its outcome is
written, and then is renewed no more.

The hot path pays one dict update per job to hold it and one to let it go;
only the keeper's thread copies the dict.

The same thread watches the event loop: it posts a no-op to it every
:data:`WATCH_INTERVAL`, and when the loop has not run it for
:data:`LOOP_BLOCKED_AFTER` seconds it logs a warning naming the job whose
handler holds the loop, and another when the loop runs again.

A store that cannot open a twin has its leases renewed on the worker's own
loop, as a duty among the others (:mod:`.maintenance`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ..clock import to_ms
from ..errors import JobqError
from ..job import Job
from ..queue import Queue
from .executor import Phase, Running
from .maintenance import GIVE_UP_AFTER, backoff

log = logging.getLogger("jobq")

WATCH_INTERVAL = 0.25  # seconds between the keeper thread's looks at the event loop
LOOP_BLOCKED_AFTER = 1.0  # seconds the event loop may go without running before a warning names its blocker
STOP_WAIT = 5.0  # seconds stop() waits for the keeper's thread to end


class LeaseKeeper:
    """Renews the leases of the jobs one processor holds (see the module
    docstring). ``running`` is the processor's map of jobs in flight, read
    to name the job blocking the loop; ``on_fatal`` is called (on the
    processor's loop) if the keeper gives up."""

    def __init__(
        self,
        queue: Queue,
        heartbeat_interval: float,
        running: dict[str, Running],
        on_fatal: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.queue = queue
        self.interval = heartbeat_interval
        self.running = running
        self.on_fatal = on_fatal
        #: Jobs whose lease this processor holds, by id: set by the claim
        #: loop, removed once the outcome is written (the processor's loop
        #: alone changes it).
        self.held: dict[str, Job[Any]] = {}
        #: Clock time of the last renewal that reached the store.
        self.renewed_at = queue.clock.now()
        # job id -> (claim token, lease end in ms; 0 once found gone), as
        # the last renewal left it.
        self._ends: dict[str, tuple[str | None, int]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None  # the processor's
        self._own: asyncio.AbstractEventLoop | None = None  # the thread's
        self._task: asyncio.Task[None] | None = None  # the thread's main task
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pinged: float | None = None  # monotonic time of the watch's unanswered ping
        self._blocker = ""  # what the warning named, while the loop is blocked

    # -- the hot path --------------------------------------------------------

    def hold(self, job: Job[Any]) -> None:
        self.held[job.id] = job

    async def confirm(self, jobs: list[Job[Any]]) -> list[Job[Any]]:
        """The jobs of a claim that has just reached the processor's loop
        that are still this worker's to start.

        A claim commits on the store's side, but its jobs are held (renewed)
        only once the loop gets to them: a handler blocking the loop
        meanwhile (a synchronous call in an ``async`` handler) keeps them
        from being renewed, and a lease may run out and the job be rescued
        and claimed elsewhere before this worker sees it. So a claim that
        arrives later than one heartbeat is renewed first, fenced by its
        token, and a job whose claim is gone does not start here: it runs
        once, elsewhere. On time, the usual case, this costs one comparison
        (the jobs of one claim share their lease end)."""
        ends = jobs[0].lease_expires_at if jobs else None
        if ends is None:
            return jobs
        queue = self.queue
        now_ms = queue.now_ms()
        if to_ms(ends.timestamp()) - now_ms >= to_ms(queue.lease) - to_ms(self.interval):
            return jobs
        try:
            lost = await queue.extend_leases(jobs)
        except JobqError as exc:
            # Held as usual: the keeper renews them (or finds them gone) on
            # its next turn, and an outcome written after a lost lease is
            # fenced anyway.
            log.warning("renewing the leases of a late claim failed: %s", exc)
            return jobs
        for job in jobs:
            if job.id in lost:
                log.warning(
                    "job %s (type %s) was claimed while the event loop was blocked and its lease ran"
                    " out before it could start; it is not started here",
                    job.id,
                    job.type,
                )
        return [job for job in jobs if job.id not in lost] if lost else jobs

    def release(self, job: Job[Any]) -> None:
        """Lets go of ``job``'s lease (its outcome is written); a later claim
        of the same job id is another lease, kept."""
        if self.held.get(job.id) is job:
            del self.held[job.id]

    # -- what the completer asks ---------------------------------------------

    def lease_end(self, job: Job[Any]) -> float | None:
        """Epoch seconds at which this claim on ``job`` runs out (0 once a
        renewal found it gone), or ``None`` if unknown."""
        renewed = self._ends.get(job.id)
        if renewed is not None and renewed[0] == job.lease_token:
            return renewed[1] / 1000
        return None if job.lease_expires_at is None else job.lease_expires_at.timestamp()

    # -- renewing --------------------------------------------------------------

    async def renew(self, queue: Queue) -> None:
        """Renews every lease held and not found gone, through ``queue``
        (the twin, on the keeper's thread; the processor's own on its loop)."""
        jobs = []
        for job in self.held.copy().values():
            renewed = self._ends.get(job.id)
            if renewed is None or renewed[0] != job.lease_token or renewed[1]:
                jobs.append(job)
        if not jobs:
            return
        until = queue.now_ms() + to_ms(queue.lease)
        lost = await queue.store.extend_leases(
            [(j.id, j.lease_token) for j in jobs if j.lease_token is not None], until_ms=until
        )
        self.renewed_at = queue.clock.now()
        ends = self._ends
        for job in jobs:
            ends[job.id] = (job.lease_token, 0 if job.id in lost else until)
            if job.id in lost:
                running = self.running.get(job.id)
                # A job whose handler finished may have had its outcome
                # written meanwhile: that is no lost lease.
                if running is not None and running.job is job and running.phase is Phase.RUNNING:
                    log.warning("lost the lease on job %s; its outcome will not be recorded", job.id)
        held = self.held
        for job_id in list(ends):  # a copy: a renewal on the loop may run meanwhile (see rescue)
            if job_id not in held:
                ends.pop(job_id, None)

    # -- the thread --------------------------------------------------------------

    def start(self) -> None:
        """Starts the keeper's thread (call from the processor's loop)."""
        self._loop = asyncio.get_running_loop()
        self._pinged, self._blocker = None, ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="jobq-leases", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """Stops the thread: renewals and the watch end (a renewal in flight
        is cancelled)."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        own, task = self._own, self._task
        if own is not None and task is not None:
            with contextlib.suppress(RuntimeError):  # its loop has closed: the thread is ending
                own.call_soon_threadsafe(task.cancel)
        await asyncio.to_thread(thread.join, STOP_WAIT)

    def _run(self) -> None:
        own = self._own = asyncio.new_event_loop()
        try:
            task = self._task = own.create_task(self._main())
            own.run_until_complete(task)
        except asyncio.CancelledError:
            pass  # stopped
        except BaseException as exc:  # noqa: BLE001 - reported, and the worker exits non-zero
            log.critical("the lease keeper's thread failed", exc_info=exc)
            self._fatal(exc)
        finally:
            self._task = None
            own.close()

    async def _main(self) -> None:
        stop = self._stop
        watch = asyncio.create_task(self._watch())
        twin: Queue | None = None
        opened = False
        failures = unexpected = 0
        next_renewal = time.monotonic() + self.interval
        try:
            while not stop.is_set():
                await asyncio.sleep(min(WATCH_INTERVAL, max(0.0, next_renewal - time.monotonic())))
                if time.monotonic() < next_renewal or stop.is_set():
                    continue
                next_renewal = time.monotonic() + (
                    backoff(self.interval, failures) if failures else self.interval
                )
                if not self.held:
                    continue
                try:
                    if not opened:
                        twin, opened = self.queue.twin(), True
                    if twin is None:
                        await self._renew_on_loop()
                    else:
                        await self.renew(twin)
                except JobqError as exc:
                    failures += 1
                    log.warning("renewing leases failed: %s", exc)
                except Exception:
                    failures += 1
                    unexpected += 1
                    log.exception("renewing leases failed unexpectedly; trying again")
                    if unexpected >= GIVE_UP_AFTER:
                        raise
                else:
                    failures = unexpected = 0
        finally:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
            if twin is not None and twin.store is not self.queue.store:
                await twin.close()

    async def _renew_on_loop(self) -> None:
        """For a store with no twin: the renewal runs on the processor's
        loop (so a blocked loop delays it)."""
        assert self._loop is not None
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self.renew(self.queue), self._loop))

    def _fatal(self, exc: BaseException) -> None:
        loop, on_fatal = self._loop, self.on_fatal
        if loop is not None and on_fatal is not None:
            with contextlib.suppress(RuntimeError):  # the processor's loop is gone
                loop.call_soon_threadsafe(on_fatal, exc)

    # -- the watch on the event loop -----------------------------------------------

    async def _watch(self) -> None:
        loop = self._loop
        assert loop is not None
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            pinged = self._pinged
            if pinged is None:
                self._pinged = time.monotonic()
                try:
                    loop.call_soon_threadsafe(self._answer)
                except RuntimeError:  # the processor's loop has closed
                    return
            elif time.monotonic() - pinged >= LOOP_BLOCKED_AFTER:
                # Named again when another job takes over the blocked loop.
                blocker = self._blocking(loop)
                if blocker != self._blocker:
                    self._blocker = blocker
                    log.warning(
                        "the event loop has not run for %.1f s: %s is blocking it (an async"
                        " handler must await, not block; leases are still renewed)",
                        time.monotonic() - pinged,
                        blocker,
                    )

    def _answer(self) -> None:
        """Runs on the processor's loop: the ping got through."""
        pinged, blocker = self._pinged, self._blocker
        self._pinged, self._blocker = None, ""
        if blocker and pinged is not None:
            log.warning(
                "the event loop ran again after %.1f s, blocked by %s",
                time.monotonic() - pinged,
                blocker,
            )

    def _blocking(self, loop: asyncio.AbstractEventLoop) -> str:
        """What the loop is running: the job whose handler holds it, else the task's name."""
        task = asyncio.current_task(loop)
        if task is None:
            return "a callback (not a job)"
        for running in self.running.copy().values():
            if running.task is task:
                return f"job {running.job.id} (type {running.job.type})"
        return f"task {task.get_name()!r}"
