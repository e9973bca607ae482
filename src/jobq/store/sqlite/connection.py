"""The SQLite store's plumbing: its connections and its database thread.

- WAL journal, so readers never wait for the writer. The switch is made only
  after the file's schema was checked (:func:`.schema.inspect`, on a
  connection from :func:`open_for_reading`), so a file jobq refuses keeps its
  journal mode. A read-only store (``read_only=True``) opens every connection
  that way and never switches.
- Every write is one short ``BEGIN IMMEDIATE`` transaction: it takes the write
  lock up front, so two writers never deadlock upgrading read locks. Waits for
  the lock go through SQLite's busy handler, then a bounded retry (the
  database thread's waits, the hot path's, are short sleeps in Python
  instead: see :data:`LOCK_PAUSE`); a caller
  sees :class:`~jobq.errors.StoreUnavailable` only after ``busy_timeout``
  seconds, never "database is locked".
- Durability: ``"full"`` (the default) syncs the WAL on every commit that
  records something a power loss must not undo: enqueues, completions,
  failures, cancellations. A claim alone is not synced (:meth:`Database.write_unsynced`):
  if a power loss undoes it, the job is waiting again, which is what its
  lease expiring would have made it (the worker went down with the machine);
  the next synced commit makes it durable anyway. A worker's completions,
  written with its next claim (``settle_and_claim`` with
  ``settle_synced=False``), are committed without a sync and synced apart
  (:meth:`Database.sync`) before the processor reports them. ``"fast"``
  (``synchronous=NORMAL``) syncs only at checkpoints: an application or
  worker crash still loses nothing, but a power loss or OS crash can lose the
  last transactions committed before it (enqueues, completions; a lost
  completion means the job runs again).
- Statements run on one thread per store, so the event loop never blocks on
  the file, except those that cannot wait (reads, and writes that need no
  sync while the lock is free), which run on the caller's thread
  (:meth:`Database._run_now`). Reads asked for off the loop
  (:func:`jobq.reads.reads_off_loop`: the dashboard's) run instead on
  reader threads, each with its own connection, so a long count neither
  holds the event loop nor waits behind the database thread's writes, nor
  makes the other reads wait behind it.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, TypeVar, cast

from ...errors import InvalidOption, QueueClosed, StoreUnavailable
from ...reads import OFF_LOOP

R = TypeVar("R")
#: What a statement runs as: given a connection inside its transaction.
Statement = Callable[[sqlite3.Connection], R]

Durability = Literal["full", "fast"]
DURABILITY_MODES: dict[str, str] = {"full": "FULL", "fast": "NORMAL"}

BUSY_TIMEOUT = 30.0  # seconds a write may wait for the lock before giving up
MAX_BUSY_TIMEOUT = 86_400.0  # seconds: the longest busy_timeout accepted (a day)
BUSY_HANDLER_MS = 5_000  # one wait inside SQLite's busy handler, in milliseconds
#: The database thread's waits for the write lock, in seconds: the first, and
#: the longest it doubles to. SQLite's busy handler sleeps 1 ms, then 2, 5,
#: 10 ms and more; a worker's transaction holds the lock a fraction of a
#: millisecond, so two worker processes taking turns would each spend most of
#: their time asleep. The database thread's connection has no busy handler
#: and retries on these shorter waits instead.
LOCK_PAUSE = 0.0001
MAX_LOCK_PAUSE = 0.002
#: Threads running reads asked for off the loop: a slow count (the
#: overview's, in the background) leaves the other threads to the other reads.
READER_THREADS = 3


def _lenient_text(raw: bytes) -> str:
    """Text that is not UTF-8 (written by another program) read with its bad
    bytes as lone surrogates, which the job decoder then reports as corrupt,
    instead of an error that would stop every claim meeting the row."""
    return raw.decode("utf-8", "surrogateescape")


def _roll_back(conn: sqlite3.Connection) -> None:
    """Ends a failed write transaction. SQLite may have rolled it back
    already (after SQLITE_FULL, for one), when a ROLLBACK would fail and hide
    the error that matters."""
    if conn.in_transaction:
        conn.execute("ROLLBACK")


def _is_undecodable(exc: sqlite3.OperationalError) -> bool:
    return "could not decode to utf-8" in str(exc).lower()


def is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def open_for_reading(path: str, *, busy_ms: int = BUSY_HANDLER_MS) -> sqlite3.Connection:
    """A connection whose statements cannot change the file (``PRAGMA
    query_only``), in autocommit, leaving its journal mode alone. Not
    SQLite's ``mode=ro``: that would leave the ``-wal`` and ``-shm`` files of
    a WAL database behind, where a last connection closing removes them.
    The caller makes sure the file exists (opening creates a missing one)."""
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=busy_ms / 1000)
        conn.execute(f"PRAGMA busy_timeout = {busy_ms}")
        conn.execute("PRAGMA query_only = ON")
    except sqlite3.Error as exc:
        raise StoreUnavailable(f"cannot open SQLite database {path!r}: {exc}") from None
    return conn


def _is_damaged(exc: sqlite3.Error) -> bool:
    """A plain ``sqlite3.DatabaseError``: the file is not a database, or is
    damaged ("file is not a database", "database disk image is malformed").
    Its subclasses (constraint errors, misuse) are the caller's to handle."""
    return type(exc) is sqlite3.DatabaseError


def check_path(path: str) -> str:
    """A database path jobq can share between connections and processes."""
    if path in ("", ":memory:"):
        raise InvalidOption(
            f"SQLite database {path!r} would be private to each of the store's connections;"
            " use a file, or memory:// (jobq.MemoryQueue) for jobs in memory"
        )
    if "\x00" in path:
        raise InvalidOption(f"a SQLite database path cannot hold a NUL character: {path!r}")
    return path


def check_busy_timeout(busy_timeout: object) -> float:
    """A busy timeout in seconds jobq can wait (never NaN, never for ever)."""
    if (
        isinstance(busy_timeout, bool)
        or not isinstance(busy_timeout, (int, float))
        or not 0 <= busy_timeout <= MAX_BUSY_TIMEOUT  # False for NaN too
    ):
        raise InvalidOption(
            f"busy_timeout must be a number of seconds from 0 to {MAX_BUSY_TIMEOUT:g}, not {busy_timeout!r}"
        )
    return float(busy_timeout)


class Database:
    """One SQLite file as a store uses it: a connection for the database
    thread, one for statements run on the caller's thread, and the thread."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        durability: Durability,
        busy_timeout: float,
        read_only: bool = False,
    ) -> None:
        if durability not in DURABILITY_MODES:
            raise InvalidOption(
                f"durability {durability!r} is not one of {', '.join(map(repr, DURABILITY_MODES))}"
            )
        self.path = check_path(os.fspath(path))
        self.durability = durability
        self.busy_timeout = check_busy_timeout(busy_timeout)
        self._timeout_ms = round(self.busy_timeout * 1000)
        self.read_only = read_only
        self.closed = False
        #: The database thread: every statement that may wait runs here.
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jobq-sqlite")
        #: Where :meth:`write_then_sync` waits for the disk, off the database thread.
        self._syncer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jobq-sqlite-sync")
        self._conn = self.connect(busy_ms=0)
        #: The reader threads and their connections (one each: WAL readers
        #: run side by side), made on the first read asked for off the loop
        #: (see :meth:`read`).
        self._reader: ThreadPoolExecutor | None = None
        self._reader_local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._reader_lock = threading.Lock()
        # Statements that cannot wait run on the caller's thread, saving the
        # hand-off to the database thread (see _run_now). Its writes are the
        # ones that need no sync, so it never syncs; under "full" it also
        # leaves checkpoints (which sync the database file) to the database
        # thread, whose synced commits run them.
        try:
            self._now_conn = self.connect(busy_ms=0, synchronous="NORMAL")
            if durability == "full":
                self._now_conn.execute("PRAGMA wal_autocheckpoint = 0")
        except BaseException:
            self._conn.close()
            raise

    def connect(self, busy_ms: int = BUSY_HANDLER_MS, synchronous: str | None = None) -> sqlite3.Connection:
        """A new connection to the file, in WAL mode (unless read-only), in
        autocommit. Its busy handler never waits longer than ``busy_timeout``."""
        busy_ms = min(busy_ms, self._timeout_ms)
        if self.read_only:
            conn = open_for_reading(self.path, busy_ms=busy_ms)
            conn.execute(f"PRAGMA synchronous = {synchronous or DURABILITY_MODES[self.durability]}")
            return conn
        try:
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=busy_ms / 1000
            )
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open SQLite database {self.path!r}: {exc}") from None
        try:
            conn.execute(f"PRAGMA busy_timeout = {busy_ms}")
            self._retry_busy(lambda: conn.execute("PRAGMA journal_mode = WAL"))
            conn.execute(f"PRAGMA synchronous = {synchronous or DURABILITY_MODES[self.durability]}")
        except BaseException:
            conn.close()
            raise
        return conn

    # -- the verbs' ways in ----------------------------------------------------

    async def read(self, do: Statement[R]) -> R:
        """Runs ``do`` outside a transaction (WAL readers never wait): on
        the caller's thread, or on a reader thread inside
        :func:`jobq.reads.reads_off_loop`."""
        if OFF_LOOP.get():
            if self.closed:
                raise QueueClosed()
            if self._reader is None:
                self._reader = ThreadPoolExecutor(max_workers=READER_THREADS, thread_name_prefix="jobq-sqlite-read")
            return await asyncio.get_running_loop().run_in_executor(self._reader, self._read_off_loop, do)
        return await self._run(self.read_blocking, do, write=False, inline=True)

    def _read_off_loop(self, do: Statement[R]) -> R:
        """On a reader thread: ``do`` on that thread's connection (opened on first use)."""
        conn: sqlite3.Connection | None = getattr(self._reader_local, "conn", None)
        if conn is None:
            conn = self._reader_local.conn = self.connect()
            with self._reader_lock:
                self._reader_conns.append(conn)
        return self._retry_busy(lambda: do(conn), conn)

    async def write(self, do: Statement[R]) -> R:
        """Runs ``do`` in one ``BEGIN IMMEDIATE`` transaction, synced under
        durability "full"."""
        return await self._run(self.write_blocking, do, write=True, inline=self.durability == "fast")

    async def write_unsynced(self, do: Statement[R], *, inline: bool = True) -> R:
        """:meth:`write` for a transaction a power loss may undo without
        losing anything (a claim), or whose caller syncs it apart
        (:meth:`sync`): under "full", committed without a sync. ``inline``:
        on the caller's thread while the lock is free; else on the database
        thread, whose commits also checkpoint the WAL (the caller's thread
        never does under "full")."""
        return await self._run(self._write_unsynced, do, write=True, inline=inline)

    async def write_then_sync(self, do: Statement[R]) -> R:
        """:meth:`write`, as durable when it returns, with the sync made once
        the write lock is released: the transaction commits without a sync
        (its frames are in the WAL), then the WAL is synced from a thread of
        its own before this returns. Meanwhile other writers, of this process
        or another, take the lock and write, and one sync of the file may
        cover several of their commits (the file system batches concurrent
        syncs), where syncing inside each commit would make them queue for
        the lock one sync at a time. A power loss before the sync ends may
        undo the transaction, but then nobody was told it was done. Under
        "fast": :meth:`write`."""
        if self.durability != "full":
            return await self.write(do)
        result = await self._run(self._write_unsynced, do, write=True, inline=False)
        await self.sync()
        return result

    async def sync(self) -> None:
        """Syncs the WAL, from a thread of its own: every transaction
        committed before the call is durable when it returns. Calls made
        while one sync runs wait on the sync thread for the next, which
        then finds little or nothing left to write."""
        if self.closed:  # closed meanwhile: its sync thread takes no more work
            await asyncio.to_thread(self._sync_wal)
        else:
            await asyncio.get_running_loop().run_in_executor(self._syncer, self._sync_wal)

    def _sync_wal(self) -> None:
        # SQLite keeps the WAL beside the database file a symlink points to.
        real = os.path.realpath(self.path)
        try:
            fd = os.open(real + "-wal", os.O_RDONLY)
        except FileNotFoundError:
            # No WAL: the last connection closed meanwhile, checkpointing it
            # into the database file before removing it, or the file is not
            # in WAL mode. Either way the database file holds the commits.
            try:
                fd = os.open(real, os.O_RDONLY)
            except OSError as exc:
                raise StoreUnavailable(f"cannot sync {self.path!r}: {exc}") from None
        except OSError as exc:
            raise StoreUnavailable(f"cannot sync the WAL of {self.path!r}: {exc}") from None
        try:
            os.fsync(fd)
        except OSError as exc:
            raise StoreUnavailable(f"cannot sync the WAL of {self.path!r}: {exc}") from None
        finally:
            os.close(fd)

    async def _run(
        self, fn: Callable[[Statement[R]], R], do: Statement[R], *, write: bool, inline: bool
    ) -> R:
        if self.closed:
            raise QueueClosed()
        if inline:
            done, result = self._run_now(do, write=write)
            if done:
                return cast(R, result)
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, do)

    # -- on the database thread (or before there is a loop) --------------------

    def _retry_busy(
        self, fn: Callable[[], R], conn: sqlite3.Connection | None = None, *, polled: bool = False
    ) -> R:
        """Runs ``fn``, again while the database is busy, for ``busy_timeout``
        seconds in all. One wait in SQLite's busy handler lasts up to
        :data:`BUSY_HANDLER_MS`, so the try that would outlast the deadline
        gets a handler that waits only the time left (on ``conn``; restored
        after). ``polled``: ``conn`` is the database thread's, which has no
        handler and waits :data:`LOCK_PAUSE` and more between tries."""
        handler_ms = 0 if polled else min(BUSY_HANDLER_MS, self._timeout_ms)
        shortened: list[bool] = []
        try:
            return self._retry_busy_until(fn, conn, time.monotonic() + self.busy_timeout, handler_ms, shortened)
        finally:
            if shortened and conn is not None:
                conn.execute(f"PRAGMA busy_timeout = {handler_ms}")

    def _retry_busy_until(
        self,
        fn: Callable[[], R],
        conn: sqlite3.Connection | None,
        deadline: float,
        handler_ms: int,
        shortened: list[bool],
    ) -> R:
        pause, longest = (LOCK_PAUSE, MAX_LOCK_PAUSE) if handler_ms == 0 else (0.001, 0.05)
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if conn is not None and _is_undecodable(exc) and conn.text_factory is str:
                    # Rare (a row another program wrote), so the lenient
                    # reading is paid for only by the statement that met it.
                    conn.text_factory = _lenient_text
                    try:
                        return self._retry_busy(fn, conn, polled=handler_ms == 0)
                    finally:
                        conn.text_factory = str
                if not is_busy(exc):
                    raise self.failure(exc) from None
                if time.monotonic() >= deadline:
                    raise StoreUnavailable(
                        f"SQLite database {self.path!r} stayed locked for {self.busy_timeout:g} s"
                    ) from None
                time.sleep(pause)
                pause = min(pause * 2, longest)
                left_ms = int((deadline - time.monotonic()) * 1000)
                if conn is not None and left_ms < handler_ms:
                    conn.execute(f"PRAGMA busy_timeout = {max(left_ms, 0)}")
                    shortened.append(True)
            except sqlite3.DatabaseError as exc:
                if _is_damaged(exc):
                    raise self.failure(exc) from None
                raise

    def failure(self, exc: sqlite3.Error) -> BaseException:
        """What a caller gets for a SQLite error that waiting cannot cure: an
        operational error or a damaged file as StoreUnavailable; the others
        (a constraint broken, a misuse) as they are."""
        if isinstance(exc, sqlite3.OperationalError) or _is_damaged(exc):
            return StoreUnavailable(f"SQLite error on {self.path!r}: {exc}")
        return exc

    def write_blocking(self, fn: Statement[R], *, in_transaction: bool = True) -> R:
        """Runs ``fn`` in one ``BEGIN IMMEDIATE`` transaction (or none),
        retrying while busy, on the calling thread."""
        conn = self._conn

        def attempt() -> R:
            if not in_transaction:
                return fn(conn)
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
                conn.execute("COMMIT")
            except BaseException:
                _roll_back(conn)
                raise
            return result

        return self._retry_busy(attempt, conn, polled=True)

    def _write_unsynced(self, fn: Statement[R]) -> R:
        if self.durability != "full":
            return self.write_blocking(fn)
        self._conn.execute("PRAGMA synchronous = NORMAL")
        try:
            return self.write_blocking(fn)
        finally:
            self._conn.execute("PRAGMA synchronous = FULL")

    def read_blocking(self, fn: Statement[R]) -> R:
        return self._retry_busy(lambda: fn(self._conn), self._conn, polled=True)

    # -- on the caller's thread ----------------------------------------------

    def _run_now(self, do: Statement[R], *, write: bool) -> tuple[bool, Any]:
        """Runs ``do`` on the calling thread if it need not wait: a read (WAL
        readers never wait), or a write while nobody holds the write lock.
        This connection's busy timeout is 0, so a held lock answers at once,
        and the statement goes to the database thread, which waits for it.
        Synced writes (durability "full") always go there: their commit waits
        for the disk, which must not stall the event loop."""
        conn = self._now_conn
        try:
            if not write:
                return True, do(conn)
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if is_busy(exc) or _is_undecodable(exc):
                return False, None
            raise StoreUnavailable(f"SQLite error on {self.path!r}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            if _is_damaged(exc):
                raise StoreUnavailable(f"SQLite error on {self.path!r}: {exc}") from None
            raise
        try:
            result = do(conn)
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            _roll_back(conn)
            if is_busy(exc) or _is_undecodable(exc):
                return False, None
            raise StoreUnavailable(f"SQLite error on {self.path!r}: {exc}") from None
        except sqlite3.DatabaseError as exc:
            _roll_back(conn)
            if _is_damaged(exc):
                raise StoreUnavailable(f"SQLite error on {self.path!r}: {exc}") from None
            raise
        except BaseException:
            _roll_back(conn)
            raise
        return True, result

    # -- closing ---------------------------------------------------------------

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        await asyncio.get_running_loop().run_in_executor(self.executor, self._conn.close)
        self.executor.shutdown(wait=True)
        self._syncer.shutdown(wait=True)
        self._now_conn.close()
        self._close_reader()

    def close_sync(self) -> None:
        """Closes from code that has no event loop."""
        if self.closed:
            return
        self.closed = True
        self.executor.submit(self._conn.close).result()
        self.executor.shutdown(wait=True)
        self._syncer.shutdown(wait=True)
        self._now_conn.close()
        self._close_reader()

    def _close_reader(self) -> None:
        """Waits for the reads in flight on the reader threads, then closes their connections."""
        if self._reader is not None:
            self._reader.shutdown(wait=True)
        with self._reader_lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()
