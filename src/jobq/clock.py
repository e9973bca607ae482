"""The one source of "now" for every decision about time.

Backends, the processor and the retry policy all ask a :class:`Clock`, so a
test can swap in :class:`FakeClock` and move through delays, leases and
retries without sleeping.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
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
    Moves add up in decimal, as written: a thousand ``advance(0.001)`` make
    one second exactly, not a float sum that drifts off the millisecond.
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
        return self._move(lambda now: float(Decimal(repr(now)) + Decimal(repr(float(seconds)))))

    def set(self, when: float | datetime) -> None:
        """Moves to ``when``, or stays put if it is behind."""
        target = when.timestamp() if isinstance(when, datetime) else float(when)
        self._move(lambda now: max(now, target))

    def _move(self, to: Callable[[float], float]) -> float:
        with self._lock:
            self._now = moved = to(self._now)
            listeners = list(self._listeners)
        for listener in listeners:
            listener()
        return moved

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
    """A span of seconds (a delay, a lease) to whole milliseconds, rounded."""
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


def now_ms(clock: Clock) -> int:
    """The clock's time in the integer epoch milliseconds the stores keep,
    floored as k-msg's ``Date.now()`` floors it: a job due at ``process_at``
    is ready once the millisecond ``process_at`` has begun, never in the
    millisecond before it. (A float clock holds about a microsecond; the
    time is rounded to the microsecond first, so that ``FakeClock`` steps
    such as ``advance(0.001)`` land on the millisecond they name.)"""
    return math.floor(round(clock.now() * 1000, 3))


def from_ms(ms: int | float | None) -> datetime | None:
    return None if ms is None else datetime_of_ms(ms)
