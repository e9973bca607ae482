"""jobq under store faults, at CI size: a full disk (SQLite), PostgreSQL
restarts and an outage, and a long run whose resources must stay flat.

The process tests run the scenarios of ``bench/chaos`` (``disk_full``,
``pg_outage``, ``long_run``; ``python -m bench.chaos`` runs them at full
size) and assert what each promises; the modules explain the faults and
the bounds. The PostgreSQL outage scenario starts a server of its own with
``.ci/postgres.sh`` on another port than the shared test server: it runs
wherever PostgreSQL's server binaries are installed, and is skipped
without them (``make test`` installs them, and fails any skip). The last test is the regression test of the bug the disk-full
scenario found, in one process.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from suite_parts import NO_POSTGRES_BINARIES, POSTGRES_URL, postgres_param

import jobq

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # bench/ lives at the repository root, beside src/
    sys.path.insert(0, str(ROOT))

from bench.chaos import disk_full, long_run, pg_outage  # noqa: E402
from bench.chaos.harness import Backend, Result, format_table  # noqa: E402

BACKENDS = ["sqlite", postgres_param()]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    with Backend(request.param, POSTGRES_URL or None) as chosen:
        yield chosen


def explain(results: list[Result]) -> str:
    lines = [format_table(results)]
    for r in results:
        lines += [f"{r.scenario} on {r.backend}: {failure}" for failure in r.failures]
    return "\n".join(lines)


# -- 9: disk full ------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("durability", ["full", "fast"])
def test_disk_full_refuses_enqueues_and_loses_nothing(tmp_path: Path, durability: str) -> None:
    size = disk_full.SIZES["ci"]
    with Backend("sqlite") as backend:
        [result] = disk_full.run(backend, tmp_path, size, durabilities=(durability,))
    details = result.details
    assert result.faults == size.episodes
    assert details["refusals"] >= size.episodes, explain([result])
    assert details["refusal_messages"], explain([result])  # the producer's refusals, each a StoreUnavailable
    assert result.lost == 0, explain([result])
    assert details["integrity_check"] == "ok", explain([result])
    assert details["exit_codes"] == {"w0": 0, "producer": 0}, explain([result])
    assert result.duplicated <= details["results_not_recorded"], explain([result])
    assert result.max_recovery is not None, explain([result])
    assert result.ok, explain([result])


def test_single_backend_scenarios_give_no_rows_for_the_other(tmp_path: Path) -> None:
    """The runner calls every scenario once per backend: disk full is SQLite's
    alone, and the outage scenario brings its own PostgreSQL server (it must
    not start one for the SQLite pass)."""
    with Backend("postgres", "postgresql://unused") as backend:
        assert disk_full.run(backend, tmp_path, disk_full.SIZES["ci"]) == []
    with Backend("sqlite") as backend:
        assert pg_outage.run(backend, tmp_path, pg_outage.SIZES["ci"]) == []
    assert not list(tmp_path.iterdir())


# -- 6: PostgreSQL restarts and an outage ----------------------------------


@pytest.mark.slow
def test_postgres_restarts_and_outage_lose_nothing_and_keep_workers(tmp_path: Path) -> None:
    if pg_outage.postgres_bin() is None:
        pytest.skip(NO_POSTGRES_BINARIES)
    size = pg_outage.SIZES["ci"]
    result = pg_outage.run_private(tmp_path, size)
    details = result.details
    assert result.faults == size.restarts + 1
    assert result.lost == 0, explain([result])
    assert details["workers_alive_at_end"] == [f"w{i}" for i in range(size.workers)], explain([result])
    outage = next(f for f in details["faults"] if f["kind"] == "outage")
    assert outage["refused"] >= 1, explain([result])
    assert details["refusal_kinds"] == ["StoreUnavailable"], explain([result])
    assert result.ok, explain([result])


# -- 13: long run ----------------------------------------------------------


@pytest.mark.slow
def test_long_run_keeps_memory_files_and_threads_flat(backend: Backend, tmp_path: Path) -> None:
    size = long_run.SIZES["ci"]
    [result] = long_run.run(backend, tmp_path, size)
    warm, end = result.details["warm"], result.details["end"]
    assert result.lost == 0 and result.duplicated == 0, explain([result])
    assert end["rss"] <= warm["rss"] + max(warm["rss"] // 5, 10 * long_run.MIB), explain([result])
    assert end["fds"] <= warm["fds"] + size.slack, explain([result])
    assert end["threads"] <= warm["threads"] + size.slack, explain([result])
    assert result.ok, explain([result])


# -- a regression found by the disk-full scenario --------------------------


@pytest.fixture
def capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, int]]:
    """A SQLite file that every connection of this process opens with
    ``PRAGMA max_page_count`` (as the scenario's processes do)."""
    path = str(tmp_path / "capped.db")
    cap = 200
    real_connect = sqlite3.connect

    def connect(database: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn = real_connect(database, *args, **kwargs)
        if os.path.realpath(str(database)) == os.path.realpath(path):
            conn.execute(f"PRAGMA max_page_count = {cap}")
        return conn

    monkeypatch.setattr(sqlite3, "connect", connect)
    yield path, cap


@pytest.mark.parametrize("durability", ["full", "fast"])
@pytest.mark.parametrize("many", [False, True], ids=["enqueue", "enqueue_many"])
async def test_enqueue_on_a_full_database_raises_store_unavailable_naming_the_cause(
    capped: tuple[str, int], durability: str, many: bool
) -> None:
    """After SQLITE_FULL, SQLite may have rolled the whole transaction back
    itself; a ROLLBACK then fails with "cannot rollback - no transaction is
    active". SQLiteStore used to issue it anyway: with durability="full" the
    StoreUnavailable named that error instead of the full disk, and with
    "fast" the raw sqlite3.OperationalError escaped (the disk-full scenario's
    producer, catching jobq.JobqError, died of it). An insert that needs new
    pages (a large payload, or a batch) is the case where SQLite rolls back
    the whole transaction."""
    path, cap = capped
    async with jobq.connect(f"sqlite:///{path}?durability={durability}") as queue:
        await queue.enqueue("before", {"n": 1})
        disk_full.fill(path, cap)
        with pytest.raises(jobq.StoreUnavailable, match="database or disk is full"):
            if many:
                await queue.enqueue_many([jobq.NewJob("refused", {"pad": "x" * 2000}) for _ in range(20)])
            else:
                await queue.enqueue("refused", {"pad": "x" * 20_000})
        disk_full.free(path)
        after = await queue.enqueue("after", {"pad": "x" * 20_000})  # space is back: the same queue works
        assert {job.type for job in (await queue.list_jobs(limit=10)).jobs} == {"before", "after"}
        assert (await queue.get_job(after.id)) is not None
    assert disk_full.integrity(path) == "ok"
