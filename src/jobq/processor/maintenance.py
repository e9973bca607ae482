"""A processor's upkeep: lease renewal, rescue, pruning and cancel polling.

Each duty runs in a loop of its own, every so many seconds, and that loop
survives anything the duty raises: a store outage (a :class:`jobq.JobqError`)
is logged in one line, anything else (a driver error jobq does not classify,
a bug) with its traceback; either way the loop backs off and goes on. A duty
that fails unexpectedly :data:`GIVE_UP_AFTER` times in a row (a store outage
never counts) cannot recover: it gives up, and the worker stops and exits
non-zero, so its supervisor starts a fresh one.

- **lease renewal** (``heartbeat_interval``): extends the leases of the jobs
  held here, so no rescuer takes them back while their handlers run. It runs
  on a thread of its own (:mod:`.leases`), not here; the rescuer renews them
  itself when the clock says they may have run out (a clock that jumped).
- **rescue** (``rescue_interval``): returns jobs whose lease expired (their
  worker was lost), and jobs another writer held without a lease past the
  queue's ``foreign_claim_timeout``, to waiting, or fails them for good
  (:func:`jobq.transitions.rescued` decides), and reports each; a job it
  makes a suspect (see :func:`suspect_from`) is then claimed by this worker,
  alone.
- **pruning** (``prune_interval``): deletes finished jobs older than
  ``retention``.
- **cancel polling** (``cancel_check_interval``): asks the store which
  running jobs have a cancel request from another process, and stops them.
- **registry heartbeat** (:data:`jobq.history.HEARTBEAT_INTERVAL`): refreshes
  this worker's row in the worker registry (:mod:`.registry`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from ..errors import JobqError
from ..history import HEARTBEAT_INTERVAL
from ..job import WAITING_STATUSES, Job
from ..queue import Queue
from .completer import Reporter
from .config import ProcessorConfig
from .executor import Phase, Running

if TYPE_CHECKING:
    from .leases import LeaseKeeper
    from .registry import Registration

log = logging.getLogger("jobq")

STORE_RETRY_MAX = 5.0  # seconds; longest pause after a store error before trying again
#: Unexpected failures in a row (not store outages) after which a duty, the
#: claim loop or the lease keeper gives up and the worker exits non-zero
#: (about a minute and a half of failing, with the pauses between tries).
GIVE_UP_AFTER = 20


def suspect_from(max_lost_leases: int) -> int:
    """The ``lost_count`` from which a job is a suspect, run alone: one lost
    worker away from quarantine (see :mod:`.producer`)."""
    return max(1, max_lost_leases - 1)


def backoff(interval: float, failures: int) -> float:
    """Seconds to wait after ``failures`` failures in a row of a duty run
    every ``interval`` seconds: doubling, up to ``STORE_RETRY_MAX`` (never
    less than the interval)."""
    return max(interval, min(interval * 2.0 ** min(failures, 30), STORE_RETRY_MAX))


class Maintenance:
    """The upkeep duties of one processor, over its map of running jobs and
    the leases its keeper holds."""

    def __init__(
        self,
        queue: Queue,
        config: ProcessorConfig,
        running: dict[str, Running],
        reporter: Reporter,
        request_cancel: Callable[[str], None],
        keeper: LeaseKeeper,
        on_suspect: Callable[[], None],
        registration: Registration | None = None,
    ) -> None:
        self.queue = queue
        self.config = config
        self.running = running
        self.reporter = reporter
        self.request_cancel = request_cancel
        self.keeper = keeper
        self.on_suspect = on_suspect
        self._suspect_from = suspect_from(queue.max_lost_leases)
        self.registration = registration

    def tasks(self, on_fatal: Callable[[BaseException], None]) -> list[asyncio.Task[None]]:
        """Starts every duty, each in its own task (leases are renewed by the
        keeper's thread); ``on_fatal`` hears of one that gives up."""
        c = self.config
        duties: list[tuple[str, float, Callable[[], Awaitable[None]]]] = [
            ("jobq-rescue", c.rescue_interval, self.rescue),
            ("jobq-cancels", c.cancel_check_interval, self.check_cancels),
        ]
        if c.prune_interval is not None:
            duties.append(("jobq-prune", c.prune_interval, self.prune))
        tasks = [
            asyncio.create_task(every(interval, duty, on_fatal), name=name) for name, interval, duty in duties
        ]
        if self.registration is not None:
            tasks.append(asyncio.create_task(self.heartbeats(self.registration), name="jobq-registry"))
        return tasks

    @staticmethod
    async def heartbeats(registration: Registration) -> None:
        """Registers this worker at once, then heartbeats for as long as it
        runs; no failure of the registry ever stops it (no ``on_fatal``)."""
        await registration.first_beat()
        await every(HEARTBEAT_INTERVAL, registration.beat)

    def _held(self) -> list[Job[Any]]:
        """Running jobs whose lease this processor still holds (a job whose
        outcome is being written loses its lease with that write)."""
        return [r.job for r in self.running.values() if r.phase is not Phase.SETTLING]

    async def renew_leases(self) -> None:
        await self.keeper.renew(self.queue)

    async def rescue(self) -> None:
        # A clock that jumped ahead makes every lease look expired, healthy
        # ones too: when this processor's own leases may have run out by the
        # clock, it renews them before sweeping (normally the heartbeat,
        # every third of a lease or sooner, keeps them far from that).
        if self.queue.clock.now() >= self.keeper.renewed_at + self.queue.lease:
            await self.renew_leases()
        suspects = 0
        for job in await self.queue.rescue_expired():
            self.reporter.rescued(job, self.queue.max_lost_leases)
            if job.status in WAITING_STATUSES and job.lost_count >= self._suspect_from:
                suspects += 1
        if suspects:
            self.on_suspect()  # a busy worker never claims one: this one empties and does

    async def prune(self) -> None:
        keep = self.config.keep
        await self.queue.prune(
            completed_after=keep.completed_after, failed_after=keep.failed_after,
            cancelled_after=keep.cancelled_after,
        )  # fmt: skip

    async def check_cancels(self) -> None:
        jobs = self._held()
        if jobs:
            for job_id in await self.queue.cancel_requests(jobs):
                self.request_cancel(job_id)


async def every(
    interval: float,
    duty: Callable[[], Awaitable[None]],
    on_fatal: Callable[[BaseException], None] | None = None,
) -> None:
    """Runs ``duty`` every ``interval`` seconds until cancelled; whatever it
    raises is logged, and the next run waits longer while it keeps failing.
    After :data:`GIVE_UP_AFTER` unexpected failures in a row it gives up:
    ``on_fatal`` hears the last error."""
    name = getattr(duty, "__name__", "duty")
    failures = unexpected = 0
    while True:
        await asyncio.sleep(backoff(interval, failures) if failures else interval)
        try:
            await duty()
        except JobqError as exc:
            failures += 1
            log.warning("%s failed: %s", name, exc)
        except Exception as exc:
            failures += 1
            unexpected += 1
            if unexpected >= GIVE_UP_AFTER and on_fatal is not None:
                log.critical("%s failed %d times in a row; giving up", name, unexpected, exc_info=exc)
                on_fatal(exc)
                return
            log.exception("%s failed unexpectedly; trying again", name)
        else:
            failures = unexpected = 0
