"""The one source of "now" for every decision about time.

Backends, the processor and the retry policy all ask a :class:`Clock`, so a
test can swap in :class:`FakeClock` and move through delays, leases and
retries without sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the Unix epoch."""
        ...


class SystemClock:
    """Wall-clock time."""

    def now(self) -> float:
        return time.time()


SYSTEM_CLOCK = SystemClock()


class FakeClock:
    """A clock that moves only when told to.

    Listeners registered with :meth:`on_advance` are called after each move,
    which is how a running processor learns that delayed jobs may be due.
    """

    def __init__(self, start: float | datetime = 1_700_000_000.0) -> None:
        self._now = start.timestamp() if isinstance(start, datetime) else float(start)
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        with self._lock:
            self._now += seconds
            listeners = list(self._listeners)
        for listener in listeners:
            listener()
        return self._now

    def set(self, when: float | datetime) -> None:
        target = when.timestamp() if isinstance(when, datetime) else float(when)
        self.advance(max(0.0, target - self._now))

    def on_advance(self, listener: Callable[[], None]) -> Callable[[], None]:
        """Registers ``listener``; returns a function that unregisters it."""
        with self._lock:
            self._listeners.append(listener)

        def unregister() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unregister


def to_ms(seconds: float) -> int:
    """Epoch seconds to the integer milliseconds the stores keep (as k-msg does)."""
    return int(round(seconds * 1000))


EARLIEST = datetime.min.replace(tzinfo=UTC)
LATEST = datetime.max.replace(tzinfo=UTC)


def datetime_of_ms(ms: int | float) -> datetime:
    """Epoch milliseconds as an aware UTC datetime. A stored time beyond what
    a datetime holds (years 1 to 9999; written by another program, since
    jobq bounds every delay) reads as the earliest or latest datetime instead
    of failing every reader of its row."""
    try:
        return datetime.fromtimestamp(ms / 1000, tz=UTC)
    except (OverflowError, ValueError, OSError):
        return LATEST if ms > 0 else EARLIEST


def from_ms(ms: int | float | None) -> datetime | None:
    return None if ms is None else datetime_of_ms(ms)
