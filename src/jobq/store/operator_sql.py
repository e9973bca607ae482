"""Statements of the operators' side that both SQL stores share, beside
:mod:`jobq.store.sql`: the paused queues' table (see
:meth:`jobq.Queue.pause`) and the search filters of ``list_jobs`` (see
:class:`~jobq.store.base.Search`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .sql import Dialect


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
