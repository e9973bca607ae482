"""The optional PostgreSQL column: which server, and one fresh schema per
measurement.

``JOBQ_BENCH_POSTGRES_URL`` (or, when unset, ``JOBQ_TEST_POSTGRES_URL``)
names the server. Each measurement gets a schema of its own, created here
and put first on the ``search_path`` through the URL's ``options``
parameter, so jobq creates its job table, ``jobq_schema`` row, starts table
and helper function in it; ``DROP SCHEMA ... CASCADE`` removes them all
afterwards, as the SQLite columns delete their database file.
"""

from __future__ import annotations

import os
import secrets
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

ENV_VARS = ("JOBQ_BENCH_POSTGRES_URL", "JOBQ_TEST_POSTGRES_URL")
SCHEMA_PREFIX = "jobq_bench_"
#: Server settings recorded with the results (they decide what a commit costs).
SETTINGS = ("server_version", "fsync", "synchronous_commit", "full_page_writes", "wal_sync_method")


def server_url() -> tuple[str, str] | None:
    """The URL to benchmark and the variable it came from, or None."""
    for name in ENV_VARS:
        value = os.environ.get(name, "").strip()
        if value:
            return value, name
    return None


def admin_dsn(url: str) -> str:
    """The URL without jobq's own query options (``table``, ``lease``, ...),
    for a plain psycopg connection."""
    from jobq.backends import POSTGRES_URL_OPTIONS

    parts = urlsplit(url)
    rest = [
        (k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k not in POSTGRES_URL_OPTIONS
    ]
    return urlunsplit(parts._replace(query=urlencode(rest, quote_via=quote)))


def redacted(url: str) -> str:
    """The URL with any password replaced, for logs and the JSON file."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


def with_schema(url: str, schema: str) -> str:
    """``url`` with ``schema`` first on the search_path (appended to any
    ``options`` the URL already passes to the server)."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    flag = f"-csearch_path={schema}"
    for i, (key, value) in enumerate(query):
        if key == "options":
            query[i] = (key, f"{value} {flag}")
            break
    else:
        query.append(("options", flag))
    return urlunsplit(parts._replace(query=urlencode(query, quote_via=quote)))


class Server:
    """One connection to the server, kept for the run, that creates and drops
    the per-measurement schemas."""

    def __init__(self, url: str, source: str) -> None:
        import psycopg

        if urlsplit(url).scheme.lower() not in ("postgresql", "postgres"):
            raise ValueError("not a postgresql:// URL")
        self.url = url
        self.source = source
        self._psycopg = psycopg
        self._conn = self._connect()
        self.settings: dict[str, Any] = {
            name: self._conn.execute(f"SHOW {name}").fetchone()[0]  # type: ignore[index]
            for name in SETTINGS
        }
        self._tag = f"{os.getpid()}_{secrets.token_hex(3)}"
        self._count = 0

    def _connect(self) -> Any:
        conn = self._psycopg.connect(admin_dsn(self.url), autocommit=True, connect_timeout=10)
        conn.execute("SET lock_timeout = '30s'")
        return conn

    def _execute(self, query: Any) -> None:
        """Runs ``query``, reconnecting once if the connection was lost (a
        server restarted by someone else sharing it costs one cell, not the
        rest of the run)."""
        try:
            self._conn.execute(query)
        except self._psycopg.OperationalError:
            if not self._conn.closed and not self._conn.broken:
                raise
            self._conn.close()
            self._conn = self._connect()
            self._conn.execute(query)

    def fresh(self) -> tuple[str, str]:
        """A new empty schema; returns (its name, the URL that uses it)."""
        from psycopg import sql

        self._count += 1
        schema = f"{SCHEMA_PREFIX}{self._tag}_{self._count}"
        self._execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        return schema, with_schema(self.url, schema)

    def drop(self, schema: str) -> None:
        from psycopg import sql

        self._execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))

    def describe(self) -> dict[str, Any]:
        return {"url": redacted(self.url), "from": self.source, **self.settings}

    def durable(self) -> bool:
        return self.settings.get("fsync") == "on" and self.settings.get("synchronous_commit") != "off"

    def close(self) -> None:
        self._conn.close()
