"""Shared fixtures. ``queue`` is parametrised over every backend, so each
test in ``tests/contract`` runs against all of them.

PostgreSQL runs when ``JOBQ_TEST_POSTGRES_URL`` names a database the tests
may use (``make test`` starts a server and sets it), and is skipped, saying
so, otherwise. Each test then gets a schema of its own, named after its
``tmp_path`` and dropped when the test ends, so a test sees only its own
tables, like a fresh SQLite file.

``make test`` sets ``JOBQ_TEST_NO_SKIPS=1``: it has installed every part the
suite needs, so there a skipped test fails the run (as under CI, when ``CI``
is set). The run's header says whether PostgreSQL's tests run.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import pytest
from suite_parts import NO_POSTGRES, POSTGRES_URL, postgres_param

import jobq

BACKENDS = ["memory", "sqlite", postgres_param()]

# Processes the tests start (the CLI, workers) import the jobq under test,
# whatever their working directory and however PYTHONPATH named it.
_SRC = str(Path(jobq.__file__).resolve().parents[1])
os.environ["PYTHONPATH"] = os.pathsep.join([_SRC, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))])

# Schemas created by backend_url during the running test, dropped after it.
_pg_schemas: set[str] = set()


def postgres_schema_url(schema: str) -> str:
    """JOBQ_TEST_POSTGRES_URL with ``schema`` created and first on the search_path."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    _pg_schemas.add(schema)
    parts = urlsplit(POSTGRES_URL)
    option = "options=" + quote(f"-csearch_path={schema}", safe="")
    query = f"{parts.query}&{option}" if parts.query else option
    return urlunsplit(parts._replace(query=query))


def drop_postgres_schemas() -> None:
    if not _pg_schemas:
        return
    import psycopg
    from psycopg import sql

    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        while _pg_schemas:
            conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(_pg_schemas.pop()))
            )


@pytest.fixture(autouse=True)
def _drop_postgres_schemas() -> Iterator[None]:
    """Drops the PostgreSQL schemas a test created, after its other fixtures
    (which close their queues) are torn down."""
    yield
    drop_postgres_schemas()


MakeQueue = Callable[..., Awaitable[jobq.Queue]]


def backend_url(backend: str, tmp_path: Path) -> str:
    if backend == "memory":
        return "memory://"
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.db'}"
    if backend == "postgres":
        # One schema per test, as SQLite has one file per test.
        return postgres_schema_url("jobq_t_" + hashlib.sha1(str(tmp_path).encode()).hexdigest()[:16])
    raise ValueError(backend)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clock() -> jobq.FakeClock:
    return jobq.FakeClock()


@pytest.fixture
async def make_queue(backend: str, tmp_path: Path) -> AsyncIterator[MakeQueue]:
    """Opens queues on the test's backend (one shared file for SQLite) and
    closes them at the end."""
    opened: list[jobq.Queue] = []

    async def make(**options: Any) -> jobq.Queue:
        queue = await jobq.connect(backend_url(backend, tmp_path), **options)
        opened.append(queue)
        return queue

    yield make
    for queue in opened:
        await queue.close()


@pytest.fixture
async def queue(make_queue: MakeQueue, clock: jobq.FakeClock) -> jobq.Queue:
    """A fresh queue on each backend, on a fake clock."""
    return await make_queue(clock=clock)


@pytest.fixture
def queue_url(backend: str, tmp_path: Path) -> str:
    """The URL of the test's backend (a fresh file for SQLite)."""
    return backend_url(backend, tmp_path)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``shared_store`` need a store that several queue objects or
    processes share, which an in-memory store is not: they are not generated
    for it (rather than skipped)."""
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        memory = callspec is not None and callspec.params.get("backend") == "memory"
        (drop if memory and item.get_closest_marker("shared_store") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


# -- under make test, a skip is a failure --------------------------------------

# Under CI (CI set, as CI services do) too: a CI run that lacks a part fails
# loudly instead of passing with tests left out.
NO_SKIPS = os.environ.get("JOBQ_TEST_NO_SKIPS") == "1" or os.environ.get("CI", "") not in ("", "0", "false")
_skipped: list[str] = []


def _note_skip(report: pytest.CollectReport | pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        _skipped.append(f"{report.nodeid}: {reason.removeprefix('Skipped: ')}")


def pytest_report_header(config: pytest.Config) -> str:
    """Says at the top of every run whether PostgreSQL's tests will run."""
    if POSTGRES_URL:
        return f"PostgreSQL: {POSTGRES_URL}"
    return "PostgreSQL: NONE; its tests are skipped (" + NO_POSTGRES + ")"


def pytest_collectreport(report: pytest.CollectReport) -> None:
    _note_skip(report)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _note_skip(report)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if NO_SKIPS and _skipped and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if NO_SKIPS and _skipped:
        terminalreporter.section("skipped, which fails the run under make test (JOBQ_TEST_NO_SKIPS=1)", red=True)
        for line in _skipped:
            terminalreporter.line(line)
