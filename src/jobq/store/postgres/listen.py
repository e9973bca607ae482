"""Wake-ups from PostgreSQL: ``LISTEN`` on the table's channel.

Enqueue, release, a retry and a rescue send ``pg_notify`` on the table's
channel in their own transaction, so the notification is delivered only if
the change commits. A :class:`Listener` keeps a dedicated connection
listening; while that connection is down, waits poll instead (they return
every :data:`LISTEN_FALLBACK_POLL` seconds) and it reconnects in the
background.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from .resilience import KEEPALIVES

log = logging.getLogger("jobq.store.postgres")

LISTEN_FALLBACK_POLL = 1.0  # seconds between wake-ups while the listening connection is down
LISTEN_RETRY_MIN = 0.1  # seconds before the first attempt to re-listen
LISTEN_RETRY_MAX = 5.0  # seconds between attempts to re-listen, at most
# TCP keepalives on the listening connection, which is otherwise silent for
# long stretches.
LISTEN_KEEPALIVES = KEEPALIVES


class Listener:
    """One connection listening on ``channel``, started by the first wait."""

    def __init__(self, dsn: str, channel: str, *, where: str) -> None:
        self.dsn = dsn
        self.channel = channel
        self.where = where
        self.closed = False
        #: Whether wake-ups currently come from LISTEN (else from polling).
        self.listening = False
        #: Server process id of the listening connection while it is up.
        self.pid: int | None = None
        self._changed: asyncio.Event | None = None
        self._ready: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None

    async def _listen(self) -> None:
        """Keeps a connection listening on the channel, reconnecting with
        backoff whenever it drops; each notification sets ``_changed``."""
        assert self._changed is not None and self._ready is not None
        pause = LISTEN_RETRY_MIN
        first = True
        while not self.closed:
            conn: psycopg.AsyncConnection[Any] | None = None
            try:
                conninfo = make_conninfo(self.dsn, **LISTEN_KEEPALIVES)
                conn = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
                await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel)))
                self.listening = True
                self.pid = conn.info.backend_pid
                self._ready.set()
                if not first:
                    self._changed.set()  # notifications may have been missed meanwhile
                first = False
                pause = LISTEN_RETRY_MIN
                async for _ in conn.notifies():
                    self._changed.set()
            except psycopg.Error as exc:
                if not self.closed:
                    log.warning("listening on PostgreSQL at %s failed (%s); polling", self.where, exc)
            finally:
                was_listening, self.listening, self.pid = self.listening, False, None
                self._ready.set()
                if was_listening:
                    self._changed.set()  # waiters go back to check, then poll
                if conn is not None:
                    with contextlib.suppress(Exception):
                        await conn.close()
            if self.closed:
                return
            await asyncio.sleep(pause)
            pause = min(pause * 2, LISTEN_RETRY_MAX)

    async def _start(self, timeout: float) -> None:
        if self._task is not None:
            return
        self._changed = asyncio.Event()
        self._ready = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._listen(), name="jobq-pg-listen")
        # The first wait starts listening before it waits, so a change made
        # right after this call is not missed.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout)

    async def wait(self, timeout: float) -> bool:
        """Returns ``True`` when a notification arrives on the channel (or
        the listening connection dropped or came back, when some may have
        been missed), ``False`` after ``timeout`` seconds (at most
        :data:`LISTEN_FALLBACK_POLL` while the listening connection is down)."""
        if self.closed:
            return False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        await self._start(timeout)
        changed = self._changed
        assert changed is not None
        if changed.is_set():
            changed.clear()
            return True
        remaining = deadline - loop.time()
        if not self.listening:
            remaining = min(remaining, LISTEN_FALLBACK_POLL)
        if remaining <= 0:
            return False
        try:
            await asyncio.wait_for(changed.wait(), remaining)
        except TimeoutError:
            return False
        changed.clear()
        return True

    async def close(self) -> None:
        self.closed = True
        if self._changed is not None:
            self._changed.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
