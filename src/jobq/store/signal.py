"""A wake-up that crosses threads and event loops, for the in-memory store
(:mod:`jobq.store.memory`): its jobs are shared by every queue object and
thread of the process, so a finish announced on one loop must wake a waiter
on another."""

from __future__ import annotations

import asyncio
import threading


class Signal:
    """A flag set from any thread that wakes a waiter on any event loop: the
    store is shared by every queue object and thread of the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._set = False
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    def set(self) -> None:
        with self._lock:
            self._set = True
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            if not loop.is_closed():
                loop.call_soon_threadsafe(_resolve, future)

    async def wait(self, timeout: float) -> bool:
        """``True`` once set since the last wait (clearing it), ``False`` after ``timeout``."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._set:
                self._set = False
                return True
            future: asyncio.Future[None] = loop.create_future()
            self._waiters.append((loop, future))
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            with self._lock:
                if (loop, future) in self._waiters:
                    self._waiters.remove((loop, future))
            return False
        with self._lock:
            self._set = False
        return True


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
