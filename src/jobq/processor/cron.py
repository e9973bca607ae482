"""Cron schedules: one job per slot, however many worker processes run them.

A schedule is a cron expression (five fields, or six with seconds last, as
``croniter`` reads them), a job type and a payload. Every processor that
knows a schedule looks for its latest due slot; the store decides who gets
it (``claim_cron_slot``, a compare-and-set on the last slot run, with the
job inserted in the same transaction), so exactly one job is enqueued per
slot across threads, processes and machines.

Missed slots: a processor that starts after slots passed while no worker
ran enqueues the latest of them once, not one per missed slot. A schedule
seen for the first time starts from the slot due then, without running it
(nothing was missed before it existed).

The processor runs :class:`CronLoop`: it settles each schedule's latest due
slot, then sleeps until the next slot of any schedule (or a fake clock
moves, or a store error asks for another try soon).

``croniter`` is an optional dependency: ``pip install 'jobq[cron]'``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..clock import FakeClock, to_ms
from ..errors import BackendMissing, InvalidOption
from ..events import Emitter, Event
from ..newjobs import NewJob
from ..queue import Queue
from .config import ProcessorConfig

log = logging.getLogger("jobq")

CRON_CHECK_MAX = 60.0  # seconds; longest wait between checks, so a clock jump is noticed
CRON_RETRY = 1.0  # seconds before trying a slot again after a store error
#: Metadata keys of a job enqueued by a schedule: its name and slot (epoch ms).
CRON_KEY = "jobq.cron"
SLOT_KEY = "jobq.cron_slot"


def _croniter() -> Any:
    try:
        from croniter import croniter
    except ImportError:
        raise BackendMissing("cron schedules need the croniter package: pip install 'jobq[cron]'") from None
    return croniter


@dataclass
class CronSchedule:
    """Enqueue a ``job_type`` job with ``data`` at every slot of ``expression``.

    - ``name``: identifies the schedule in the store (default
      ``"<job_type> <expression>"``); two processes with the same name share
      its slots, so give schedules of one type with different data
      different names.
    - ``timezone``: an IANA name the expression is read in (default UTC).
    - ``priority``, ``max_attempts``, ``metadata``, ``queue``: those of the
      enqueued job (``None``: the processor's defaults).
    """

    expression: str
    job_type: str
    data: Any = None
    name: str = ""
    timezone: str = "UTC"
    priority: int | None = None
    max_attempts: int | None = None
    metadata: dict[str, Any] | None = None
    queue: str | None = None
    last_seen_ms: int = field(default=-1, init=False, repr=False)
    """The latest slot this process has settled (won, lost or recorded)."""

    def __post_init__(self) -> None:
        croniter = _croniter()
        if not isinstance(self.expression, str) or not croniter.is_valid(self.expression):
            raise InvalidOption(f"{self.expression!r} is not a valid cron expression")
        if not isinstance(self.job_type, str) or not self.job_type.strip():
            raise InvalidOption(f"a cron schedule needs a job type, not {self.job_type!r}")
        try:
            self._zone = ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise InvalidOption(f"unknown timezone {self.timezone!r}") from None
        self.name = self.name or f"{self.job_type} {self.expression}"

    def _iter(self, at: float) -> Any:
        return _croniter()(self.expression, datetime.fromtimestamp(at, self._zone))

    def latest_slot(self, now: float) -> float:
        """Epoch seconds of the latest slot at or before ``now``."""
        previous = float(self._iter(now).get_prev(float))
        following = float(self._iter(previous).get_next(float))
        return following if following <= now else previous

    def next_slot(self, now: float) -> float:
        """Epoch seconds of the first slot after ``now``."""
        return float(self._iter(now).get_next(float))

    def due(self, now: float) -> int | None:
        """The latest due slot in epoch ms, if this process has not settled it."""
        slot = to_ms(self.latest_slot(now))
        return slot if slot > self.last_seen_ms else None

    def job_metadata(self, slot_ms: int) -> dict[str, Any]:
        return {**(self.metadata or {}), CRON_KEY: self.name, SLOT_KEY: slot_ms}


def seconds_until_next(schedules: list[CronSchedule], now: float) -> float:
    """How long to wait before any schedule has a new slot (capped)."""
    wait = CRON_CHECK_MAX
    for schedule in schedules:
        wait = min(wait, schedule.next_slot(now) - now)
    return max(wait, 0.0) if math.isfinite(wait) else CRON_CHECK_MAX


def cron_job(schedule: CronSchedule, slot_ms: int, config: ProcessorConfig) -> NewJob:
    """The job a schedule enqueues for one slot (the processor's defaults
    where the schedule gives none)."""
    return config.add_defaults.job(
        schedule.job_type, schedule.data, priority=schedule.priority,
        max_attempts=schedule.max_attempts, metadata=schedule.job_metadata(slot_ms),
        queue=schedule.queue or None,
    )  # fmt: skip


def _nothing() -> None:
    pass


class CronLoop:
    """Enqueues the jobs of a processor's schedules, one per slot."""

    def __init__(
        self, queue: Queue, config: ProcessorConfig, schedules: dict[str, CronSchedule], events: Emitter
    ) -> None:
        self.queue = queue
        self.config = config
        self.schedules = schedules
        self.events = events
        self._wake: asyncio.Event | None = None

    def start(self) -> tuple[asyncio.Task[None], Callable[[], None]]:
        """Starts the loop; returns its task and a function that undoes its
        subscription to a fake clock."""
        loop = asyncio.get_running_loop()
        wake = self._wake = asyncio.Event()

        def tick() -> None:
            loop.call_soon_threadsafe(wake.set)

        unsubscribe: Callable[[], Any] = _nothing
        if isinstance(self.queue.clock, FakeClock):
            unsubscribe = self.queue.clock.on_advance(tick)
        return asyncio.create_task(self.run(), name="jobq-cron"), unsubscribe

    async def run(self) -> None:
        """Settles each schedule's latest due slot, then sleeps until the next
        slot of any schedule (or a fake clock moves)."""
        assert self._wake is not None
        while True:
            self._wake.clear()
            try:
                now = self.queue.clock.now()
                retry = not await self.tick(now)
                wait = seconds_until_next(list(self.schedules.values()), now)
                if retry:
                    wait = min(wait, CRON_RETRY)
            except Exception:
                log.exception("the cron loop failed; trying again in %g s", CRON_RETRY)
                wait = CRON_RETRY
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=wait)

    async def tick(self, now: float) -> bool:
        """Settles every schedule's due slot; ``False`` if a store error left
        one to try again."""
        settled = True
        for schedule in list(self.schedules.values()):
            slot = schedule.due(now)
            if slot is None:
                continue
            try:
                await self._fire(schedule, slot)
            except Exception as exc:  # noqa: BLE001 - the schedule tries again; the loop must not die
                log.warning("cron schedule %r could not claim its slot: %s", schedule.name, exc)
                settled = False
                continue
            schedule.last_seen_ms = slot
        return settled

    async def _fire(self, schedule: CronSchedule, slot_ms: int) -> None:
        spec = cron_job(schedule, slot_ms, self.config)
        job = await self.queue.enqueue_for_slot(schedule.name, slot_ms, spec)
        if job is None:
            return
        log.info("cron schedule %r enqueued job %s for its slot", schedule.name, job.id)
        self.events.emit(Event("cron_enqueued", job=job))
