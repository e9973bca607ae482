"""Per-key limits: at most N job starts per window, or at most N running, for
each value of a metadata field (a provider, a tenant).

A :class:`KeyLimit` is a processor option, but it is enforced by the store,
inside the claim transaction, so it holds across every worker process that
shares the store and is configured with the same limits:

- a *rate* limit counts the starts recorded in the store's start log (one
  row per start of a limited job, kept for one window);
- a *concurrency* limit counts the jobs of that key the store holds as
  ``processing``, whoever runs them.

Fairness: a limited claim looks at the first waiting jobs of *each* key
(round-robin: the first job of every key, then the second of every key, ...),
not at the first jobs overall, so a key with a huge backlog cannot crowd the
others out of a claim. A job held back by a limit is simply not claimed: it
stays waiting, holds no worker slot and spends no attempt.

This module knows no storage: stores hand it candidate rows and current
usage, and it decides which candidates a claim may take.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import InvalidOption
from .job import JobRecord

#: Most candidate rows one limited claim examines, per job it may claim,
#: plus a fixed allowance; saturated keys beyond it wait for the next claim.
CANDIDATES_PER_SLOT = 20
CANDIDATES_EXTRA = 200
#: Seconds a processor waits before claiming again when concurrency limits
#: alone held every ready job back (a finish elsewhere frees a slot).
CONCURRENCY_POLL = 0.05


@dataclass(frozen=True, kw_only=True)
class KeyLimit:
    """A limit per value of ``metadata[key]``.

    - ``key``: the metadata field whose value names the key (``"provider"``).
    - ``type=None``: the job type it applies to (``None``: every type).
    - ``rate=None`` and ``per=1.0``: at most ``rate`` starts of each key in
      any ``per`` seconds (a sliding window).
    - ``concurrency=None``: at most this many jobs of each key running at once.

    At least one of ``rate`` and ``concurrency`` is required. A job whose
    metadata lacks the field (or whose type differs) is not limited by it.
    """

    key: str
    type: str | None = None
    rate: int | None = None
    per: float = 1.0
    concurrency: int | None = None
    _name: str = field(init=False, repr=False, compare=False, default="")

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not self.key:
            raise InvalidOption(f"KeyLimit key must be a non-empty str (a metadata field), not {self.key!r}")
        if self.type is not None and (not isinstance(self.type, str) or not self.type):
            raise InvalidOption(f"KeyLimit type must be a job type or None, not {self.type!r}")
        if self.rate is None and self.concurrency is None:
            raise InvalidOption("KeyLimit needs rate= (starts per window) or concurrency= (running at once)")
        for name, value in (("rate", self.rate), ("concurrency", self.concurrency)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise InvalidOption(f"KeyLimit {name} must be an int >= 1, not {value!r}")
        per = self.per
        if isinstance(per, bool) or not isinstance(per, (int, float)) or not math.isfinite(per) or per <= 0:
            raise InvalidOption(f"KeyLimit per must be a positive number of seconds, not {per!r}")
        object.__setattr__(self, "_name", f"{self.type or '*'}:{self.key}:{self.rate}/{self.per_ms}")

    @property
    def per_ms(self) -> int:
        return round(self.per * 1000)

    @property
    def name(self) -> str:
        """The identity of this rate limit in the store's start log; processes
        configured with the same limit share its counts."""
        return self._name

    def key_of(self, job_type: str, metadata: Any) -> str | None:
        """The key a job counts under (``metadata`` as a dict or JSON text),
        or ``None`` when this limit does not apply to it."""
        if self.type is not None and job_type != self.type:
            return None
        if isinstance(metadata, str):
            try:
                metadata = json.loads(metadata)
            except ValueError:
                return None
        if not isinstance(metadata, dict) or metadata.get(self.key) is None:
            return None
        return key_text(metadata[self.key])


def key_text(value: Any) -> str:
    """A metadata value as the text a key is stored and compared by."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def check_limits(limits: Iterable[KeyLimit] | None) -> list[KeyLimit]:
    chosen = list(limits or ())
    for limit in chosen:
        if not isinstance(limit, KeyLimit):
            raise InvalidOption(f"limits must be jobq.KeyLimit objects, not {type(limit).__name__}")
    return chosen


def rate_limits(limits: Sequence[KeyLimit]) -> list[KeyLimit]:
    return [limit for limit in limits if limit.rate is not None]


def candidate_cap(limit: int) -> int:
    return limit * CANDIDATES_PER_SLOT + CANDIDATES_EXTRA


@dataclass
class Usage:
    """What the store holds now: running jobs and recent starts per key."""

    running: Counter[tuple[int, str]] = field(default_factory=Counter)
    started: Counter[tuple[int, str]] = field(default_factory=Counter)


def usage(
    limits: Sequence[KeyLimit],
    running: Iterable[tuple[str, Any]],
    starts: Iterable[tuple[str, str]],
) -> Usage:
    """``running``: (type, metadata) of every processing job; ``starts``:
    (limit name, key) of every start inside its limit's window."""
    found = Usage()
    concurrent = [(i, limit) for i, limit in enumerate(limits) if limit.concurrency is not None]
    if concurrent:
        for job_type, metadata in running:
            for i, limit in concurrent:
                key = limit.key_of(job_type, metadata)
                if key is not None:
                    found.running[(i, key)] += 1
    by_name = {limit.name: i for i, limit in enumerate(limits) if limit.rate is not None}
    for name, key in starts:
        index = by_name.get(name)
        if index is not None:
            found.started[(index, key)] += 1
    return found


def choose(
    candidates: Sequence[JobRecord], limit: int, limits: Sequence[KeyLimit], now: Usage
) -> tuple[list[JobRecord], list[tuple[str, str]]]:
    """Takes candidates in the order given (round-robin over keys) while
    every limit that applies leaves room; returns the chosen jobs and the
    (limit name, key) starts to record for them."""
    chosen: list[JobRecord] = []
    starts: list[tuple[str, str]] = []
    for record in candidates:
        if len(chosen) >= limit:
            break
        keys = [(i, lim, lim.key_of(record.type, record.metadata)) for i, lim in enumerate(limits)]
        applying = [(i, lim, key) for i, lim, key in keys if key is not None]
        if any(
            (lim.concurrency is not None and now.running[(i, key)] >= lim.concurrency)
            or (lim.rate is not None and now.started[(i, key)] >= lim.rate)
            for i, lim, key in applying
        ):
            continue
        for i, lim, key in applying:
            if lim.concurrency is not None:
                now.running[(i, key)] += 1
            if lim.rate is not None:
                now.started[(i, key)] += 1
                starts.append((lim.name, key))
        chosen.append(record)
    return chosen, starts


def round_robin(records: Iterable[JobRecord], limits: Sequence[KeyLimit], per_key: int) -> list[JobRecord]:
    """Ready jobs (already in dequeue order) reordered as a limited claim
    examines them: the first of each key combination, then the second, ...;
    at most ``per_key`` of each."""
    seen: Counter[tuple[str | None, ...]] = Counter()
    ranked: list[tuple[int, int, JobRecord]] = []
    for position, record in enumerate(records):
        combo = tuple(limit.key_of(record.type, record.metadata) for limit in limits)
        seen[combo] += 1
        if seen[combo] <= per_key:
            ranked.append((seen[combo], position, record))
    ranked.sort(key=lambda item: (item[0], item[1]))
    return [record for _, _, record in ranked]


def wait_hint(limits: Sequence[KeyLimit]) -> float:
    """Seconds after which a claim held back by these limits may succeed."""
    waits = [limit.per / limit.rate for limit in limits if limit.rate is not None]
    if any(limit.concurrency is not None for limit in limits):
        waits.append(CONCURRENCY_POLL)
    return max(min(waits, default=CONCURRENCY_POLL), 0.005)
