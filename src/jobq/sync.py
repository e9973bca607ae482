"""A synchronous twin of the queue, for code that is not async (Django views,
scripts, a REPL).

It owns an event loop on a background thread and runs each verb there, so
the queue behaves exactly as it does for async callers.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from .backends import DEFAULT_URL, open_queue
from .queue import Queue

R = TypeVar("R")


class SyncQueue:
    """The queue verbs as plain methods: ``enqueue``, ``dequeue``,
    ``complete``, ``fail``, ``peek``, ``size``, ``get_job``, ``remove``,
    ``clear``, ``cleanup_terminal``, ``close`` and the rest of
    :class:`jobq.Queue`'s coroutine methods. Also a context manager."""

    def __init__(self, queue: Queue) -> None:
        self.queue = queue
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="jobq-sync", daemon=True)
        self._thread.start()
        self._closed = False

    def _call(self, coro: Coroutine[Any, Any, R]) -> R:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.queue, name)
        if not inspect.iscoroutinefunction(attr):
            return attr

        @functools.wraps(attr)
        def call(*args: Any, **kwargs: Any) -> Any:
            return self._call(attr(*args, **kwargs))

        return call

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._call(self.queue.close())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def __enter__(self) -> SyncQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<SyncQueue {self.queue!r}>"


def connect_sync(url: str = DEFAULT_URL, **options: Any) -> SyncQueue:
    """Opens the queue ``url`` names, with every verb as a plain method."""
    return SyncQueue(open_queue(url, **options))

