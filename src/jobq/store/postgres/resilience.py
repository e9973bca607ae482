"""The PostgreSQL store's connections, and how its verbs ride out outages.

- psycopg 3 (async) over a :class:`psycopg_pool.AsyncConnectionPool`, opened
  on first use in the caller's event loop. Connections run in autocommit;
  a verb that needs more than one statement wraps them in one transaction.
- A verb marked :func:`resilient` that meets a transient error (the server
  restarting or unreachable, a connection dropped) tries again after
  :data:`RETRY_MIN` seconds, doubling up to :data:`RETRY_MAX`, until
  ``pool_timeout`` seconds have passed since it began; then it raises
  :class:`~jobq.errors.StoreUnavailable`. The first error of an outage tests
  the pool's idle connections, so broken ones are replaced together.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, TypeVar, cast

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ...errors import JobqError, QueueClosed, StoreUnavailable

log = logging.getLogger("jobq.store.postgres")

POOL_SIZE = 10  # most connections the pool opens
POOL_TIMEOUT = 30.0  # seconds a verb waits for a pooled connection before StoreUnavailable
CONNECT_TIMEOUT = 10  # seconds to establish one connection, unless the DSN says otherwise
RETRY_MIN = 0.05  # seconds before the first retry of a verb
RETRY_MAX = 2.0  # seconds between retries of a verb, at most
# seconds a pooled connection keeps retrying to reconnect with the pool's own
# doubling backoff before it gives up; the next verb that needs a connection
# starts a fresh attempt, so the wait between attempts stays short.
RECONNECT_TIMEOUT = 5.0
# TCP keepalives: a dead peer is noticed in about idle + interval * count s.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}
# Pooled connections: keepalives, and at most 20 s for sent data to go
# unacknowledged, so a verb on a connection to a vanished host fails (and is
# retried) instead of hanging; the DSN's own settings win.
POOL_TCP = {**KEEPALIVES, "tcp_user_timeout": 20_000}


class Transient(StoreUnavailable):
    """A transient failure inside a verb: the verb may be tried again."""


# When the verb running in this task gives up (event-loop time); bounds how
# long it waits for a pooled connection.
_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("jobq_pg_deadline", default=None)

# Whether the verb running in this task is a retry (its first attempt may
# have committed unseen).
_RETRIED: contextvars.ContextVar[bool] = contextvars.ContextVar("jobq_pg_retried", default=False)


def retried() -> bool:
    """Whether the verb running in this task is a retry: its first attempt
    may have committed, and only its reply was lost."""
    return _RETRIED.get()


def describe(params: dict[str, Any]) -> str:
    """Where a DSN points, for messages (never the password)."""
    host = params.get("host") or params.get("hostaddr") or "localhost"
    port = params.get("port") or "5432"
    return f"{host}:{port}/{params.get('dbname') or params.get('user') or ''}"


#: After a retry, may turn the error a verb met into the outcome its
#: committed first attempt had: ``(True, value)``, or ``(False, None)``.
Settler = Callable[[Exception], Awaitable[tuple[bool, Any]]]


class Connections:
    """The pool of one store, and the retry loop of its verbs."""

    def __init__(self, dsn: str, *, where: str, name: str, size: int, timeout: float) -> None:
        self.dsn = dsn
        self.where = where
        self.size = size
        self.timeout = timeout
        self.closed = False
        self._name = name
        self._pool: AsyncConnectionPool[Any] | None = None
        self._pool_lock: asyncio.Lock | None = None
        self._outage = False  # a verb is retrying after a transient error
        self._checking = False  # the pool's idle connections are being tested

    async def _get_pool(self) -> AsyncConnectionPool[Any]:
        if self.closed:
            raise QueueClosed()
        if self._pool is not None:
            return self._pool
        if self._pool_lock is None:
            self._pool_lock = asyncio.Lock()
        async with self._pool_lock:
            if self._pool is None:
                params = conninfo_to_dict(self.dsn)
                tcp = {key: value for key, value in POOL_TCP.items() if key not in params}
                pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
                    make_conninfo(self.dsn, **tcp),
                    min_size=1,
                    max_size=self.size,
                    timeout=self.timeout,
                    kwargs={"autocommit": True},
                    reconnect_timeout=RECONNECT_TIMEOUT,
                    name=self._name,
                    open=False,
                )
                await pool.open()
                self._pool = pool
        return self._pool

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """A pooled connection, waited for until the running verb's
        deadline; a connection error inside is :class:`Transient`."""
        pool = await self._get_pool()
        deadline = _DEADLINE.get()
        timeout = None if deadline is None else max(0.0, deadline - asyncio.get_running_loop().time())
        try:
            async with pool.connection(timeout=timeout) as conn:
                yield conn
        except PoolTimeout:
            raise StoreUnavailable(
                f"no connection to PostgreSQL at {self.where} within {self.timeout:g} s"
            ) from None
        except psycopg.errors.ProgramLimitExceeded:
            raise  # a row too large for an index: the same statement fails again
        except psycopg.OperationalError as exc:
            raise Transient(f"PostgreSQL at {self.where}: {exc}".strip()) from None

    async def fetchall(self, query: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """One statement on a pooled connection (autocommit), its rows."""
        async with self.connection() as conn:
            cur = await conn.execute(query, params)
            return await cur.fetchall()

    async def call(
        self,
        attempt: Callable[[], Awaitable[Any]],
        *,
        may_retry: Callable[[], bool] | None = None,
        settle: Settler | None = None,
    ) -> Any:
        """Runs ``attempt`` until it succeeds, fails for a reason that is not
        transient, or ``timeout`` seconds pass (see :func:`resilient`)."""
        loop = asyncio.get_running_loop()
        deadline = _DEADLINE.get()
        own = deadline is None
        if own:
            deadline = loop.time() + self.timeout
        reset = _DEADLINE.set(deadline) if own else None
        pause, retried = RETRY_MIN, False
        try:
            while True:
                try:
                    outcome = await attempt()
                except Transient as exc:
                    if self.closed or (may_retry is not None and not may_retry()):
                        raise StoreUnavailable(str(exc)) from None
                    remaining = deadline - loop.time()  # type: ignore[operator]
                    if remaining <= 0:
                        raise StoreUnavailable(
                            f"{exc}; still failing after {self.timeout:g} s of retries"
                        ) from None
                    if not self._outage:
                        self._outage = True
                        log.warning("%s; retrying for up to %g s", exc, self.timeout)
                    await self._check_pool()
                    await asyncio.sleep(min(pause, remaining))
                    if not retried:
                        retried_reset = _RETRIED.set(True)
                    pause, retried = min(pause * 2, RETRY_MAX), True
                    continue
                except JobqError as exc:
                    if retried and settle is not None:
                        settled, value = await settle(exc)
                        if settled:
                            return value
                    raise
                except psycopg.Error as exc:
                    if retried and settle is not None:
                        settled, value = await settle(exc)
                        if settled:
                            return value
                    raise StoreUnavailable(f"PostgreSQL at {self.where}: {exc}".strip()) from None
                if self._outage and retried:
                    self._outage = False
                    log.warning("PostgreSQL at %s is back", self.where)
                return outcome
        finally:
            if reset is not None:
                _DEADLINE.reset(reset)
            if retried:
                _RETRIED.reset(retried_reset)

    async def _check_pool(self) -> None:
        """After a transient error, tests the idle pooled connections once
        (not by every failing verb at once), so the broken ones are replaced
        together instead of failing one verb each."""
        if self._checking or self._pool is None:
            return
        self._checking = True
        try:
            await self._pool.check()
        except Exception as exc:  # noqa: BLE001 - the retry that follows reports
            log.debug("checking pooled connections failed: %s", exc)
        finally:
            self._checking = False

    async def close(self) -> None:
        self.closed = True
        if self._pool is not None:
            await self._pool.close()


class _HasConnections(Protocol):
    connections: Connections


_V = TypeVar("_V", bound=Callable[..., Awaitable[Any]])


def resilient(
    *, retry_if: Callable[[dict[str, Any]], bool] | None = None, settle: str | None = None
) -> Callable[[_V], _V]:
    """Runs a verb again after a transient error (see :data:`RETRY_MIN`).

    A retried verb may find that its earlier attempt committed although the
    reply was lost. Verbs are safe to run again: reads; claims (a claim that
    committed unseen leaves its rows in ``processing`` under a token nobody
    holds, and the lease expiry returns them); fenced writes (the claim is gone
    once the write committed, so a repeat raises ``LeaseLost`` and changes
    nothing); inserts (the ids are chosen before the first attempt). ``retry_if``
    (given the keyword arguments) says when a verb may be retried at all;
    ``settle`` names a method that, after a retry, may turn an error into the
    outcome the committed first attempt had (given the error, the positional
    and the keyword arguments)."""

    def wrap(method: _V) -> _V:
        @functools.wraps(method)
        async def call(self: _HasConnections, *args: Any, **kwargs: Any) -> Any:
            return await self.connections.call(
                lambda: method(self, *args, **kwargs),
                may_retry=None if retry_if is None else lambda: retry_if(kwargs),
                settle=None if settle is None else lambda exc: getattr(self, settle)(exc, args, kwargs),
            )

        return cast(_V, call)

    return wrap
