"""Waking idle workers in other processes when a SQLite file gets new work.

SQLite has no notifications between processes. Its ``PRAGMA data_version``
moves whenever another connection commits, and reading it costs no lock, so a
worker can poll it; but a poll interval is a latency floor, and a short one
costs CPU in every idle worker. On Linux, jobq's writers therefore also touch
a small file next to the database (``<database>-jobq-wake``) after committing
work, and idle workers watch that file with inotify: they wake within
microseconds of the commit. The touch comes after the commit, so a woken
worker always finds the change visible. Polling stays as the fallback, for
writers that do not touch the file (k-msg's) and for systems without inotify.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any

log = logging.getLogger("jobq")

SUFFIX = "-jobq-wake"

try:  # Linux only; the dependency is declared for Linux alone.
    import inotify_simple  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover - other systems
    inotify_simple = None

#: Whether this system can watch the wake file (Linux, with inotify_simple).
WATCHABLE = inotify_simple is not None


class WakeFile:
    """The touch-file of one database: :meth:`touch` after committing work,
    :meth:`event` to learn of touches from any process on this machine."""

    def __init__(self, database: str) -> None:
        self.path = database + SUFFIX
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
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o666)
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
            if not os.path.exists(self.path):
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o666))
            watcher = inotify_simple.INotify(nonblocking=True)
            try:
                watcher.add_watch(self.path, inotify_simple.flags.MODIFY)
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
        log.debug("jobq: cannot use %s for wake-ups (%s); polling instead", self.path, exc)
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
