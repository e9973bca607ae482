"""Statements of the operators' side that both SQL stores share, beside
:mod:`jobq.store.sql`: the paused queues' table (see
:meth:`jobq.Queue.pause`), the operators' reads (counts per status, the
summary, the pages of ``list_jobs``) and the search filters of
``list_jobs`` (see :class:`~jobq.store.base.Search`)."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from ..errors import InvalidOption
from ..job import JobStatus
from .sql import COLUMNS, Dialect, delayed, public_status, ready


def paused_table(integer: str) -> str:
    """The paused queues of each job table (see :meth:`jobq.Queue.pause`), with
    when each was paused (epoch ms); ``integer`` is the type that holds it.
    Created on first use, beside the versioned job table, like ``jobq_cron``."""
    return (
        "CREATE TABLE IF NOT EXISTS jobq_paused (tbl TEXT NOT NULL, queue TEXT NOT NULL,"
        f" paused_at {integer} NOT NULL, PRIMARY KEY (tbl, queue))"
    )


def pause_query(d: Dialect) -> str:
    """Pauses queue ``queue`` of table ``tbl`` at ``at``; no row when it already was."""
    v = d.value
    return (
        f"INSERT INTO jobq_paused (tbl, queue, paused_at) VALUES ({v('tbl')}, {v('queue')}, {v('at')})"
        " ON CONFLICT (tbl, queue) DO NOTHING"
    )


def resume_query(d: Dialect) -> str:
    return f"DELETE FROM jobq_paused WHERE tbl = {d.value('tbl')} AND queue = {d.value('queue')}"


def paused_query(d: Dialect) -> str:
    return f"SELECT queue, paused_at FROM jobq_paused WHERE tbl = {d.value('tbl')} ORDER BY queue"


def search_clauses(d: Dialect, search: Any, params: dict[str, Any]) -> list[str]:
    """The clauses of a :class:`~jobq.store.base.Search` (filling ``params``):
    the text as a case-blind ``LIKE`` on the payload and the error, its
    wildcards escaped, as :meth:`~jobq.store.base.Search.matches` reads it.
    A scan of the rows the other filters leave: a search, not a hot path."""
    clauses: list[str] = []
    if search.ids is not None:
        clauses.append(d.among("id", "search_ids"))
        params["search_ids"] = d.array(list(search.ids))
    if search.unique_key is not None:
        clauses.append(f"unique_key = {d.value('unique_key')}")
        params["unique_key"] = search.unique_key
    if search.text is not None:
        text = d.value("text")
        clauses.append(f"(lower(data) LIKE {text} ESCAPE '!' OR lower(error) LIKE {text} ESCAPE '!')")
        escaped = search.text.lower().replace("!", "!!").replace("%", "!%").replace("_", "!_")
        params["text"] = f"%{escaped}%"
    return clauses


# -- the operators' reads ---------------------------------------------------------


def count_by_status_query(d: Dialect) -> str:
    """Jobs per public status. Counted per stored status (an index on
    status answers it without reading the rows), then the delayed ones moved
    out of ``pending`` (counted on the index of waiting jobs): the public
    status of each row would need every row read."""
    t, late = d.table, delayed(d.now)
    return (
        f"SELECT s, sum(n) FROM (SELECT status AS s, count(*) AS n FROM {t} GROUP BY status"
        f" UNION ALL SELECT 'delayed', count(*) FROM {t} WHERE {late}"
        f" UNION ALL SELECT 'pending', -count(*) FROM {t} WHERE {late}) AS c GROUP BY s HAVING sum(n) > 0"
    )


def summary_query(d: Dialect, *, statuses: Collection[str] | None = None) -> str:
    """Jobs per queue, type and public status; with ``statuses`` (stored
    ones), only the rows in those, found on the status index: the
    unfinished few of a table of a million finished jobs. The statuses are
    written into the statement, not given as a list value: SQLite's planner
    cannot see through a list value (``json_each``) and reads every row."""
    where = ""
    if statuses is not None:
        known = {s.value for s in JobStatus}
        unknown = sorted(set(statuses) - known)
        if unknown:
            raise InvalidOption(f"not a job status: {', '.join(map(repr, unknown))}")
        where = f" WHERE status IN ({', '.join(repr(s) for s in sorted(statuses)) or 'NULL'})"
    return (
        f"SELECT queue, type, {public_status(d.now)} AS s, count(*) FROM {d.table}{where}"
        f" GROUP BY queue, type, s ORDER BY queue, type, s"
    )


def oldest_ready_query(d: Dialect, *, by_queue: bool) -> str:
    """The ready job (of queue ``queue`` with ``by_queue``) that has been
    ready longest: the earliest due (``process_at``, which a retry moves to
    its own time), not the earliest created. Read among the waiting rows
    only (the status index), so a table of finished jobs costs it nothing."""
    where = ready(d.now) + (f" AND queue = {d.value('queue')}" if by_queue else "")
    return f"SELECT {COLUMNS} FROM {d.table} WHERE {where} ORDER BY process_at, created_at, id LIMIT 1"


def list_jobs_queries(
    d: Dialect,
    *,
    statuses: Collection[str] | None,
    types: Collection[str] | None,
    queues: Collection[str] | None,
    newest_first: bool,
    search: Any = None,
    after: bool = False,
) -> tuple[str, str, dict[str, Any]]:
    """A page of jobs by created_at (ties by id; values ``limit`` and
    ``offset``), the count of all that match, and the values of the filters.
    ``statuses`` are public ones: ``delayed`` and ``pending`` apart;
    ``search`` (a :class:`~jobq.store.base.Search`) adds its filters.
    ``after``: the page starts past the row (values ``after_at``,
    ``after_id``) in the page's order, a keyset cursor that an index walks
    to, where an offset counts every row before it."""
    clauses: list[str] = []
    params: dict[str, Any] = {}
    if statuses is not None:
        either: list[str] = []
        if "pending" in statuses:
            either.append(f"({ready(d.now)})")
        if "delayed" in statuses:
            either.append(f"({delayed(d.now)})")
        stored = sorted(set(statuses) - {"pending", "delayed"})
        if stored:
            either.append(d.among("status", "statuses"))
            params["statuses"] = d.array(stored)
        clauses.append("(" + (" OR ".join(either) or "1 = 0") + ")")
    for column, values in (("type", types), ("queue", queues)):
        if values is not None:
            clauses.append(d.among(column, column + "s"))
            params[column + "s"] = d.array(list(values))
    if search is not None:
        clauses += search_clauses(d, search, params)
    where = " WHERE " + " AND ".join(clauses) if clauses else ""
    direction = "DESC" if newest_first else "ASC"
    page_where = where
    if after:
        past = f"(created_at, id) {'<' if newest_first else '>'} ({d.value('after_at')}, {d.value('after_id')})"
        page_where = f"{where} AND {past}" if where else f" WHERE {past}"
    page = (
        f"SELECT {COLUMNS} FROM {d.table}{page_where}"
        f" ORDER BY created_at {direction}, id {direction} LIMIT {d.value('limit')} OFFSET {d.value('offset')}"
    )
    return page, f"SELECT count(*) FROM {d.table}{where}", params
