"""The backend queue classes and opening a queue from a URL."""

from __future__ import annotations

import difflib
import inspect
import os
from collections.abc import Generator
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from .errors import BackendMissing, InvalidURL
from .options import reject_unknown
from .queue import Queue
from .store.memory import MemoryStore
from .store.sqlite import BUSY_TIMEOUT, DURABILITY_MODES, Durability, SQLiteStore

DEFAULT_URL = "sqlite:///jobq.db"
URL_FORMS = "memory://, sqlite:///relative/path.db, sqlite:////absolute/path.db, postgresql://user:pass@host:port/db"

#: The options every queue takes (:class:`~jobq.queue.Queue`), by name.
QUEUE_OPTIONS = frozenset(
    name for name, p in inspect.signature(Queue.__init__).parameters.items() if p.kind is p.KEYWORD_ONLY
)


class MemoryQueue(Queue):
    """Jobs in this process's memory: no files, nothing survives the process.
    A real backend (the contract suite runs on it), handy for tests and
    scripts."""

    def __init__(self, **options: Any) -> None:
        reject_unknown(
            "MemoryQueue", {k: v for k, v in options.items() if k not in QUEUE_OPTIONS}, QUEUE_OPTIONS
        )
        super().__init__(MemoryStore(), **options)


class SQLiteQueue(Queue):
    """Jobs in one SQLite file, shared safely by many processes on one machine.

    ``table`` (default ``"jobs"``, k-msg's table) names the job table;
    ``durability`` is ``"full"`` (default: an enqueue that returned survives
    power loss) or ``"fast"`` (survives crashes of the application, not of the
    machine); ``busy_timeout`` is how many seconds a write may wait for the
    database lock before :class:`jobq.StoreUnavailable` is raised.

    Opening checks the file before changing anything: a ``table`` of another
    shape (another application's, or one keeping its times as text) raises
    :class:`jobq.SchemaMismatch` and leaves the file as it was, journal mode
    included; a k-msg table is adopted and upgraded. ``read_only=True``
    opens it without changing it (no upgrade, no WAL switch; writes fail),
    and needs the table at the current schema version.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] = "jobq.db",
        *,
        table: str = "jobs",
        durability: Durability = "full",
        busy_timeout: float = BUSY_TIMEOUT,
        read_only: bool = False,
        **options: Any,
    ) -> None:
        self.path = os.fspath(path)
        store = SQLiteStore(
            path, table=table, durability=durability, busy_timeout=busy_timeout, read_only=read_only
        )
        super().__init__(store, **options)


class PostgresQueue(Queue):
    """Jobs in PostgreSQL, for workers on many machines.

    ``dsn`` is a libpq connection string or ``postgresql://`` URL. ``table``
    (default ``"kmsg_jobs"``, the table k-msg's PostgreSQL adapter uses) names
    the job table, created or upgraded on open; ``pool_size`` (default 10) is
    the most connections the queue opens, plus one that listens for
    wake-ups; ``pool_timeout`` (default 30) is how many seconds a verb waits
    for a free connection before :class:`jobq.StoreUnavailable` is raised.
    Needs the ``postgres`` extra: ``pip install 'jobq[postgres]'``.
    """

    def __init__(
        self,
        dsn: str,
        *,
        table: str = "kmsg_jobs",
        pool_size: int = 10,
        pool_timeout: float = 30.0,
        **options: Any,
    ) -> None:
        try:
            from .store.postgres import PostgresStore
        except ImportError as exc:
            raise BackendMissing(
                "the PostgreSQL backend needs psycopg 3 and psycopg-pool:"
                f" pip install 'jobq[postgres]' ({exc})"
            ) from None
        super().__init__(
            PostgresStore(dsn, table=table, pool_size=pool_size, pool_timeout=pool_timeout), **options
        )


#: URL query options that jobq reads from a PostgreSQL URL; any other option
#: is a libpq parameter (``sslmode``, ``options``, ...) and stays in the DSN.
POSTGRES_URL_OPTIONS = {
    "table": str,
    "lease": float,
    "foreign_claim_timeout": float,
    "max_payload_bytes": int,
    "pool_size": int,
    "pool_timeout": float,
}


def _postgres_url(url: str) -> tuple[str, dict[str, Any]]:
    """Splits jobq's options off a PostgreSQL URL; returns the DSN left and them."""
    parts = urlsplit(url)
    options: dict[str, Any] = {}
    rest: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        kind = POSTGRES_URL_OPTIONS.get(key)
        if kind is None:
            rest.append((key, value))
            continue
        try:
            options[key] = kind(value)
        except ValueError:
            what = "an int" if kind is int else "a number"
            raise InvalidURL(f"URL option {key}={value!r} is not {what}") from None
    dsn = urlunsplit(parts._replace(query=urlencode(rest, quote_via=quote)))
    return dsn, options


#: URL query options of memory:// and sqlite:// URLs, and how each is read.
URL_OPTIONS: dict[str, dict[str, type]] = {
    "memory": {"lease": float, "foreign_claim_timeout": float, "max_payload_bytes": int},
    "sqlite": {
        "lease": float,
        "foreign_claim_timeout": float,
        "busy_timeout": float,
        "max_payload_bytes": int,
        "table": str,
        "durability": str,
    },
}


def _options(scheme: str, query: str) -> dict[str, Any]:
    known = URL_OPTIONS[scheme]
    options: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        kind = known.get(key)
        if kind is None:
            elsewhere = [name for name, taken in URL_OPTIONS.items() if key in taken] + (
                ["postgresql"] if key in POSTGRES_URL_OPTIONS else []
            )
            close = difflib.get_close_matches(key, known, n=1)
            hint = (
                f" (it is for {' and '.join(f'{n}://' for n in elsewhere)} URLs)"
                if elsewhere
                else (f"; did you mean {close[0]!r}?" if close else "")
            )
            raise InvalidURL(f"unknown URL option {key!r} for {scheme}://{hint} (known: {', '.join(known)})")
        if key == "durability" and value not in DURABILITY_MODES:
            raise InvalidURL(f"durability={value!r}: use one of {', '.join(DURABILITY_MODES)}")
        try:
            options[key] = kind(value)
        except ValueError:
            what = "an int" if kind is int else "a number"
            raise InvalidURL(f"URL option {key}={value!r} is not {what}") from None
    return options


def open_queue(url: str, **options: Any) -> Queue:
    """Builds the queue a URL names (synchronously; see :func:`connect`)."""
    if not isinstance(url, str):
        raise InvalidURL(f"a queue URL is a str, not {type(url).__name__}")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "memory":
        return MemoryQueue(**{**_options("memory", parts.query), **options})
    if scheme == "sqlite":
        # sqlite:///rel.db -> "rel.db"; sqlite:////abs.db -> "/abs.db";
        # percent-escapes decoded (sqlite:///my%20jobs.db -> "my jobs.db")
        try:
            path = unquote(url.split("://", 1)[1].split("?", 1)[0], errors="strict")
        except UnicodeDecodeError:
            raise InvalidURL(f"{url!r}: its path's percent-escapes are not UTF-8") from None
        if path.startswith("/"):
            path = path[1:]
        if parts.netloc:
            raise InvalidURL(f"{url!r}: a SQLite URL has three slashes: sqlite:///path.db")
        if not path:
            raise InvalidURL(f"{url!r} names no file: use sqlite:///path.db")
        merged = {**_options("sqlite", parts.query), **options}
        return SQLiteQueue(path, **merged)
    if scheme in ("postgresql", "postgres"):
        dsn, url_options = _postgres_url(url)
        return PostgresQueue(dsn, **{**url_options, **options})
    raise InvalidURL(f"unknown queue URL scheme in {url!r}; use one of: {URL_FORMS}")


class _Opening:
    """What :func:`connect` returns: await it for the queue, or use it as an
    async context manager that closes the queue on exit."""

    def __init__(self, url: str, options: dict[str, Any]) -> None:
        self._url = url
        self._options = options
        self._queue: Queue | None = None

    async def _open(self) -> Queue:
        import asyncio

        # Opening a file and migrating its schema blocks: keep it off the loop.
        return await asyncio.to_thread(open_queue, self._url, **self._options)

    def __await__(self) -> Generator[Any, None, Queue]:
        return self._open().__await__()

    async def __aenter__(self) -> Queue:
        self._queue = await self._open()
        return self._queue

    async def __aexit__(self, *exc: object) -> None:
        if self._queue is not None:
            await self._queue.close()


def connect(url: str = DEFAULT_URL, **options: Any) -> _Opening:
    """Opens the queue ``url`` names: ``memory://``, ``sqlite:///path.db``
    (the default: ``sqlite:///jobq.db``), or a PostgreSQL URL. ``options`` go
    to the backend class (``lease``, ``clock``, ``durability``, ...)."""
    return _Opening(url, options)
