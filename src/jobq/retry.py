"""Retry policies: how long a failed job waits before its next attempt.

A policy maps ``attempts`` (failed attempts before the one that just failed,
i.e. ``job.attempts`` as dequeued) to a delay in seconds.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from .codec import check_delay
from .errors import InvalidOption

RETRY_DELAYS: tuple[float, ...] = (1, 5, 15, 60)  # seconds, k-msg's defaults


@runtime_checkable
class RetryPolicy(Protocol):
    def delay(self, attempts: int) -> float:
        """Seconds to wait before the next attempt."""
        ...


@dataclass(frozen=True)
class FixedDelays:
    """k-msg's schedule: attempt ``n`` waits ``delays[min(n, len - 1)]`` seconds."""

    delays: Sequence[float] = RETRY_DELAYS

    def __post_init__(self) -> None:
        if not self.delays:
            raise InvalidOption("retry_delays must hold at least one delay")
        checked = tuple(check_delay(d, "retry delay", InvalidOption) for d in self.delays)
        object.__setattr__(self, "delays", checked)

    def delay(self, attempts: int) -> float:
        return self.delays[min(max(attempts, 0), len(self.delays) - 1)]


@dataclass(frozen=True)
class ExponentialBackoff:
    """``base * factor ** attempts`` seconds, capped at ``max_delay``, with
    "full jitter" spread: the delay is drawn uniformly from
    ``[(1 - jitter) * d, d]``, so many jobs failing together do not retry in
    lockstep (``jitter=0`` gives the plain curve)."""

    base: float = 1.0  # seconds before the second attempt
    factor: float = 2.0
    max_delay: float = 3600.0  # seconds
    jitter: float = 1.0  # 0..1, the share of the delay that is randomised
    rng: random.Random = field(default_factory=random.Random, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (self.base >= 0 and self.factor >= 1 and self.max_delay >= 0):
            raise InvalidOption("ExponentialBackoff needs base >= 0, factor >= 1, max_delay >= 0")
        check_delay(self.max_delay, "max_delay", InvalidOption)
        if not 0 <= self.jitter <= 1:
            raise InvalidOption(f"jitter must be between 0 and 1, not {self.jitter!r}")

    def delay(self, attempts: int) -> float:
        exponent = max(attempts, 0)
        if self.base == 0 or self.max_delay == 0:
            ceiling = 0.0
        elif exponent * math.log(self.factor) >= math.log(self.max_delay / self.base):
            # Decided in log space: factor ** attempts overflows long before the cap.
            ceiling = self.max_delay
        else:
            ceiling = self.base * self.factor**exponent
        return ceiling - self.jitter * ceiling * self.rng.random()
