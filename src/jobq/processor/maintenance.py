"""A processor's upkeep: lease renewal, rescue, pruning and cancel polling.

Each duty runs in a loop of its own, every so many seconds, and that loop
survives anything the duty raises: a store outage (a :class:`jobq.JobqError`)
is logged in one line, anything else (a driver error jobq does not classify,
a bug) with its traceback; either way the loop backs off and goes on.

- **lease renewal** (``heartbeat_interval``): extends the leases of the jobs
  running here, so no rescuer takes them back while their handlers run.
- **rescue** (``rescue_interval``): returns jobs whose lease expired (their
  worker was lost), and jobs another writer held without a lease past the
  queue's ``foreign_claim_timeout``, to waiting, or fails them for good
  (:func:`jobq.transitions.rescued` decides), and reports each.
- **pruning** (``prune_interval``): deletes finished jobs older than
  ``retention``.
- **cancel polling** (``cancel_check_interval``): asks the store which
  running jobs have a cancel request from another process, and stops them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ..errors import JobqError
from ..job import Job
from ..queue import Queue
from .completer import Reporter
from .config import ProcessorConfig
from .executor import Phase, Running

log = logging.getLogger("jobq")

STORE_RETRY_MAX = 5.0  # seconds; longest pause after a store error before trying again


def backoff(interval: float, failures: int) -> float:
    """Seconds to wait after ``failures`` failures in a row of a duty run
    every ``interval`` seconds: doubling, up to ``STORE_RETRY_MAX`` (never
    less than the interval)."""
    return max(interval, min(interval * 2.0 ** min(failures, 30), STORE_RETRY_MAX))


class Maintenance:
    """The upkeep duties of one processor, over its map of running jobs."""

    def __init__(
        self,
        queue: Queue,
        config: ProcessorConfig,
        running: dict[str, Running],
        reporter: Reporter,
        request_cancel: Callable[[str], None],
    ) -> None:
        self.queue = queue
        self.config = config
        self.running = running
        self.reporter = reporter
        self.request_cancel = request_cancel
        self.renewed_at = queue.clock.now()  # clock time of the last lease renewal (see rescue)

    def tasks(self) -> list[asyncio.Task[None]]:
        """Starts every duty, each in its own task."""
        c = self.config
        duties: list[tuple[str, float, Callable[[], Awaitable[None]]]] = [
            ("jobq-leases", c.heartbeat_interval, self.renew_leases),
            ("jobq-rescue", c.rescue_interval, self.rescue),
            ("jobq-cancels", c.cancel_check_interval, self.check_cancels),
        ]
        if c.prune_interval is not None:
            duties.append(("jobq-prune", c.prune_interval, self.prune))
        return [asyncio.create_task(every(interval, duty), name=name) for name, interval, duty in duties]

    def _held(self) -> list[Job[Any]]:
        """Running jobs whose lease this processor still holds (a job whose
        outcome is being written loses its lease with that write)."""
        return [r.job for r in self.running.values() if r.phase is not Phase.SETTLING]

    async def renew_leases(self) -> None:
        self.renewed_at = self.queue.clock.now()
        jobs = self._held()
        if not jobs:
            return
        for job_id in await self.queue.extend_leases(jobs):
            # A job whose outcome was stored meanwhile (by this processor)
            # has no lease left to renew; that is not a lost lease.
            held = self.running.get(job_id)
            if held is not None and held.phase is not Phase.SETTLING:
                log.warning("jobq: lost the lease on job %s; its outcome will not be recorded", job_id)

    async def rescue(self) -> None:
        # A clock that jumped ahead makes every lease look expired, healthy
        # ones too: when this processor's own leases may have run out by the
        # clock, it renews them before sweeping (normally the heartbeat,
        # every third of a lease or sooner, keeps them far from that).
        if self.queue.clock.now() >= self.renewed_at + self.queue.lease:
            await self.renew_leases()
        for job in await self.queue.rescue_expired():
            self.reporter.rescued(job, self.queue.max_lost_leases)

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


async def every(interval: float, duty: Callable[[], Awaitable[None]]) -> None:
    """Runs ``duty`` every ``interval`` seconds until cancelled; whatever it
    raises is logged, and the next run waits longer while it keeps failing."""
    name = getattr(duty, "__name__", "duty")
    failures = 0
    while True:
        await asyncio.sleep(backoff(interval, failures) if failures else interval)
        try:
            await duty()
        except JobqError as exc:
            failures += 1
            log.warning("jobq: %s failed: %s", name, exc)
        except Exception:
            failures += 1
            log.exception("jobq: %s failed unexpectedly; trying again", name)
        else:
            failures = 0
