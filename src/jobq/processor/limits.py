"""The processor's resilience pieces: a rate limit and a circuit breaker.

Both stay tiny, validate at construction, and never touch a job: the
processor asks them whether it may claim, so a limited or broken job type
stays waiting in the store, holding no worker slot and spending no attempt.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum

from ..errors import InvalidOption


def _positive(name: str, value: object, *, integer: bool = False) -> None:
    number = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not number:
        ok = False
    else:
        ok = math.isfinite(value) and value > 0
    if not ok:
        kind = "a positive int" if integer else "a positive number"
        raise InvalidOption(f"{name} must be {kind}, not {value!r}")


@dataclass
class RateLimit:
    """At most ``max_requests`` job starts in any ``window_seconds`` window,
    for one processor (a sliding window of start times)."""

    max_requests: int
    window_seconds: float
    _starts: deque[float] = field(default_factory=deque, init=False, repr=False)

    def __post_init__(self) -> None:
        _positive("max_requests", self.max_requests, integer=True)
        _positive("window_seconds", self.window_seconds)

    def _trim(self, now: float) -> None:
        while self._starts and self._starts[0] <= now - self.window_seconds:
            self._starts.popleft()

    def available(self, now: float) -> int:
        """How many jobs may start now."""
        self._trim(now)
        return self.max_requests - len(self._starts)

    def wait_time(self, now: float) -> float:
        """Seconds until one more job may start (0 if one may now)."""
        self._trim(now)
        if len(self._starts) < self.max_requests:
            return 0.0
        return self._starts[0] + self.window_seconds - now

    def record(self, now: float, count: int = 1) -> None:
        self._starts.extend([now] * count)


class CircuitState(StrEnum):
    CLOSED = "closed"
    """Jobs run normally."""
    OPEN = "open"
    """Too many failures in a row: jobs of this type are not claimed."""
    HALF_OPEN = "half_open"
    """After ``reset_timeout``: one trial job may run; its outcome closes or
    reopens the circuit."""


@dataclass
class CircuitBreaker:
    """Stops claiming a job type after ``failure_threshold`` failures in a row.

    ``timeout``: seconds a guarded handler may run before it counts as a
    failure (as in k-msg). ``reset_timeout``: seconds the circuit stays open
    before a trial job is let through. The processor keeps one breaker state
    per job type.
    """

    failure_threshold: int = 5
    timeout: float = 30.0  # seconds
    reset_timeout: float = 60.0  # seconds

    def __post_init__(self) -> None:
        _positive("failure_threshold", self.failure_threshold, integer=True)
        _positive("timeout", self.timeout)
        _positive("reset_timeout", self.reset_timeout)


@dataclass
class Circuit:
    """The state of one job type's breaker."""

    config: CircuitBreaker
    state: CircuitState = CircuitState.CLOSED
    failures: int = 0
    opened_at: float = 0.0
    trial_running: bool = False

    def allows_claim(self, now: float) -> bool:
        if self.state is CircuitState.OPEN and now - self.opened_at >= self.config.reset_timeout:
            self.state = CircuitState.HALF_OPEN
        if self.state is CircuitState.HALF_OPEN:
            return not self.trial_running
        return self.state is CircuitState.CLOSED

    def start(self) -> bool:
        """A job of this type is about to run; ``False`` if it must wait."""
        if self.state is CircuitState.CLOSED:
            return True
        if self.state is CircuitState.HALF_OPEN and not self.trial_running:
            self.trial_running = True
            return True
        return False

    def success(self) -> None:
        self.state, self.failures, self.trial_running = CircuitState.CLOSED, 0, False

    def abandon_trial(self) -> None:
        """The job neither succeeded nor failed (it was snoozed, retried or
        cancelled by its handler): a half-open circuit lets another trial run."""
        self.trial_running = False

    def failure(self, now: float) -> None:
        self.trial_running = False
        self.failures += 1
        if self.state is CircuitState.HALF_OPEN or self.failures >= self.config.failure_threshold:
            self.state, self.opened_at = CircuitState.OPEN, now
