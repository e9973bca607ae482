"""Fixtures for the PostgreSQL-only tests: a fresh schema per test on the
server ``JOBQ_TEST_POSTGRES_URL`` names (the tests that need one skip without
it), and a factory of queues that closes them before the schema is dropped."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import pytest
from suite_parts import NO_POSTGRES, POSTGRES_URL

import jobq

MakePg = Callable[..., Awaitable[jobq.PostgresQueue]]


def with_search_path(url: str, schema: str) -> str:
    parts = urlsplit(url)
    option = "options=" + quote(f"-csearch_path={schema}", safe="")
    return urlunsplit(parts._replace(query=f"{parts.query}&{option}" if parts.query else option))


@pytest.fixture
def server_url() -> str:
    if not POSTGRES_URL:
        pytest.skip(NO_POSTGRES)
    return POSTGRES_URL


@pytest.fixture
def pg_admin(server_url: str) -> Iterator[Any]:
    """A plain autocommit psycopg connection to the test database."""
    import psycopg

    with psycopg.connect(server_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def pg_schema(pg_admin: Any) -> Iterator[str]:
    from psycopg import sql

    schema = f"jobq_pt_{secrets.token_hex(6)}"
    pg_admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    yield schema
    pg_admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def pg_url(server_url: str, pg_schema: str) -> str:
    """A URL whose search_path starts with this test's own schema."""
    return with_search_path(server_url, pg_schema)


@pytest.fixture
async def make_pg(pg_url: str) -> AsyncIterator[MakePg]:
    opened: list[jobq.Queue] = []

    async def make(**options: Any) -> jobq.PostgresQueue:
        queue = jobq.PostgresQueue(pg_url, **options)
        opened.append(queue)
        return queue

    yield make
    for queue in opened:
        await queue.close()
