"""The operator verbs of :class:`~jobq.Queue`: looking at the jobs
(``list_jobs``, ``summary``, ``throughput``, ``counts``) and deleting
finished ones (``cleanup_terminal``, ``prune``).

:class:`AdminVerbs` holds them and ``Queue`` inherits it, so they stay
``queue.list_jobs(...)`` and so on; the views in :mod:`jobq.admin.views`,
the command line and the dashboard are built on them. Like every verb, each
is one store call (or a few) that every backend answers the same way.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .. import codec, figures
from ..clock import datetime_of_ms, from_ms, to_ms
from ..errors import InvalidOption, JobNotFound
from ..history import Attempt, WorkerInfo, completed_attempt
from ..job import TERMINAL_STATUSES, Job, JobRecord, JobStatus
from ..store.base import Search

if TYPE_CHECKING:
    from ..store.base import AdminStore

LIST_LIMIT = 50  # jobs per list_jobs page unless told
MAX_LIST_LIMIT = 1000  # most jobs one list_jobs page returns
MAX_LIST_OFFSET = 2**63 - 1  # the largest offset every store takes (a 64-bit integer)
THROUGHPUT_WINDOW = 15  # minutes of history throughput() (and `jobq stats`) report unless told
MAX_THROUGHPUT_WINDOW = 24 * 60  # minutes: the longest history throughput() reports
COMPLETED_RETENTION = 86_400.0  # seconds a completed job is kept by default (1 day)
FAILED_RETENTION = 604_800.0  # seconds a failed job is kept by default (7 days)
CANCELLED_RETENTION = 604_800.0  # seconds a cancelled job is kept by default (7 days)
_MINUTE_MS = 60_000


@dataclass(frozen=True, slots=True)
class Retention:
    """How long finished jobs are kept, in seconds, per status (``None``:
    forever). ``Queue.prune`` and the processor's periodic pruning use it."""

    completed_after: float | None = COMPLETED_RETENTION
    failed_after: float | None = FAILED_RETENTION
    cancelled_after: float | None = CANCELLED_RETENTION

    def __post_init__(self) -> None:
        for name in ("completed_after", "failed_after", "cancelled_after"):
            value = getattr(self, name)
            if value is not None:
                codec.check_delay(value, name)


@dataclass(slots=True)
class JobPage:
    """One page of :meth:`Queue.list_jobs`: the jobs, and how many match in all."""

    jobs: list[Job[Any]]
    total: int
    limit: int
    offset: int
    #: The cursor of the next page (``list_jobs(after=...)``), or ``None``
    #: when this page is the last.
    next_cursor: str | None = None


@dataclass(frozen=True, slots=True)
class CountRow:
    """How many jobs one named queue holds of one type in one status."""

    queue: str
    type: str
    status: JobStatus
    count: int


@dataclass(frozen=True, slots=True)
class ThroughputRow:
    """Jobs finished in the minute starting at ``minute`` (aware UTC)."""

    minute: datetime
    completed: int
    failed: int


def _names(value: str | Collection[str] | None, what: str) -> list[str] | None:
    if value is None:
        return None
    names = [value] if isinstance(value, str) else list(value)
    codec.check_names(names, what)
    return names


_STATUS_VALUES = frozenset(s.value for s in JobStatus)


def _finished(statuses: Collection[JobStatus | str], verb: str) -> set[str]:
    """The stored values of ``statuses``, which must all be finished ones;
    :class:`~jobq.InvalidOption` naming ``verb`` otherwise."""
    try:
        chosen = {JobStatus(s) for s in statuses}
    except ValueError as exc:
        raise InvalidOption(f"{verb}: {exc}") from None
    unfinished = chosen - TERMINAL_STATUSES
    if unfinished:
        raise InvalidOption(
            f"{verb} deletes finished jobs only ({', '.join(sorted(TERMINAL_STATUSES))}),"
            f" not {', '.join(sorted(unfinished))}; use remove() or clear()"
        )
    return {s.value for s in chosen}


class AdminVerbs:
    """The operator verbs :class:`~jobq.Queue` inherits."""

    if TYPE_CHECKING:  # provided by Queue

        store: AdminStore

        def now_ms(self) -> int: ...

        def _lenient_job(self, record: JobRecord) -> Job[Any]: ...

        def _notify(self) -> None: ...

    async def attempts(self, job_id: str) -> list[Attempt]:
        """The job's attempt history, oldest first: one row per attempt
        (its worker, start, end, outcome, and any error with its type and
        traceback). Empty for a job not run yet; an unknown id raises
        :class:`~jobq.JobNotFound`."""
        if not isinstance(job_id, str):
            raise TypeError(f"job_id must be a str, not {type(job_id).__name__}")
        rows = await self.store.attempts(job_id)
        record = await self.store.get(job_id)
        if record is None:
            if not rows:
                raise JobNotFound(job_id)
            return [Attempt.from_record(row) for row in rows]  # removed meanwhile
        history = [Attempt.from_record(row) for row in rows]
        finished = completed_attempt(record)
        if finished is not None and not (history and history[-1].outcome == "completed"):
            history.append(finished)
        return history

    async def workers(self) -> list[WorkerInfo]:
        """The worker registry: every worker process heard from within the
        last hour, by start time; one silent for three heartbeats shows
        ``alive=False``."""
        now = self.now_ms()
        return [WorkerInfo.from_record(row, now) for row in await self.store.workers()]

    async def counts(self) -> dict[JobStatus, int]:
        """How many jobs are in each status (every status present, 0 if none)."""
        raw = await self.store.count_by_status(now_ms=self.now_ms())
        return {status: raw.get(status.value, 0) for status in JobStatus}

    async def list_jobs(
        self,
        *,
        status: JobStatus | str | Collection[JobStatus | str] | None = None,
        type: str | Collection[str] | None = None,
        queue: str | Collection[str] | None = None,
        limit: int = LIST_LIMIT,
        offset: int = 0,
        order: str = "newest",
        ids: Collection[str] | None = None,
        unique_key: str | None = None,
        text: str | None = None,
        after: str | None = None,
    ) -> JobPage:
        """A page of jobs, newest (or oldest) ``created_at`` first, filtered
        by status (one or several; ``DELAYED`` and ``PENDING`` apart, as
        ``get_job`` reports them), type and named queue, and searched by
        ``ids``, ``unique_key`` and ``text`` (found, case aside, in the
        payload as stored JSON or in the error: a scan, for operators);
        ``total`` counts every match.

        ``after``: a page's ``next_cursor``, to read the page after it (with
        the same filters and order). The store seeks to it through an index
        where an ``offset`` counts every job before it, so the last page of a
        million jobs costs what the first does; jobs added meanwhile do not
        shift the pages. ``offset`` then counts from the cursor."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIST_LIMIT:
            raise InvalidOption(f"limit must be an int from 1 to {MAX_LIST_LIMIT}, not {limit!r}")
        check_offset(offset)
        if order not in ("newest", "oldest"):
            raise InvalidOption(f"order must be 'newest' or 'oldest', not {order!r}")
        statuses: set[str] | None = None
        if status is not None:
            chosen = [status] if isinstance(status, str) else list(status)
            try:
                statuses = {JobStatus(s).value for s in chosen}
            except ValueError as exc:
                raise InvalidOption(f"list_jobs: {exc}") from None
        records, total = await self.store.list_jobs(
            statuses=statuses,
            types=_names(type, "type"),
            queues=_names(queue, "queue"),
            limit=limit + 1,  # one more, to know whether a next page exists
            offset=offset,
            newest_first=order == "newest",
            now_ms=self.now_ms(),
            search=_search(ids, unique_key, text),
            **({} if after is None else {"after": parse_cursor(after)}),
        )
        more = len(records) > limit
        records = records[:limit]
        cursor = page_cursor(records[-1]) if more else None
        return JobPage([self._lenient_job(r) for r in records], total, limit, offset, cursor)

    async def summary(self, statuses: Collection[JobStatus | str] | None = None) -> list[CountRow]:
        """How many jobs there are per named queue, type and status (only
        combinations that have jobs); with ``statuses``, of those statuses
        only, which reads only their jobs (through the status index)."""
        if statuses is None:
            rows = await self.store.summary(now_ms=self.now_ms())
            return [CountRow(q, t, JobStatus(s), n) for q, t, s, n in rows if s in _STATUS_VALUES]
        try:
            chosen = {JobStatus(s).value for s in ([statuses] if isinstance(statuses, str) else statuses)}
        except ValueError as exc:
            raise InvalidOption(f"summary: {exc}") from None
        stored = {"pending" if s == "delayed" else s for s in chosen}  # delayed jobs are stored pending
        rows = await self.store.summary(now_ms=self.now_ms(), statuses=sorted(stored))
        return [CountRow(q, t, JobStatus(s), n) for q, t, s, n in rows if s in chosen]

    async def throughput(self, minutes: int = THROUGHPUT_WINDOW) -> list[ThroughputRow]:
        """Attempts completed and failed per minute over the last ``minutes``
        minutes, oldest first, one row per minute (zeros included); the last
        row is the current, partial minute. Read from the attempt history,
        as :meth:`outcomes` is: every failed attempt counts (a retried job's
        too, see :data:`~jobq.figures.FAILED_OUTCOMES`), so retrying a job
        erases none of its failures."""
        if (
            isinstance(minutes, bool)
            or not isinstance(minutes, int)
            or not 1 <= minutes <= MAX_THROUGHPUT_WINDOW
        ):
            raise InvalidOption(f"minutes must be an int from 1 to {MAX_THROUGHPUT_WINDOW}, not {minutes!r}")
        current = self.now_ms() // _MINUTE_MS * _MINUTE_MS
        since = current - (minutes - 1) * _MINUTE_MS
        rows = await self.store.outcomes(since_ms=since, bucket_ms=_MINUTE_MS, until_ms=current)
        found = {m: (c, f) for m, c, f in rows}
        return [
            ThroughputRow(from_ms(minute), *found.get(minute, (0, 0)))  # type: ignore[arg-type]
            for minute in range(since, current + 1, _MINUTE_MS)
        ]

    async def oldest_ready(self, queue: str | None = None) -> Job[Any] | None:
        """The ready job (of the named ``queue`` if given) that has waited
        longest since it became due: earliest ``process_at`` first, which a
        retry moves to the retry's time, so a job retried a moment ago has
        waited a moment, however long ago it was created. ``None`` when no
        job is ready."""
        found = await self.store.oldest_ready(now_ms=self.now_ms(), queue=None if queue is None else str(queue))
        return None if found is None else self._lenient_job(found)

    # -- the dashboard's figures ---------------------------------------------------

    async def outcomes(self, window: str = "hour", *, queue: str | None = None) -> list[ThroughputRow]:
        """Attempts completed and failed per bucket of ``window`` (``"hour"``:
        per minute over the last hour; ``"day"``: per hour over the last
        day), from the attempt history, oldest first, zeros included; of
        jobs in ``queue`` if given. Unlike :meth:`throughput`, every failed
        attempt counts (retried ones too), so a retry erases none."""
        w = _window(window)
        current = figures.bucket_of(self.now_ms(), w.bucket_ms)
        since = current - w.span_ms + w.bucket_ms
        rows = await self.store.outcomes(since_ms=since, bucket_ms=w.bucket_ms, until_ms=current, queue=queue)
        found = {b: (c, f) for b, c, f in rows}
        return [
            ThroughputRow(from_ms(b), *found.get(b, (0, 0)))  # type: ignore[arg-type]
            for b in range(since, current + 1, w.bucket_ms)
        ]

    async def durations(self, window: str = "hour", *, queue: str | None = None) -> dict[str, dict[str, Any]]:
        """Per job type, run time (an attempt's start to end) and queue age (a
        job's creation to its first start): p50 and p95 in ms (each the
        bound of the bucket it falls in, see
        :data:`~jobq.figures.DURATION_BOUNDS_MS`) and how many attempts were
        counted, over ``window``; of jobs in ``queue`` if given."""
        since = self.now_ms() - _window(window).span_ms
        return figures.percentiles(await self.store.durations(since_ms=since, queue=queue))

    async def cron_slots(self) -> dict[str, datetime]:
        """Each cron schedule this job table has run, with its last slot (aware UTC)."""
        return {name: datetime_of_ms(slot) for name, slot in (await self.store.cron_slots()).items()}

    async def cron_jobs(self, name: str, *, limit: int = LIST_LIMIT) -> list[Job[Any]]:
        """Up to ``limit`` jobs the cron schedule ``name`` enqueued, newest
        first (each with its slot in ``metadata["jobq.cron_slot"]``)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIST_LIMIT:
            raise InvalidOption(f"limit must be an int from 1 to {MAX_LIST_LIMIT}, not {limit!r}")
        return [self._lenient_job(r) for r in await self.store.cron_jobs(str(name), limit=limit)]

    # -- pausing queues ----------------------------------------------------------

    async def pause(self, queue: str) -> bool:
        """Pauses the named queue: workers stop claiming its jobs within
        :data:`~jobq.processor.producer.PAUSE_CHECK_INTERVAL` seconds (each
        reads the paused queues that often), while jobs keep arriving and
        those already running finish. Every worker of this job table obeys,
        in every process. ``dequeue()`` and ``claim()`` called directly are
        an operator's own claims and are not held back. Returns ``False`` if
        the queue was already paused."""
        return await self.store.pause_queue(_queue_name(queue), now_ms=self.now_ms())

    async def resume(self, queue: str) -> bool:
        """Lets workers claim from a paused queue again (waking idle ones);
        ``False`` if it was not paused."""
        resumed = await self.store.resume_queue(_queue_name(queue))
        if resumed:
            self._notify()
        return resumed

    async def paused(self) -> dict[str, datetime]:
        """The paused queues, by name, each with when it was paused (aware UTC)."""
        return {name: datetime_of_ms(at) for name, at in (await self.store.paused_queues()).items()}

    # -- deleting finished jobs ----------------------------------------------------

    async def cleanup_terminal(
        self,
        statuses: Collection[JobStatus | str] = (JobStatus.COMPLETED, JobStatus.FAILED),
        *,
        older_than: float | None = None,
    ) -> int:
        """Deletes jobs in ``statuses`` (finished more than ``older_than``
        seconds ago, when given); returns how many."""
        chosen = _finished(statuses, "cleanup_terminal")
        before = None
        if older_than is not None:
            before = self.now_ms() - to_ms(codec.check_delay(older_than, "older_than"))
        return await self._delete_finished(dict.fromkeys(chosen, before))

    async def prune(
        self,
        *,
        completed_after: float | None = COMPLETED_RETENTION,
        failed_after: float | None = FAILED_RETENTION,
        cancelled_after: float | None = CANCELLED_RETENTION,
        statuses: Collection[JobStatus | str] | None = None,
        older_than: float | None = None,
        dry_run: bool = False,
    ) -> int:
        """Deletes finished jobs older than their status's age in seconds
        (counted from ``completed_at``, ``failed_at`` or ``cancelled_at``;
        ``None`` keeps that status forever); returns how many. Waiting and
        running jobs are never touched.

        ``older_than`` (seconds) replaces the three ages with one, for the
        ``statuses`` given (default: every finished status). ``dry_run``:
        counts the jobs it would delete, and deletes none."""
        ages: dict[str, float | None] = {
            "completed": completed_after,
            "failed": failed_after,
            "cancelled": cancelled_after,
        }
        if older_than is not None:
            codec.check_delay(older_than, "older_than")
        if older_than is not None or statuses is not None:
            names = _finished(TERMINAL_STATUSES if statuses is None else statuses, "prune")
            ages = {
                name: (older_than if older_than is not None else age) if name in names else None
                for name, age in ages.items()
            }
        now_ms = self.now_ms()
        return await self._delete_finished(
            {
                status: now_ms - to_ms(codec.check_delay(age, f"{status}_after"))
                for status, age in ages.items()
                if age is not None
            },
            dry_run=dry_run,
        )

    async def _delete_finished(self, before_ms: Mapping[str, int | None], *, dry_run: bool = False) -> int:
        """Deletes jobs in each stored status of ``before_ms`` that finished
        before its epoch milliseconds (``None``: whenever); returns how many
        (``dry_run``: counts them, deleting none). Statuses with the same
        bound share one statement."""
        groups: dict[int | None, set[str]] = {}
        for status, bound in before_ms.items():
            groups.setdefault(bound, set()).add(status)
        verb = self.store.count_terminal if dry_run else self.store.delete_terminal
        removed = 0
        for bound, group in groups.items():
            removed += await verb(group, before_ms=bound)
        return removed


MAX_SEARCH_CHARS = 1000  # the longest text list_jobs searches for


def _search(ids: Collection[str] | None, unique_key: str | None, text: str | None) -> Search | None:
    """The search filters of ``list_jobs``, checked; ``None`` when there are none."""
    if ids is None and unique_key is None and text is None:
        return None
    if ids is not None:
        ids = [ids] if isinstance(ids, str) else list(ids)
        if not all(isinstance(job_id, str) for job_id in ids):
            raise InvalidOption("ids must be job ids (str)")
        ids = [job_id for job_id in ids if codec.storable_id(job_id)]  # no job has any other
    if unique_key is not None:
        codec.check_names([unique_key], "unique_key")
    if text is not None:
        if not isinstance(text, str) or not text or len(text) > MAX_SEARCH_CHARS:
            raise InvalidOption(f"text must be a non-empty str of at most {MAX_SEARCH_CHARS} characters")
        codec.check_text(text, "text", InvalidOption)
    return Search(ids, unique_key, text)


def _queue_name(queue: object) -> str:
    """A queue name to pause or resume: :class:`~jobq.InvalidOption` unless
    it is one a job could name."""
    if not isinstance(queue, str) or not queue.strip():
        raise InvalidOption(f"a queue name must be a non-empty str, not {queue!r}")
    if len(queue) > codec.MAX_TYPE_LENGTH:
        raise InvalidOption(f"queue name is {len(queue)} characters long; the limit is {codec.MAX_TYPE_LENGTH}")
    codec.check_text(queue, "queue name", InvalidOption)
    return queue


def page_cursor(record: JobRecord) -> str:
    """The cursor of the page after ``record``: its ``created_at`` (epoch
    ms) and id, the page's sort key."""
    return f"{record.created_at}.{record.id}"


def parse_cursor(cursor: object) -> tuple[int, str]:
    """A :func:`page_cursor` read back; :class:`~jobq.InvalidOption` if it is not one."""
    if isinstance(cursor, str):
        at, dot, job_id = cursor.partition(".")
        if dot and job_id and re.fullmatch(r"-?[0-9]{1,18}", at):
            return int(at), job_id
    raise InvalidOption(f"after must be a page's next_cursor, not {cursor!r}")


def check_offset(offset: object) -> None:
    """A page's offset every store takes."""
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= MAX_LIST_OFFSET:
        raise InvalidOption(f"offset must be an int from 0 to {MAX_LIST_OFFSET}, not {offset!r}")


def _window(window: str) -> figures.Window:
    try:
        return figures.WINDOWS[window]
    except (KeyError, TypeError):
        raise InvalidOption(f"window must be one of {sorted(figures.WINDOWS)}, not {window!r}") from None
