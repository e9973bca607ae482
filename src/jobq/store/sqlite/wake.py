"""Waking idle workers in other processes when a SQLite file gets new work.

SQLite has no notifications between processes. Its ``PRAGMA data_version``
moves whenever another connection commits, and reading it costs no lock, so a
worker can poll it; but a poll interval is a latency floor, and a short one
costs CPU in every idle worker. On Linux, jobq's writers therefore also touch
a small file next to the database (``<database>-jobq-wake`` for the default
table ``jobs``, ``<database>-jobq-wake-<table>`` for any other, so job
tables sharing a file wake only their own workers) after committing work,
and idle workers watch that file with inotify: they wake within microseconds
of the commit. The touch comes after the commit, so a woken
worker always finds the change visible. Polling stays as the fallback, for
writers that do not touch the file (k-msg's) and for systems without inotify:
:class:`ChangeWatch` reads ``data_version`` from a connection of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import sqlite3
import stat
from collections.abc import Callable
from typing import Any

log = logging.getLogger("jobq")

SUFFIX = "-jobq-wake"
WAKE_POLL_MIN = 0.001  # seconds between data_version checks while the file is busy
WAKE_POLL_MAX = 0.010  # seconds between checks once idle: bounds cross-process wake-up delay
WAKE_BUSY_SPAN = 1.0  # seconds after the last change seen during which the file counts as busy

try:  # Linux only; the dependency is declared for Linux alone.
    import inotify_simple  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover - other systems
    inotify_simple = None

#: Whether this system can watch the wake file (Linux, with inotify_simple).
WATCHABLE = inotify_simple is not None


DEFAULT_TABLE = "jobs"  # the table whose wake file carries no table name (as before tables had their own)


def wake_path(database: str, table: str = DEFAULT_TABLE) -> str:
    """The wake file of one job table of a database."""
    table = table.lower()  # SQLite's names ignore case: "Jobs" is "jobs"
    return database + SUFFIX + ("" if table == DEFAULT_TABLE else f"-{table}")


#: How the wake file is opened: never through a symlink (a touch would write
#: into whatever it points at), never waiting (opening a FIFO for writing
#: blocks until someone reads it), never inherited by child processes.
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK


class NotRegularFile(OSError):
    """The wake file's path holds something else than a regular file."""


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISLNK, "a symlink"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISDIR, "a directory"),
        (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device"),
    ):  # fmt: skip
        if test(mode):
            return name
    return "not a regular file"


def open_wake_file(path: str) -> int:
    """A descriptor for writing the wake file at ``path``, created if it is
    missing. Raises :class:`NotRegularFile` if the path is a symlink, a FIFO,
    a device or anything but a regular file (nothing is written to it), and
    ``OSError`` if it cannot be opened."""
    try:
        fd = os.open(path, _OPEN_FLAGS, 0o666)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO, errno.EISDIR, errno.EOPNOTSUPP):
            # ELOOP: a symlink (O_NOFOLLOW); ENXIO: a FIFO nobody reads.
            try:
                kind = _kind(os.lstat(path).st_mode)
            except OSError:
                raise exc from None
            raise NotRegularFile(f"{path} is {kind}") from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFile(f"{path} is {_kind(mode)}")
        os.set_blocking(fd, True)  # a regular file never blocks; keep writes plain
    except BaseException:
        os.close(fd)
        raise
    return fd


class WakeFile:
    """The touch-file of one job table: :meth:`touch` after committing work,
    :meth:`event` to learn of touches from any process on this machine.

    A path that holds anything but a regular file (a symlink, a FIFO) is
    left alone, with a warning: workers then learn of new work by polling."""

    def __init__(self, database: str, table: str = DEFAULT_TABLE) -> None:
        self.path = wake_path(database, table)
        self._fd: int | None = None  # opened for writing on the first touch
        self._broken = False  # the file cannot be written or watched: poll only
        self._inotify: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._touched: asyncio.Event | None = None

    def touch(self) -> None:
        """Tells watching workers that work may be ready. Never raises: a
        file that cannot be written leaves them to their polling."""
        if self._broken:
            return
        try:
            if self._fd is None:
                self._fd = open_wake_file(self.path)
            os.pwrite(self._fd, b"\0", 0)  # one byte, rewritten: the file never grows
        except OSError as exc:
            self._give_up(exc)

    def event(self) -> asyncio.Event | None:
        """An event set on the running loop whenever the file is touched, or
        ``None`` when touches cannot be watched here."""
        if self._broken or not WATCHABLE:
            return None
        loop = asyncio.get_running_loop()
        if self._loop is loop and self._touched is not None:
            return self._touched
        self._stop_watching()
        try:
            os.close(open_wake_file(self.path))  # created if missing; refused unless a regular file
            watcher = inotify_simple.INotify(nonblocking=True)
            try:
                watcher.add_watch(self.path, inotify_simple.flags.MODIFY | inotify_simple.flags.DONT_FOLLOW)
            except OSError:
                watcher.close()
                raise
        except OSError as exc:
            self._give_up(exc)
            return None
        touched = asyncio.Event()

        def drain() -> None:
            with contextlib.suppress(OSError):
                watcher.read(timeout=0)
            touched.set()

        loop.add_reader(watcher.fileno(), drain)
        self._inotify, self._loop, self._touched = watcher, loop, touched
        return touched

    def _give_up(self, exc: OSError) -> None:
        if isinstance(exc, NotRegularFile):
            log.warning("%s; it is left alone, and workers poll for new work instead", exc)
        else:
            log.debug("cannot use %s for wake-ups (%s); polling instead", self.path, exc)
        self._broken = True
        self.close()

    def _stop_watching(self) -> None:
        if self._inotify is None:
            return
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(self._inotify.fileno())
        self._inotify.close()
        self._inotify = self._loop = self._touched = None

    def close(self) -> None:
        self._stop_watching()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class ChangeWatch:
    """Learns that another connection committed: ``PRAGMA data_version``,
    read from a connection of its own (``watch``), and the wake file's
    touches where they can be watched."""

    def __init__(self, watch: sqlite3.Connection, wake_file: WakeFile, *, closed: Callable[[], bool]) -> None:
        self._watch = watch
        self._wake_file = wake_file
        self._closed = closed  # whether the store closed: waits end
        self._last_version = self._data_version()
        self._changed_at = float("-inf")  # event-loop time of the last change a wait saw

    def _data_version(self) -> int:
        return int(self._watch.execute("PRAGMA data_version").fetchone()[0])

    async def wait(self, timeout: float) -> bool:
        """Returns when another connection committed (``PRAGMA data_version``
        moved): ``True`` when a jobq writer announced it by touching the wake
        file, ``False`` when a poll saw it or ``timeout`` passed. Where
        touches are watched, the poll runs every 10 ms, for writers that do
        not touch the file; elsewhere every millisecond while the file is
        busy and every 10 ms once it is quiet."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        touched = self._wake_file.event()
        announced = False
        while not self._closed():
            if touched is not None:
                touched.clear()  # before the check: a touch after it ends the wait
            version = self._data_version()
            now = loop.time()
            if version != self._last_version:
                self._last_version = version
                self._changed_at = now
                return announced
            remaining = deadline - now
            if remaining <= 0:
                return False
            if touched is not None:
                try:
                    await asyncio.wait_for(touched.wait(), min(WAKE_POLL_MAX, remaining))
                    announced = True
                except TimeoutError:
                    pass
                continue
            # Every millisecond while jobs are flowing (a wake-up then costs
            # at most about 1 ms); every 10 ms once the file has been quiet
            # for a second, so an idle worker costs next to nothing.
            busy = now - self._changed_at < WAKE_BUSY_SPAN
            await asyncio.sleep(min(WAKE_POLL_MIN if busy else WAKE_POLL_MAX, remaining))
        return False

    def close(self) -> None:
        self._watch.close()
        self._wake_file.close()
