"""jobq's delivery promises under real faults, at CI size.

Each test runs one scenario of ``bench/chaos`` (the same code that
``python -m bench.chaos`` runs at full size) with real worker processes on
SQLite, and on PostgreSQL when JOBQ_TEST_POSTGRES_URL is set, and asserts
what the scenario promises. The scenarios themselves, and why each bound is
what it is, are described in their modules; here the promises are spelled
out once more as assertions, and a failure prints the scenario's table row
and the broken promises.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from suite_parts import POSTGRES_URL, postgres_param

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # bench/ lives at the repository root, beside src/
    sys.path.insert(0, str(ROOT))

from bench.chaos import (  # noqa: E402
    blocked_loop,
    contention,
    kill_points,
    kills,
    neighbours,
    paused,
    poison,
    shutdown,
)
from bench.chaos.harness import Backend, Result, format_table  # noqa: E402

BACKENDS = ["sqlite", postgres_param()]

pytestmark = pytest.mark.slow


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """A backend whose stores (SQLite files, PostgreSQL schemas) are the test's own."""
    with Backend(request.param, POSTGRES_URL or None) as chosen:
        yield chosen


def explain(results: list[Result]) -> str:
    lines = [format_table(results)]
    for r in results:
        lines += [f"{r.scenario} on {r.backend}: {failure}" for failure in r.failures]
    return "\n".join(lines)


def test_contention_loses_and_duplicates_nothing(backend: Backend, tmp_path: Path) -> None:
    [result] = contention.run(backend, tmp_path, contention.SIZES["ci"])
    assert result.lost == 0, explain([result])
    assert result.duplicated == 0, explain([result])
    assert not result.details["locked"], explain([result])
    assert result.ok, explain([result])


@pytest.mark.parametrize("point", kill_points.RERUN_EXPECTED)
def test_kill_at_exact_point(backend: Backend, tmp_path: Path, point: str) -> None:
    """Killed after the claim, inside the handler, or before the completion is
    written: the job runs again exactly once. Killed after the completion is
    written: never again."""
    [result] = kill_points.run(backend, tmp_path, kill_points.SIZES["ci"], points=(point,))
    assert result.lost == 0, explain([result])
    assert (
        result.duplicated
        == kill_points.VICTIM_EXECUTIONS[point] * result.jobs * kill_points.RERUN_EXPECTED[point]
    ), explain([result])
    assert result.ok, explain([result])


def test_random_sigkills_lose_nothing(backend: Backend, tmp_path: Path) -> None:
    size = kills.SIZES["ci"]
    [result] = kills.run(backend, tmp_path, size)
    in_flight = sum(len(held) for _, _, held in result.details["kills"])
    assert result.faults == size.kills
    assert result.lost == 0, explain([result])
    assert result.duplicated <= in_flight, explain([result])
    assert result.max_recovery is None or result.max_recovery <= size.lease + size.rescue_interval + 1.0, (
        explain([result])
    )
    assert result.ok, explain([result])


def test_graceful_shutdown_finishes_short_jobs_and_releases_long_ones(
    backend: Backend, tmp_path: Path
) -> None:
    size = shutdown.SIZES["ci"]
    [result] = shutdown.run(backend, tmp_path, size)
    assert result.lost == 0, explain([result])
    assert not result.details["claims_after_signal"], explain([result])
    assert result.ok, explain([result])


def test_paused_worker_completion_is_rejected(backend: Backend, tmp_path: Path) -> None:
    size = paused.SIZES["ci"]
    [result] = paused.run(backend, tmp_path, size)
    assert result.details["a_outcomes"] == ["LeaseLost"] * size.jobs, explain([result])
    assert result.lost == 0, explain([result])
    assert result.ok, explain([result])


def test_poison_jobs_are_quarantined_or_failed_while_others_flow(backend: Backend, tmp_path: Path) -> None:
    size = poison.SIZES["ci"]
    [result] = poison.run(backend, tmp_path, size)
    assert 1 <= result.faults <= poison.MAX_LOST * size.crash, explain([result])
    assert result.lost == 0, explain([result])
    assert result.ok, explain([result])


def test_a_blocked_event_loop_costs_no_lease(backend: Backend, tmp_path: Path) -> None:
    """Async handlers block their loop for twice the lease: no job runs
    twice or loses a lease, and each blocker is named in a warning."""
    [result] = blocked_loop.run(backend, tmp_path, blocked_loop.SIZES["ci"])
    assert result.lost == 0 and result.duplicated == 0, explain([result])
    assert result.ok, explain([result])


def test_good_jobs_beside_a_crashing_job_are_never_quarantined(backend: Backend, tmp_path: Path) -> None:
    """Crashing jobs among good ones: only the crashing jobs are quarantined."""
    [result] = neighbours.run(backend, tmp_path, neighbours.SIZES["ci"])
    assert result.lost == 0, explain([result])
    assert result.ok, explain([result])
