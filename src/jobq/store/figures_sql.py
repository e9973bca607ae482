"""Statements of the dashboard's figures that both SQL stores share, beside
:mod:`jobq.store.sql`: attempt outcomes per time bucket and the
distributions of run time and queue age, both read from the attempt
history (so a retry, which starts a new attempt, erases no failure), and
the cron schedules' last slots. Each is aggregated by the database
(``GROUP BY`` a bucket), never by reading rows into Python.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..figures import DURATION_BOUNDS_MS, FAILED_OUTCOMES, PAST_LAST_BOUND

if TYPE_CHECKING:
    from .sql import Dialect


def _listed(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


def every_attempt(d: Dialect, attempts: str) -> str:
    """The attempts ended at or after ``since`` as rows of (job_id, attempt,
    started_at, ended_at, outcome): the history's rows, and the completed
    attempts, which are read from their job's row (a completion adds no
    history row: :func:`jobq.transitions.completed`)."""
    since = d.value("since")
    return (
        f"(SELECT job_id, attempt, started_at, ended_at, outcome FROM {attempts}"
        f" WHERE ended_at >= {since} AND outcome <> 'completed'"
        f" UNION ALL SELECT id, attempts + 1, started_at, completed_at, 'completed' FROM {d.table}"
        f" WHERE status = 'completed' AND completed_at >= {since})"
    )


def outcomes_query(d: Dialect, attempts: str, *, by_queue: bool) -> str:
    """(bucket start, completed, failed) for each bucket of ``bucket`` ms
    from ``since`` to ``until`` (the bucket holding it included) of the
    attempts of :func:`every_attempt`; with ``by_queue``, only those of jobs
    in queue ``queue``.

    Each bucket is counted on its own range of an index (the completed
    attempts on the index of completion times, schema 5, without reading
    their rows; the failed ones on the history's index of end times, schema
    6): a ``GROUP BY`` of the end times would sort every attempt of the
    window, a tenth of a second for an hour of 360,000 completions, where
    the ranges take a few hundredths."""
    v = d.value
    since, bucket, until = v("since"), v("bucket"), v("until")
    queue = f" AND queue = {v('queue')}" if by_queue else ""
    join = f" JOIN {d.table} j ON j.id = a.job_id AND j.queue = {v('queue')}" if by_queue else ""
    done = (
        f"SELECT count(*) FROM {d.table} WHERE status = 'completed'"
        f" AND completed_at >= buckets.b AND completed_at < buckets.b + {bucket}{queue}"
    )
    failed = (
        f"SELECT count(*) FROM {attempts} a{join} WHERE a.ended_at >= buckets.b AND a.ended_at < buckets.b + {bucket}"
        f" AND a.outcome IN ({_listed(FAILED_OUTCOMES)})"
    )
    return (
        f"WITH RECURSIVE buckets(b) AS (SELECT CAST({since} AS BIGINT) UNION ALL"
        f" SELECT b + {bucket} FROM buckets WHERE b + {bucket} <= {until})"
        f" SELECT b, ({done}), ({failed}) FROM buckets ORDER BY b"
    )


def _bound_of(expr: str, bounds: tuple[int, ...] = DURATION_BOUNDS_MS) -> str:
    """The upper bound (ms) of the :data:`DURATION_BOUNDS_MS` bucket ``expr``
    falls in; 0 past the last. A balanced tree of ``CASE`` (five comparisons
    a row, not one per bucket), as :func:`jobq.figures.bound_of` reads it."""
    if len(bounds) == 1:
        return f"CASE WHEN {expr} <= {bounds[0]} THEN {bounds[0]} ELSE {PAST_LAST_BOUND} END"
    mid = len(bounds) // 2
    low, high = bounds[:mid], bounds[mid:]
    return f"CASE WHEN {expr} <= {low[-1]} THEN {_bound_of(expr, low)} ELSE {_bound_of(expr, high)} END"


def durations_query(d: Dialect, attempts: str, *, by_queue: bool) -> str:
    """(job type, run bound, wait bound, count) in one pass over the
    attempts ended at or after ``since`` (with ``by_queue``, of jobs in
    queue ``queue``): the run bound from each attempt's start to its end,
    the wait bound from its job's creation to its start for first attempts
    only (NULL for the others). :func:`jobq.figures.fold_durations` turns
    these few hundred rows into ``durations`` rows."""
    v = d.value
    where = "a.started_at IS NOT NULL"
    if by_queue:
        where += f" AND j.queue = {v('queue')}"
    run = _bound_of("a.ended_at - a.started_at")
    wait = _bound_of("a.started_at - j.created_at")
    return (
        f"SELECT j.type, {run}, CASE WHEN a.attempt = 1 THEN {wait} END, count(*)"
        f" FROM {every_attempt(d, attempts)} a JOIN {d.table} j ON j.id = a.job_id WHERE {where} GROUP BY 1, 2, 3"
    )


def cron_slots_query(d: Dialect) -> str:
    """Each cron schedule of table ``tbl`` with its last slot (epoch ms)."""
    return f"SELECT name, last_slot FROM jobq_cron WHERE tbl = {d.value('tbl')} ORDER BY name"


def cron_jobs_query(d: Dialect) -> str:
    """Up to ``limit`` jobs the cron schedule ``name`` enqueued (metadata
    field ``field``, :data:`~jobq.processor.cron.CRON_KEY`), newest first. A
    scan of the job table: an operator's page, not a hot path."""
    from .sql import COLUMNS

    v = d.value
    return (
        f"SELECT {COLUMNS} FROM {d.table} WHERE {d.json_field('field')} = {v('name')}"
        f" ORDER BY created_at DESC, id DESC LIMIT {v('limit')}"
    )
