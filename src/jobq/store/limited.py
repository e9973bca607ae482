"""The claim under per-key limits (:mod:`jobq.keylimits`), once for both SQL stores.

:func:`limited_claim` is the sequence of statements, as a generator: it
yields ``(statement, values)``, is sent back the rows each one returned, and
returns the jobs claimed. Each store runs it inside one transaction of its
own, with its own spelling (:class:`~jobq.store.sql.Dialect`): SQLite's
``BEGIN IMMEDIATE`` serialises claims; PostgreSQL first takes an advisory
lock, so limited claims take turns and each counts what the others took.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from .. import keylimits
from ..job import JobRecord
from .base import ClaimRequest, claimed
from .sql import Dialect, lease_params, limited_candidates_query, limited_take_query, starts_queries

#: A statement and its values.
Step = tuple[str, dict[str, Any]]


def limited_claim(
    d: Dialect, request: ClaimRequest, *, where: str, values: dict[str, Any], starts: str, starts_now: int
) -> Generator[Step, list[Any], list[JobRecord]]:
    """Reads the candidates (the first waiting jobs of each key, round-robin),
    what runs and what started lately, lets :func:`jobq.keylimits.choose`
    pick, leases the chosen jobs and records their starts. ``where`` and
    ``values`` are the filters' and "now"; ``starts`` names the table of
    recent starts, and ``starts_now`` is the time starts are recorded at."""
    limits = request.limits
    values = {
        **values,
        **lease_params(request),
        "per_key": request.limit,
        "cap": keylimits.candidate_cap(request.limit),
    }
    for i, lim in enumerate(limits):
        values[f"type{i}"], values[f"field{i}"] = lim.type, d.json_key(lim.key)
    candidates = [JobRecord(*row) for row in (yield limited_candidates_query(d, where, limits), values)]
    if not candidates:
        return []
    running: list[tuple[str, Any]] = []
    if any(lim.concurrency is not None for lim in limits):
        rows = yield f"SELECT type, metadata FROM {d.table} WHERE status = 'processing'", {}
        running = [(row[0], row[1]) for row in rows]
    forget, read, record = starts_queries(d, starts)
    recent: list[tuple[str, str]] = []
    for lim in keylimits.rate_limits(limits):
        yield forget, {"name": lim.name, "until": starts_now - lim.per_ms}
        recent += [(row[0], row[1]) for row in (yield read, {"name": lim.name})]
    chosen, new_starts = keylimits.choose(
        candidates, request.limit, limits, keylimits.usage(limits, running, recent)
    )
    if not chosen:
        return []
    records = claimed((yield limited_take_query(d), {**values, "ids": d.array([r.id for r in chosen])}))
    if records:
        for name, key in new_starts:
            yield record, {"name": name, "key": key, "at": starts_now}
    return records
