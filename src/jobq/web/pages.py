"""The dashboard's queue page, cron page and charts page: what one named
queue is doing (counts, throughput from the attempt history, the oldest
ready job, paused or not, the workers serving it and their concurrency),
what each cron schedule ran, and the charts of every queue together.

Each page is a few store reads (the figures are aggregated by the store, see
:mod:`jobq.figures`) rendered on the server, charts included
(:mod:`jobq.web.charts`), so no script is needed to read them.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from .. import admin
from ..errors import InvalidOption
from ..figures import WINDOWS, Window
from ..job import JobStatus
from .charts import duration_chart, outcome_chart

if TYPE_CHECKING:
    from ..queue import Queue

CRON_JOBS_SHOWN = 10  # jobs listed under each cron schedule
CHARTED_QUEUES = 32  # queue pages (queue and window) whose figures are kept for background recounts
ACTIONS = ("pause", "resume")  # /queues/<action> are the queue controls' POST endpoints


def window_of(request: Request) -> Window:
    name = request.query_params.get("window") or "hour"
    if name not in WINDOWS:
        raise HTTPException(400, f"window must be one of {', '.join(sorted(WINDOWS))}")
    return WINDOWS[name]


async def figures(queue: Queue, window: Window, name: str | None) -> dict[str, Any]:
    """Outcomes and durations of ``window`` (of queue ``name``, or all), with their charts."""
    rows = await queue.outcomes(window.name, queue=name)
    completed, failed = sum(r.completed for r in rows), sum(r.failed for r in rows)
    buckets = max(len(rows), 1)
    durations = await queue.durations(window.name, queue=name)
    return {
        "window": window,
        "completed": completed,
        "failed": failed,
        "completed_per": completed / buckets,
        "failed_per": failed / buckets,
        "failure_rate": failed / (completed + failed) if completed + failed else None,
        "chart": outcome_chart(rows, window),
        "durations": durations,
        "duration_chart": duration_chart(durations) if durations else None,
    }


def serves(worker: dict[str, Any], name: str) -> bool:
    """Whether a registered worker claims from queue ``name`` (no list: every queue)."""
    return worker.get("queues") is None or name in worker["queues"]


def slots_for(worker: dict[str, Any], name: str) -> tuple[int, bool]:
    """How many of queue ``name``'s jobs a worker runs at once at most, and
    whether those slots are shared with the other queues it serves (its
    whole concurrency) rather than the queue's own (per-queue concurrency)."""
    own = (worker.get("limits") or {}).get("queues") or {}
    if name in own:
        return int(own[name]), False
    return int(worker.get("concurrency") or 0), len(worker.get("queues") or ()) != 1


def _seconds(value: Any) -> str:
    return f"{float(value):g} s"


def limit_texts(limits: dict[str, Any]) -> list[str]:
    """What one worker enforces (its registered ``limits``, see
    :func:`jobq.history.limits_of`), one line per limit, worded for the page."""
    out: list[str] = []
    rate = limits.get("rate_limit")
    if isinstance(rate, dict):
        out.append(f"rate limit: at most {rate.get('max_requests')} job starts per "
                   f"{_seconds(rate.get('window_seconds'))} (this worker)")  # fmt: skip
    for key in limits.get("key_limits") or ():
        if not isinstance(key, dict):
            continue
        parts = []
        if key.get("rate") is not None:
            parts.append(f"at most {key['rate']} starts per {_seconds(key.get('per', 1.0))}")
        if key.get("concurrency") is not None:
            parts.append(f"at most {key['concurrency']} running")
        of = f"jobs of type {key['type']}" if key.get("type") else "jobs"
        out.append(f"per-key limit on {of} by metadata {key.get('key')!s}: {', '.join(parts)} per key (every worker)")
    breaker = limits.get("circuit_breaker")
    if isinstance(breaker, dict):
        out.append(f"circuit breaker per job type: opens after {breaker.get('failure_threshold')} failures in a row,"
                   f" lets a trial job through after {_seconds(breaker.get('reset_timeout'))}")  # fmt: skip
    for job_type, state in sorted((limits.get("open_circuits") or {}).items()):
        out.append(f"circuit {str(state).replace('_', '-')} for {job_type}: its jobs are not claimed")
    if limits.get("job_timeout") is not None:
        out.append(f"job timeout: {_seconds(limits['job_timeout'])}")
    return out


def limits_in_force(workers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The limits the live ``workers`` enforce, each once, with the workers
    enforcing it."""
    found: dict[str, list[str]] = {}
    for worker in workers:
        if worker.get("alive"):
            for text in limit_texts(worker.get("limits") or {}):
                found.setdefault(text, []).append(str(worker["owner"]))
    return [{"text": text, "workers": owners} for text, owners in found.items()]


async def queue_counts(
    queue: Queue, name: str, counted: admin.Recounted[dict[str, Any]] | None
) -> tuple[dict[str, int], float | None, bool]:
    """Jobs of queue ``name`` per status, how many seconds ago they were
    counted (``None``: now) and whether finished jobs are among them: from
    the overview's counts per queue (``counted``, see
    :func:`jobq.admin.views.slow_figures`), which at a million jobs are
    counted in the background rather than for each page."""
    slow, age, whole = await admin.slow_figures(queue, admin.THROUGHPUT_MINUTES, counted)
    counts = {s.value: 0 for s in JobStatus}
    counts.update(slow["by_queue"].get(name, {}))
    return counts, age, whole


async def queue_view(
    queue: Queue, name: str, window: Window, *,
    counted: admin.Recounted[dict[str, Any]] | None = None,
    charted: admin.Recounted[dict[str, Any]] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """What the queue page shows of queue ``name``: its counts from
    ``counted`` (see :func:`queue_counts`), its figures of ``window`` from
    ``charted`` (a :class:`~jobq.admin.Recounted` of :func:`figures`; its
    ``charts_age`` the seconds since they were counted, ``None`` for now;
    ``figures`` is ``None`` while their first count runs). Without them,
    both are counted for this call."""
    charts: Any = figures(queue, window, name) if charted is None else charted.get()
    (counts, age, whole), oldest, paused, registry, drawn = await asyncio.gather(
        queue_counts(queue, name, counted), queue.oldest_ready(name), queue.paused(), admin.workers(queue), charts,
    )  # fmt: skip
    shown, charts_age = drawn if charted is not None else (drawn, None)
    now = datetime.fromtimestamp(queue.clock.now(), UTC)
    # Ready since it was due (a retried job is due from its retry), not since it was created.
    ready = None if oldest is None else {"job": oldest, "seconds": admin.waited(oldest, now)}
    workers = [w for w in registry if w.get("concurrency") is not None and serves(w, name)]
    for worker in workers:
        worker["slots"], worker["shared"] = slots_for(worker, name)
    alive = [w for w in workers if w.get("alive")]
    return {
        "name": name,
        "counts": counts,
        "counts_age": None if age is None else round(age, 1),
        "breakdown": "all" if whole else "unfinished",
        "total": sum(counts.values()),
        "oldest_ready": ready,
        "paused_at": paused.get(name),
        "workers": workers,
        "concurrency": sum(int(w["slots"]) for w in alive),
        "shared": any(w["shared"] for w in alive),
        "limits": limits_in_force(workers),
        "running": sum(int(w["jobs"] or 0) for w in alive),
        "figures": shown,
        "charts_age": None if charts_age is None else round(charts_age, 1),
    }


class Schedule(Protocol):
    """A cron schedule as the cron page reads it: a
    :class:`jobq.processor.cron.CronSchedule` given to ``create_app(cron=...)``
    (the dashboard does not import the worker's modules), or one read from
    its stored name (:class:`NamedSchedule`)."""

    name: str
    expression: str
    timezone: str

    def next_slot(self, now: float) -> float: ...


@dataclass
class NamedSchedule:
    """A schedule stored under its default name, ``"<job type> <expression>"``
    (see :class:`jobq.processor.cron.CronSchedule`), read back from it. The
    name does not say the timezone: its slots are read in UTC, and a
    schedule in another timezone is given to ``create_app(cron=...)``."""

    name: str
    expression: str
    timezone: str = "UTC"

    def next_slot(self, now: float) -> float:
        from croniter import croniter

        return float(croniter(self.expression, datetime.fromtimestamp(now, UTC)).get_next(float))

    @classmethod
    def parse(cls, name: str) -> NamedSchedule | None:
        """The schedule a default name holds, if its last five or six words
        are a cron expression (``None`` otherwise, or without croniter)."""
        try:
            from croniter import croniter
        except ImportError:
            return None
        words = name.split()
        for fields in (6, 5):
            expression = " ".join(words[-fields:])
            if len(words) > fields and croniter.is_valid(expression):
                return cls(name, expression)
        return None


def next_slot(schedule: Schedule | None, now: float) -> datetime | None:
    if schedule is None:
        return None
    return datetime.fromtimestamp(schedule.next_slot(now), UTC)


def known_schedules(given: list[Schedule], names: list[str]) -> dict[str, Schedule]:
    """The schedules whose expression the dashboard knows: those given to
    ``create_app(cron=...)``, and those stored under their default name."""
    known: dict[str, Schedule] = {s.name: s for s in given}
    for name in names:
        if name not in known and (parsed := NamedSchedule.parse(name)) is not None:
            known[name] = parsed
    return known


class Charted:
    """The figures of the queue pages last shown (:data:`CHARTED_QUEUES` of
    them), each a :class:`~jobq.admin.Recounted`: at a million jobs an
    hour's attempts of one queue take a good part of a second to count, so
    they are counted in the background, as the overview's counts are."""

    def __init__(self, queue: Queue) -> None:
        self.queue = queue
        self._kept: OrderedDict[tuple[str, str], admin.Recounted[dict[str, Any]]] = OrderedDict()

    def of(self, name: str, window: Window) -> admin.Recounted[dict[str, Any]]:
        key = (name, window.name)
        found = self._kept.get(key)
        if found is None:
            found = self._kept[key] = admin.Recounted(lambda: figures(self.queue, window, name))
            while len(self._kept) > CHARTED_QUEUES:
                self._kept.popitem(last=False)
        self._kept.move_to_end(key)
        return found


class FigurePages:
    """The queue, cron and charts pages (mixed into the dashboard)."""

    if TYPE_CHECKING:  # provided by Dashboard
        queue: Queue
        schedules: list[Schedule]
        figures: admin.Recounted[dict[str, Any]]
        charted: Charted

        def render(self, request: Request, name: str, status_code: int = 200, **context: Any) -> Response: ...

    async def queue_page(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name in ACTIONS:
            # The pause and resume endpoints take POSTs only: a GET never mutates,
            # and is not taken for the page of a queue of that name.
            raise HTTPException(405, headers={"Allow": "POST"})
        window = window_of(request)
        try:
            view = await queue_view(
                self.queue, name, window, counted=self.figures, charted=self.charted.of(name, window)
            )
        except InvalidOption as exc:
            raise HTTPException(400, str(exc)) from None
        return self.render(request, "queue.html", page="queue", q=view)

    async def charts_page(self, request: Request) -> Response:
        shown = await figures(self.queue, window_of(request), None)
        return self.render(request, "charts.html", page="charts", f=shown)

    async def cron_page(self, request: Request) -> Response:
        slots = await self.queue.cron_slots()
        known = known_schedules(self.schedules, list(slots))
        now = self.queue.clock.now()
        rows = []
        for name, last in slots.items():
            schedule = known.get(name)
            made = await self.queue.cron_jobs(name, limit=CRON_JOBS_SHOWN)
            rows.append({"name": name, "last": last, "next": next_slot(schedule, now), "schedule": schedule,
                         "jobs": made})  # fmt: skip
        waiting = [  # given to the dashboard, not run yet
            {"name": s.name, "schedule": s, "next": next_slot(s, now)} for s in self.schedules if s.name not in slots
        ]
        return self.render(request, "cron.html", page="cron", schedules=rows, waiting=waiting,
                           now=datetime.fromtimestamp(now, UTC))  # fmt: skip
