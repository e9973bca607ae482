"""The figures the dashboard charts, and the rules that make them: which
attempt outcomes count as failures, the time buckets of each window, the
duration buckets run times and queue ages are counted in, and the
percentiles read from those counts.

Failures are counted from the attempt history, not from the jobs' current
status: a retried job keeps the failures of its earlier attempts, so
"Retry all failed" cannot empty the failure chart. The stores aggregate
(``GROUP BY`` bucket); :func:`outcome_counts` and :func:`duration_counts`
are the same aggregation over rows in memory, for the in-memory store.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .job import JobRecord

#: Attempt outcomes that count as a failure in the charts: the handler
#: raised (and was retried or failed for good), ran past its timeout, or
#: its worker was lost.
FAILED_OUTCOMES: tuple[str, ...] = ("failed", "retry", "timed_out", "lease_lost")

#: Upper bounds (ms) of the buckets run times and queue ages are counted in;
#: a percentile is reported as the bound of the bucket it falls in.
DURATION_BOUNDS_MS: tuple[int, ...] = (
    1, 2, 5, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 30_000, 60_000, 120_000, 300_000,
    600_000, 1_800_000, 3_600_000, 21_600_000, 86_400_000,
)  # fmt: skip
#: The bound reported for a duration past the last bucket.
PAST_LAST_BOUND = 0


@dataclass(frozen=True, slots=True)
class Window:
    """A chart's window: how far back and the bucket size (both ms)."""

    name: str
    span_ms: int
    bucket_ms: int
    unit: str  # what one bucket is called on the axis


#: Per minute over the last hour, or per hour over the last day.
WINDOWS: dict[str, Window] = {
    "hour": Window("hour", 3_600_000, 60_000, "minute"),
    "day": Window("day", 86_400_000, 3_600_000, "hour"),
}


def bucket_of(ms: int, bucket_ms: int) -> int:
    return ms // bucket_ms * bucket_ms


def bound_of(duration_ms: int) -> int:
    """The :data:`DURATION_BOUNDS_MS` bucket a duration falls in."""
    for bound in DURATION_BOUNDS_MS:
        if duration_ms <= bound:
            return bound
    return PAST_LAST_BOUND


def outcome_counts(rows: Iterable[tuple[int, str]], *, since_ms: int, bucket_ms: int) -> list[tuple[int, int, int]]:
    """(bucket start, completed, failed) from (ended_at, outcome) rows, as the
    SQL stores' ``outcomes`` aggregate them."""
    buckets: dict[int, list[int]] = {}
    for ended_at, outcome in rows:
        if ended_at < since_ms:
            continue
        counts = buckets.setdefault(bucket_of(ended_at, bucket_ms), [0, 0])
        if outcome == "completed":
            counts[0] += 1
        elif outcome in FAILED_OUTCOMES:
            counts[1] += 1
    return [(b, done, failed) for b, (done, failed) in sorted(buckets.items())]


def duration_counts(
    rows: Iterable[tuple[str, int, int, int | None, int]], *, since_ms: int
) -> list[tuple[str, str, int, int]]:
    """(type, measure, bound, count) from (type, created_at, attempt,
    started_at, ended_at) rows, as the SQL stores' ``durations`` aggregate them."""
    counts: dict[tuple[str, str, int], int] = {}
    for job_type, created_at, attempt, started_at, ended_at in rows:
        if ended_at < since_ms or started_at is None:
            continue
        run = (job_type, "run", bound_of(ended_at - started_at))
        counts[run] = counts.get(run, 0) + 1
        if attempt == 1:
            wait = (job_type, "wait", bound_of(started_at - created_at))
            counts[wait] = counts.get(wait, 0) + 1
    return [(*key, n) for key, n in sorted(counts.items())]


def fold_durations(rows: Iterable[tuple[Any, Any, Any, Any]]) -> list[tuple[str, str, int, int]]:
    """(type, measure, bound, count) from the SQL stores' one-pass rows of
    (type, run bound, wait bound or ``None``, count)."""
    counts: dict[tuple[str, str, int], int] = {}
    for job_type, run, wait, n in rows:
        for measure, bound in (("run", run), ("wait", wait)):
            if bound is not None:
                key = (str(job_type), measure, int(bound))
                counts[key] = counts.get(key, 0) + int(n)
    return [(*key, n) for key, n in sorted(counts.items())]


def percentile(counts: Mapping[int, int], fraction: float) -> int | None:
    """The bucket bound at or under which ``fraction`` of the counted
    durations fall (``None`` when nothing was counted; ``PAST_LAST_BOUND``
    sorts last)."""
    total = sum(counts.values())
    if total == 0:
        return None
    order = sorted(counts, key=lambda b: (b == PAST_LAST_BOUND, b))
    needed = fraction * total
    seen = 0
    for bound in order:
        seen += counts[bound]
        if seen >= needed:
            return bound
    return order[-1]


def percentiles(rows: Iterable[tuple[str, str, int, int]]) -> dict[str, dict[str, Any]]:
    """Per job type: p50 and p95 (ms, bucket bounds) of ``run`` and ``wait``,
    and how many were counted, from ``durations`` rows."""
    hist: dict[str, dict[str, dict[int, int]]] = {}
    for job_type, measure, bound, n in rows:
        hist.setdefault(str(job_type), {}).setdefault(str(measure), {})[int(bound)] = int(n)
    out: dict[str, dict[str, Any]] = {}
    for job_type, measures in sorted(hist.items()):
        out[job_type] = {
            m: {"p50": percentile(measures.get(m, {}), 0.5), "p95": percentile(measures.get(m, {}), 0.95),
                "count": sum(measures.get(m, {}).values())}
            for m in ("run", "wait")
        }  # fmt: skip
    return out


#: The metadata field naming the cron schedule that enqueued a job
#: (:data:`jobq.processor.cron.CRON_KEY`, which imports the optional croniter).
CRON_FIELD = "jobq.cron"


def made_by_schedule(records: Iterable[JobRecord], name: str, limit: int) -> list[JobRecord]:
    """Up to ``limit`` of ``records`` the cron schedule ``name`` enqueued,
    newest first, as the SQL stores' ``cron_jobs`` select them."""
    import json

    def schedule_of(record: JobRecord) -> Any:
        try:
            metadata = json.loads(record.metadata or "null")
        except ValueError:
            return None
        return metadata.get(CRON_FIELD) if isinstance(metadata, dict) else None

    made = [r for r in records if schedule_of(r) == name]
    made.sort(key=lambda r: (r.created_at, r.id), reverse=True)
    return made[:limit]



#: An attempt as the figures read it: (job, attempt, started_at, ended_at, outcome).
Ended = tuple["JobRecord", int, Any, int, str]


def every_attempt(
    jobs: Iterable[JobRecord], history: Mapping[str, Sequence[Sequence[Any]]], queue: str | None
) -> list[Ended]:
    """Every attempt of the ``jobs`` in ``queue`` (any when ``None``): the
    history's rows (``AttemptRecord`` order), and each completed job's last
    attempt, read from its row, since a completion adds no history row
    (:func:`jobq.transitions.completed`). The SQL stores read the same with
    :func:`jobq.store.figures_sql.every_attempt`."""
    found: list[Ended] = []
    for job in jobs:
        if queue is not None and job.queue != queue:
            continue
        for row in history.get(job.id, ()):
            if row[6] != "completed":
                found.append((job, row[2], row[4], row[5], row[6]))
        if job.status == "completed" and job.completed_at is not None:
            found.append((job, job.attempts + 1, job.started_at, job.completed_at, "completed"))
    return found
