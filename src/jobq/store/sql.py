"""SQL text both SQL stores share, written once with a small dialect.

A statement here is built from the parts a store supplies (a
:class:`Dialect`): how a value is named (``:status`` for SQLite,
``%(status)s`` for psycopg, ``b.status`` for a PostgreSQL batch joined
through ``unnest``), how a column of the job row is named (``status``, or
``j.status`` beside the batch), the SQL for "now" (a parameter, or
PostgreSQL's clock), the table, how a list value is tested (``json_each`` on
SQLite, ``= ANY`` of an array on PostgreSQL) and how a metadata field is
read. What changes between SQLite and PostgreSQL is only that spelling; the
rule is the text below. Statements one store alone needs stay with it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidOption
from ..job import MAX_TIME_MS, RECORD_FIELDS, UNFINISHED_STORED
from ..transitions import FOREIGN_OWNER, Transition
from .base import RETRYABLE

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")  # 63 characters at most, as PostgreSQL allows

#: The columns of a job row, in :data:`~jobq.job.RECORD_FIELDS` order.
COLUMNS = ", ".join(RECORD_FIELDS)

#: The fields of a transition a settle statement reads, in the order a batch
#: sends them, with their SQL types.
SETTLE_FIELDS: tuple[tuple[str, str], ...] = (
    ("id", "text"),
    ("status", "text"),
    ("token", "text"),
    ("expect_status", "text"),
    ("expect_attempts", "integer"),
    ("expect_expired", "integer"),
    ("expect_seen", "bigint"),
    ("attempts", "integer"),
    ("lost_count", "integer"),
    ("error", "text"),
    ("result", "text"),
    ("delay_ms", "bigint"),
    ("error_type", "text"),
    # The attempt's history row (written beside the job's, not into it).
    ("outcome", "text"),
    ("attempt", "integer"),
    ("worker", "text"),
    ("traceback", "text"),
)
#: Fields of a history row alone: a batch's statement does not vary with them.
_HISTORY_ONLY = frozenset({"attempt", "worker", "traceback"})

#: The order ``claim`` takes ready jobs in.
DUE_ORDER = "priority DESC, process_at ASC, created_at ASC"

_UNFINISHED = ", ".join(f"'{status}'" for status in UNFINISHED_STORED)


# A waiting job is stored as pending (k-msg's layout) whether it is due or
# not; the public status tells them apart by the time. One rule, three spellings:
def ready(now: str) -> str:
    """Rows of jobs waiting and due at ``now`` (public status ``pending``)."""
    return f"status = 'pending' AND process_at <= {now}"


def delayed(now: str) -> str:
    """Rows of jobs waiting for a later time (public status ``delayed``)."""
    return f"status = 'pending' AND process_at > {now}"


def public_status(now: str) -> str:
    """A row's public status at ``now``."""
    return f"CASE WHEN {delayed(now)} THEN 'delayed' ELSE status END"


@dataclass(frozen=True, slots=True)
class Dialect:
    """How one store spells a statement's parts."""

    value: Callable[[str], str]  # a value the statement is given, by name
    now: str  # "now" in epoch milliseconds
    table: str  # the job table
    #: ``column`` is one of the values of the list value ``name``.
    among: Callable[[str, str], str]
    #: The metadata field named by the value ``name`` (NULL where there is none).
    json_field: Callable[[str], str]
    #: A list value as the statement takes it (``among``).
    array: Callable[[Sequence[str]], Any]
    #: A metadata field's name as the value ``json_field`` takes.
    json_key: Callable[[str], Any]
    column: Callable[[str], str] = str  # a column of the job row, by name
    #: How a claim combines the ready jobs of each priority (see :func:`due`):
    #: ``LATERAL`` joins (PostgreSQL), or ``IN`` (SQLite, which has no LATERAL).
    lateral: bool = False


# -- fences and settling ------------------------------------------------------


def held(d: Dialect) -> str:
    """Rows of jobs processing under the claim ``token`` (the fence of a holder's write)."""
    return f"{d.column('status')} = 'processing' AND {d.column('lease_token')} = {d.value('token')}"


# Foreign claims (see jobq.transitions): processing rows without a claim
# token, held by a writer without leases (k-msg, a script).
def foreign(d: Dialect) -> str:
    """Rows of foreign claims (:func:`jobq.transitions.is_foreign`)."""
    return f"{d.column('status')} = 'processing' AND {d.column('lease_token')} IS NULL"


def _foreign_owner(d: Dialect) -> str:
    return f"'{FOREIGN_OWNER}' || {d.column('attempts')}"


def seen_foreign(d: Dialect) -> str:
    """Rows of foreign claims the rescuer has seen at their current attempts
    (:func:`jobq.transitions.seen_foreign`)."""
    return f"{foreign(d)} AND {d.column('lease_owner')} = {_foreign_owner(d)}"


def unseen_foreign(d: Dialect) -> str:
    """Rows of foreign claims not seen yet (at their current attempts)."""
    owner = d.column("lease_owner")
    return f"{foreign(d)} AND ({owner} IS NULL OR {owner} <> {_foreign_owner(d)})"


def unseen_foreign_query(d: Dialect) -> str:
    """The ids of foreign claims not seen yet."""
    return f"SELECT id FROM {d.table} WHERE {unseen_foreign(d)}"


def see_foreign_query(d: Dialect, *, among: bool = False) -> str:
    """Marks the foreign claims not seen yet as seen now
    (:func:`jobq.transitions.see_foreign`); with ``among``, only those of the
    list value ``ids``."""
    where = f"{d.among('id', 'ids')} AND " if among else ""
    return (
        f"UPDATE {d.table} SET started_at = {d.now}, lease_owner = {_foreign_owner(d)}"
        f" WHERE {where}{unseen_foreign(d)}"
    )


def settle_params(transition: Transition) -> tuple[Any, ...]:
    """A transition's values in :data:`SETTLE_FIELDS` order."""
    t = transition
    return (
        t.job_id, t.status, t.token, t.expect_status, t.expect_attempts, int(t.expect_expired),
        t.expect_seen, t.attempts, t.lost_count, t.error, t.result, t.delay_ms, t.error_type,
        t.outcome, t.attempt, t.worker, t.traceback,
    )  # fmt: skip


#: In a :data:`SettleShape`: every transition of the batch has a value here.
GIVEN = "given"

#: What every transition of a batch has in common: ``(field, value)`` pairs
#: for the target status and ``expect_expired`` when all agree, ``None`` for
#: a field no transition sets, :data:`GIVEN` for a claim token all carry.
#: A statement built for a shape leaves out what cannot apply to its batch
#: (a completion batch writes no attempts, no error, no retry time); the
#: rule it follows is still the one below, with some inputs known.
SettleShape = tuple[tuple[str, Any], ...]


def settle_shape(columns: Sequence[Sequence[Any]]) -> SettleShape:
    """The shape of a batch, given its values column by column in
    :data:`SETTLE_FIELDS` order."""
    shape: list[tuple[str, Any]] = []
    for (name, _), values in zip(SETTLE_FIELDS, columns, strict=True):
        if name == "id" or name in _HISTORY_ONLY:
            continue
        nulls = values.count(None)
        if name in ("status", "expect_expired"):
            if values.count(values[0]) == len(values):
                shape.append((name, values[0]))
        elif nulls == len(values):
            shape.append((name, None))
        elif name == "token" and nulls == 0:
            shape.append((name, GIVEN))
    return tuple(shape)


def _literal(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def settle_assignments(d: Dialect, shape: SettleShape = ()) -> str:
    """The ``SET`` list writing a transition (see
    :func:`jobq.transitions.apply`, the same rule in Python): the target
    status and the values given (``NULL`` keeps what is stored), the finish
    time of the target status, the claim cleared, and ``process_at`` back to
    the time the job was due, or ``delay_ms`` from now for a job waiting
    again. With a ``shape``, what its batch cannot need is left out."""
    fixed = dict(shape)
    c, now = d.column, d.now

    def v(name: str) -> str:
        known = fixed.get(name, GIVEN)
        return d.value(name) if known == GIVEN else _literal(known)

    status = fixed.get("status")
    back_in_line = (
        f"CASE WHEN {c('status')} = 'processing' THEN COALESCE({c('scheduled_at')}, {c('process_at')})"
        f" ELSE {c('process_at')} END"
    )
    parts: list[str] = []
    if status not in (None, "pending") or fixed.get("delay_ms", GIVEN) is None:
        parts.append(f"process_at = {back_in_line}")
    else:
        waiting = f"{v('status')} = 'pending' AND " if status is None else ""
        parts.append(
            f"process_at = CASE WHEN {waiting}{v('delay_ms')} IS NOT NULL THEN {now} + {v('delay_ms')}"
            f" ELSE {back_in_line} END"
        )
    parts.append(f"status = {v('status')}")
    for name in ("attempts", "lost_count", "error"):
        if fixed.get(name, GIVEN) is not None:
            parts.append(f"{name} = COALESCE({v(name)}, {c(name)})")
    if fixed.get("error", GIVEN) is not None:  # the type goes with its error
        parts.append(f"error_type = CASE WHEN {v('error')} IS NULL THEN {c('error_type')} ELSE {v('error_type')} END")
    for column, target, value in (
        ("result", "completed", v("result")),
        ("completed_at", "completed", now),
        ("failed_at", "failed", now),
        ("cancelled_at", "cancelled", now),
    ):
        if status is None:
            parts.append(f"{column} = CASE WHEN {v('status')} = '{target}' THEN {value} ELSE {c(column)} END")
        elif status == target:
            parts.append(f"{column} = {value}")
    # A completed job keeps its worker, the history's record of its last
    # attempt (jobq.transitions.completed); other outcomes clear it.
    if status is None:
        parts.append(f"lease_owner = CASE WHEN {v('status')} = 'completed' THEN {c('lease_owner')} ELSE NULL END")
    elif status != "completed":
        parts.append("lease_owner = NULL")
    parts.append("lease_token = NULL, scheduled_at = NULL")
    return ", ".join(parts)


def settle_fence(d: Dialect, shape: SettleShape = ()) -> str:
    """The condition under which a transition is written (see
    :func:`jobq.transitions.holds`): the claim token, then the
    compare-and-set on what a read saw. With a ``shape``, a condition its
    batch cannot need is left out."""
    fixed = dict(shape)
    v, c, now = d.value, d.column, d.now
    token = fixed.get("token", "mixed")
    conditions: list[str] = []
    if token == GIVEN:
        conditions.append(held(d))
    elif token is not None:
        conditions.append(f"({v('token')} IS NULL OR ({held(d)}))")
    for name, column in (("expect_status", "status"), ("expect_attempts", "attempts")):
        if fixed.get(name, GIVEN) is not None:
            conditions.append(f"({v(name)} IS NULL OR {c(column)} = {v(name)})")
    if fixed.get("expect_seen", GIVEN) is not None:
        seen = f"{seen_foreign(d)} AND {c('started_at')} = {v('expect_seen')}"
        conditions.append(f"({v('expect_seen')} IS NULL OR ({seen}))")
    expired = fixed.get("expect_expired")
    if expired is None:
        conditions.append(f"({v('expect_expired')} = 0 OR {c('process_at')} <= {now})")
    elif expired:
        conditions.append(f"{c('process_at')} <= {now}")
    return " AND ".join(conditions) or "1 = 1"


# -- claiming -------------------------------------------------------------------


def lease_assignments(d: Dialect) -> str:
    """The ``SET`` list of a claim: ``processing`` under the claim's token
    and owner, ``lease`` ms from now, keeping the time the job was due."""
    v, now = d.value, d.now
    return (
        f"status = 'processing', scheduled_at = process_at, process_at = {now} + {v('lease')},"
        f" lease_token = {v('token')}, lease_owner = {v('owner')}, started_at = {now}"
    )


def lease_params(request: Any) -> dict[str, Any]:
    """The values :func:`lease_assignments` reads, from a
    :class:`~jobq.store.base.ClaimRequest` (``now`` is the store's to give)."""
    r = request
    return {"lease": r.lease_until_ms - r.now_ms, "token": r.token, "owner": r.owner, "limit": r.limit}


def filters(
    d: Dialect, queues: Sequence[str] | None, exclude_types: Collection[str] = ()
) -> tuple[str, str, dict[str, Any]]:
    """The optional filters of a claim or a peek: SQL to append to a
    ``WHERE``, a key naming the variant, and its values. One queue is an
    equality, so a queue-led index gives the order."""
    sql, key, params = "", "", dict[str, Any]()
    if queues is not None and len(queues) == 1:
        sql, key, params["queue"] = f" AND queue = {d.value('queue')}", "q", queues[0]
    elif queues is not None:
        sql, key, params["queues"] = f" AND {d.among('queue', 'queues')}", "Q", d.array(queues)
    if exclude_types:
        sql += f" AND NOT ({d.among('type', 'exclude')})"
        key += "x"
        params["exclude"] = d.array(list(exclude_types))
    return sql, key, params


def claim_filters(d: Dialect, request: Any) -> tuple[str, str, dict[str, Any]]:
    """:func:`filters` of a :class:`~jobq.store.base.ClaimRequest`, with its
    bounds on ``lost_count`` (a residual test on the rows the claim walks)."""
    r = request
    sql, key, params = filters(d, r.queues, r.exclude_types)
    if r.exclude_queues:
        # Paused queues (see :meth:`jobq.Queue.pause`): a residual test, so the
        # claim walks the same index as without it.
        sql += f" AND NOT ({d.among('queue', 'exclude_queues')})"
        key += "p"
        params["exclude_queues"] = d.array(list(r.exclude_queues))
    if r.lost_below is not None:
        sql, key, params["lost_below"] = f"{sql} AND lost_count < {d.value('lost_below')}", key + "l", r.lost_below
    if r.lost_from is not None:
        sql, key, params["lost_from"] = f"{sql} AND lost_count >= {d.value('lost_from')}", key + "L", r.lost_from
    return sql, key, params


def seek_prefix(d: Dialect, queues: Sequence[str] | None) -> str:
    """The part of :func:`filters` an index of waiting rows leads with: one
    queue (the queue-led index), else nothing."""
    return f" AND queue = {d.value('queue')}" if queues is not None and len(queues) == 1 else ""


def waiting_priorities(d: Dialect, prefix: str, index: str = "") -> str:
    """``jobq_p(priority)``, a recursive CTE: the distinct priorities of
    waiting jobs (``prefix`` of :func:`seek_prefix`), highest first, then a
    NULL. Each step is one seek in the index of waiting rows (a skip scan),
    so its cost is the number of priorities, not of rows."""
    top = f"SELECT priority FROM {d.table}{index} WHERE status = 'pending'{prefix}"
    return (
        f"jobq_p(priority) AS (SELECT ({top} ORDER BY priority DESC LIMIT 1)"
        f" UNION ALL SELECT ({top} AND priority < jobq_p.priority ORDER BY priority DESC LIMIT 1)"
        " FROM jobq_p WHERE jobq_p.priority IS NOT NULL)"
    )


def due(
    d: Dialect, what: str, where: str, *, limit: str, prefix: str = "", index: str = "", lock: str = ""
) -> str:
    """``what`` of up to ``limit`` jobs ready at now, in dequeue order.
    ``prefix`` is the filter the index of waiting rows leads with
    (:func:`seek_prefix`), ``index`` names that index (SQLite's ``INDEXED
    BY``), ``lock`` how to lock the rows (PostgreSQL's ``FOR UPDATE SKIP
    LOCKED``).

    The index is ordered by priority, then ``process_at``, so a plain walk
    in that order would step over every job of a higher priority not due
    yet (a backlog of scheduled sends) before it met a ready one, and a
    claim would cost as much as that backlog. Instead the statement takes
    the priorities present (:func:`waiting_priorities`) and, for each, only
    the due rows, by a range on ``process_at`` within that priority. SQLite
    combines them with ``IN``, which it walks in index order (no sort);
    PostgreSQL joins each priority ``LATERAL``ly, highest first, and stops
    at ``limit`` (rows a join does not reach are neither read nor locked)."""
    priorities = waiting_priorities(d, prefix, index)
    if d.lateral:
        picked = (
            f"SELECT {what} FROM {d.table} WHERE {ready(d.now)} AND priority = jobq_p.priority{where}"
            f" ORDER BY process_at, created_at LIMIT {limit}{lock}"
        )
        return (
            f"WITH RECURSIVE {priorities} SELECT jobq_c.* FROM jobq_p CROSS JOIN LATERAL ({picked}) AS jobq_c"
            f" WHERE jobq_p.priority IS NOT NULL LIMIT {limit}"
        )
    return (
        f"WITH RECURSIVE {priorities} SELECT {what} FROM {d.table}{index}"
        f" WHERE {ready(d.now)} AND priority IN (SELECT priority FROM jobq_p){where}"
        f" ORDER BY {DUE_ORDER} LIMIT {limit}{lock}"
    )


def count_ready_query(d: Dialect, where: str, *, prefix: str = "", index: str = "") -> str:
    """The number of jobs ready at now: a count per priority present, each a
    range of the index (see :func:`due`; ``prefix`` and ``index`` as there),
    so jobs not due yet are not counted one by one."""
    per_priority = f"SELECT count(*) FROM {d.table}{index} WHERE {ready(d.now)} AND priority = jobq_p.priority{where}"
    return (
        f"WITH RECURSIVE {waiting_priorities(d, prefix, index)}"
        f" SELECT COALESCE(sum(({per_priority})), 0) FROM jobq_p WHERE jobq_p.priority IS NOT NULL"
    )


def next_due_query(d: Dialect, where: str, *, prefix: str = "", index: str = "") -> str:
    """The earliest ``process_at`` of a waiting job, and "now": the earliest
    of each priority present (the first of its rows in the index, see
    :func:`due`), so a backlog of jobs due later is not read whole."""
    first = (
        f"SELECT process_at FROM {d.table}{index} WHERE status = 'pending' AND priority = jobq_p.priority{where}"
        " ORDER BY process_at LIMIT 1"
    )
    return (
        f"WITH RECURSIVE {waiting_priorities(d, prefix, index)}"
        f" SELECT min(({first})), {d.now} FROM jobq_p WHERE jobq_p.priority IS NOT NULL"
    )


def ran_out(d: Dialect) -> str:
    """Rows of processing jobs whose claim ran out at now
    (:func:`jobq.transitions.ran_out`): a jobq lease that ended, or a foreign
    claim seen the value ``foreign`` ms ago or more. A lease end that cannot
    be a time (past year 9999, or, on SQLite, text another program wrote,
    which sorts after every number) counts as ended: the job would
    otherwise stay processing for ever."""
    return (
        f"status = 'processing' AND ((lease_token IS NOT NULL"
        f" AND (process_at <= {d.now} OR process_at > {MAX_TIME_MS}))"
        f" OR ({seen_foreign(d)} AND started_at <= {d.now} - {d.value('foreign')}))"
    )


def expired_query(d: Dialect) -> str:
    """Processing jobs whose claim ran out, oldest ``process_at`` first."""
    return f"SELECT {COLUMNS} FROM {d.table} WHERE {ran_out(d)} ORDER BY process_at LIMIT {d.value('limit')}"


def limited_candidates_query(d: Dialect, where: str, limits: Sequence[Any]) -> str:
    """The first waiting jobs of each combination of key values (see
    :mod:`jobq.keylimits`), ranked so that taking them in order goes
    round-robin over the keys. Values: ``type{i}`` and ``field{i}`` of each
    limit, ``per_key`` and ``cap``."""
    parts = [
        f"CASE WHEN {'TRUE' if lim.type is None else 'type = ' + d.value(f'type{i}')}"
        f" THEN {d.json_field(f'field{i}')} END"
        for i, lim in enumerate(limits)
    ]
    return (
        f"SELECT {COLUMNS} FROM (SELECT {COLUMNS}, row_number() OVER"
        f" (PARTITION BY {', '.join(parts)} ORDER BY {DUE_ORDER}) AS jobq_rank"
        f" FROM {d.table} WHERE {ready(d.now)}{where}) AS ranked"
        f" WHERE jobq_rank <= {d.value('per_key')} ORDER BY jobq_rank, {DUE_ORDER} LIMIT {d.value('cap')}"
    )


def limited_take_query(d: Dialect) -> str:
    """Leases the chosen candidates (``ids``) still waiting."""
    return (
        f"UPDATE {d.table} SET {lease_assignments(d)}"
        f" WHERE {d.among('id', 'ids')} AND status = 'pending' RETURNING {COLUMNS}"
    )


# -- single jobs -------------------------------------------------------------------


def get_query(d: Dialect) -> str:
    return f"SELECT {COLUMNS} FROM {d.table} WHERE id = {d.value('id')}"


def insert_query(d: Dialect) -> str:
    """One row, its values named by field."""
    return f"INSERT INTO {d.table} ({COLUMNS}) VALUES ({', '.join(map(d.value, RECORD_FIELDS))})"


def unique_holder_query(d: Dialect) -> str:
    """The unfinished job holding the unique key ``key``."""
    return (
        f"SELECT {COLUMNS} FROM {d.table} WHERE unique_key = {d.value('key')} AND status IN ({_UNFINISHED})"
    )


def progress_query(d: Dialect, *, fenced: bool) -> str:
    fence = f" AND {held(d)}" if fenced else ""
    return (
        f"UPDATE {d.table} SET progress = {d.value('progress')}, progress_message = {d.value('message')}"
        f" WHERE id = {d.value('id')}{fence}"
    )


def cancel_query(d: Dialect) -> str:
    """An operator's cancel: a waiting job becomes ``cancelled``; a
    processing one gets a cancel request (its processor stops it); a
    finished job is not matched, and nothing changes."""
    now = d.now
    return (
        f"UPDATE {d.table} SET status = CASE WHEN status = 'pending' THEN 'cancelled' ELSE status END,"
        f" cancelled_at = CASE WHEN status = 'pending' THEN {now} ELSE cancelled_at END,"
        f" cancel_requested_at = CASE WHEN status = 'processing'"
        f" THEN COALESCE(cancel_requested_at, {now}) ELSE cancel_requested_at END"
        f" WHERE id = {d.value('id')} AND status IN ({_UNFINISHED}) RETURNING {COLUMNS}"
    )


def cancel_requested_query(d: Dialect) -> str:
    """Which of the processing jobs ``ids`` have a cancel request."""
    return (
        f"SELECT id FROM {d.table} WHERE {d.among('id', 'ids')} AND status = 'processing'"
        f" AND cancel_requested_at IS NOT NULL"
    )


def retry_query(d: Dialect) -> str:
    """A failed or cancelled job (:data:`~jobq.store.base.RETRYABLE`) back
    to ``pending`` now, attempts 0, error kept (and the mark of a foreign
    claim seen, which its attempts count no longer tells apart)."""
    return (
        f"UPDATE {d.table} SET status = 'pending', attempts = 0, process_at = {d.now}, lease_owner = NULL,"
        f" failed_at = NULL, cancelled_at = NULL, cancel_requested_at = NULL"
        f" WHERE id = {d.value('id')} AND status IN ({', '.join(map(repr, RETRYABLE))}) RETURNING {COLUMNS}"
    )


def remove_query(d: Dialect) -> str:
    return f"DELETE FROM {d.table} WHERE id = {d.value('id')}"


def _terminal_where(d: Dialect, before: str | None) -> str:
    """Jobs in the stored ``statuses``, finished before ``before`` if given."""
    sql = d.among("status", "statuses")
    if before is not None:
        sql += f" AND COALESCE(completed_at, failed_at, cancelled_at, created_at) < {before}"
    return sql


def delete_terminal_query(d: Dialect, before: str | None) -> str:
    return f"DELETE FROM {d.table} WHERE {_terminal_where(d, before)}"


def count_terminal_query(d: Dialect, before: str | None) -> str:
    """What :func:`delete_terminal_query` would delete, counted."""
    return f"SELECT count(*) FROM {d.table} WHERE {_terminal_where(d, before)}"


# -- per-key limits and cron ------------------------------------------------------


def starts_queries(d: Dialect, starts: str) -> tuple[str, str, str]:
    """On the table of recent starts of rate-limited keys: forget those of
    limit ``name`` at or before ``until``; read those left; record one."""
    v = d.value
    return (
        f"DELETE FROM {starts} WHERE name = {v('name')} AND at_ms <= {v('until')}",
        f"SELECT name, key FROM {starts} WHERE name = {v('name')}",
        f"INSERT INTO {starts} (name, key, at_ms) VALUES ({v('name')}, {v('key')}, {v('at')})",
    )


def cron_table(integer: str) -> str:
    """Cron schedules' last slots (epoch ms), per job table; ``integer`` is
    the type that holds them."""
    return (
        "CREATE TABLE IF NOT EXISTS jobq_cron (tbl TEXT NOT NULL, name TEXT NOT NULL,"
        f" last_slot {integer} NOT NULL, PRIMARY KEY (tbl, name))"
    )


def cron_advance_query(d: Dialect) -> str:
    """Moves the last slot of schedule ``name`` of table ``tbl`` to ``slot``
    if that is later (or records it, for a schedule seen the first time)."""
    v = d.value
    return (
        f"INSERT INTO jobq_cron (tbl, name, last_slot) VALUES ({v('tbl')}, {v('name')}, {v('slot')})"
        " ON CONFLICT (tbl, name) DO UPDATE SET last_slot = excluded.last_slot"
        " WHERE jobq_cron.last_slot < excluded.last_slot"
    )


def check_table_name(table: str) -> str:
    """Table names are interpolated into SQL, so only plain identifiers pass."""
    if not isinstance(table, str) or not _IDENTIFIER.fullmatch(table):
        raise InvalidOption(
            f"table name {table!r} is not a plain SQL identifier (letters, digits, underscore)"
        )
    return table
