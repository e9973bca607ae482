"""The rules of the dashboard's figures (jobq.figures): duration buckets and
their SQL spelling agree, percentiles from bucket counts, the one-pass rows
folded, the texts an operator reads; and the figures from the sync API."""

from __future__ import annotations

import random
import sqlite3

import pytest

import jobq
from jobq.figures import (
    DURATION_BOUNDS_MS,
    PAST_LAST_BOUND,
    bound_of,
    fold_durations,
    outcome_counts,
    percentile,
)
from jobq.store.figures_sql import _bound_of


def test_the_sql_buckets_are_the_python_buckets() -> None:
    conn = sqlite3.connect(":memory:")
    query = "SELECT " + _bound_of("?1")
    rnd = random.Random(7)
    values = [-1, 0, 1, 2, 3, *DURATION_BOUNDS_MS, *(b + 1 for b in DURATION_BOUNDS_MS)]
    values += [rnd.randrange(10**9) for _ in range(500)]
    for value in values:
        assert conn.execute(query, (value,)).fetchone()[0] == bound_of(value), value
    assert bound_of(DURATION_BOUNDS_MS[-1] + 1) == PAST_LAST_BOUND


def test_percentiles_from_bucket_counts() -> None:
    assert percentile({}, 0.5) is None
    assert percentile({5: 19, 60_000: 1}, 0.5) == 5
    assert percentile({5: 19, 60_000: 1}, 0.95) == 5
    assert percentile({5: 18, 60_000: 2}, 0.95) == 60_000
    assert percentile({PAST_LAST_BOUND: 1, 10: 1}, 0.5) == 10  # past the last bucket sorts last
    assert percentile({PAST_LAST_BOUND: 1, 10: 1}, 0.95) == PAST_LAST_BOUND


def test_one_pass_rows_fold_into_measures() -> None:
    rows = [("a", 5, 1, 3), ("a", 5, None, 2), ("b", 100, 1, 1)]
    assert fold_durations(rows) == [
        ("a", "run", 5, 5), ("a", "wait", 1, 3), ("b", "run", 100, 1), ("b", "wait", 1, 1),
    ]  # fmt: skip
    ended = [(60_500, "completed"), (61_000, "retry"), (10, "released"), (5, "failed")]
    # A bucket with attempts of neither kind is there with zeros, as the SQL stores group it.
    assert outcome_counts(ended, since_ms=0, bucket_ms=60_000) == [(0, 0, 1), (60_000, 1, 1)]
    assert outcome_counts(ended, since_ms=60_000, bucket_ms=60_000) == [(60_000, 1, 1)]


def test_duration_texts() -> None:
    pytest.importorskip("starlette")
    from jobq.web.charts import duration_text

    assert [duration_text(b) for b in (None, 5, 1000, 2000, 60_000, 3_600_000, 86_400_000, PAST_LAST_BOUND)] == [
        "–", "≤ 5 ms", "≤ 1 s", "≤ 2 s", "≤ 1 min", "≤ 1 h", "≤ 1 d", "> 1 d",
    ]  # fmt: skip


def test_the_sync_queue_has_the_figures() -> None:
    with jobq.connect_sync("memory://") as queue:
        queue.enqueue("t", 1)
        job = queue.dequeue()
        assert job is not None
        queue.complete(job, "ok")
        assert sum(r.completed for r in queue.outcomes("hour")) == 1
        assert queue.durations()["t"]["run"]["count"] == 1
        assert queue.cron_slots() == {} and queue.cron_jobs("none") == []
