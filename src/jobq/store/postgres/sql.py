"""The SQL text of the PostgreSQL store's statements, built once per variant.

The statements both SQL stores share (:mod:`jobq.store.sql`) in
PostgreSQL's spelling (:data:`DIALECT`), and those PostgreSQL alone has: the
many-row insert and the batched settle through ``unnest``, a claim that skips
locked rows. Placeholders the store fills in: ``{t}``, the table's quoted
name, and ``{now}``, :data:`NOW`. Parameters are psycopg's ``%(name)s``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from ...job import RECORD_FIELDS, JobRecord, record_values
from ...transitions import Transition
from ..history_sql import ATTEMPT_COLUMNS, records_attempts
from ..sql import (
    COLUMNS,
    SETTLE_FIELDS,
    Dialect,
    SettleShape,
    due,
    held,
    lease_assignments,
    see_foreign_query,
    settle_assignments,
    settle_fence,
    settle_params,
    settle_shape,
)
from ..sql import (
    expired_query as shared_expired_query,
)

# "now" in every statement: the caller's time, or the database's in epoch ms,
# floored as k-msg's Date.now() floors it (a cast to bigint would round).
NOW = "COALESCE(%(now)s::bigint, floor(extract(epoch FROM transaction_timestamp()) * 1000)::bigint)"

#: The shared statements as PostgreSQL spells them.
DIALECT = Dialect(
    value=lambda name: f"%({name})s",
    now="{now}",
    table="{t}",
    among=lambda column, name: f"{column} = ANY(%({name})s::text[])",
    json_field=lambda name: f"jobq_json_field(metadata, %({name})s)",
    array=list,
    json_key=str,
    lateral=True,
)
J_COLUMNS = ", ".join(f"j.{name}" for name in RECORD_FIELDS)
# Column types for the arrays of a many-row insert (text unless named here).
ARRAY_TYPES = {
    **dict.fromkeys(("priority", "attempts", "max_attempts", "lost_count"), "integer"),
    **dict.fromkeys(
        (
            "delay",
            "created_at",
            "process_at",
            "completed_at",
            "failed_at",
            "scheduled_at",
            "started_at",
            "cancelled_at",
            "cancel_requested_at",
        ),
        "bigint",
    ),
    "progress": "double precision",
}
CREATED_AT = RECORD_FIELDS.index("created_at")
PROCESS_AT = RECORD_FIELDS.index("process_at")  # its array holds each job's delay in ms


def insert_many_params(
    records: Sequence[JobRecord], *, db_clock: bool
) -> tuple[tuple[bool, ...], dict[str, Any]]:
    """The parameters of :func:`insert_many_query` for ``records``, and the
    ``constant`` flags that pick its variant. A column holding one value in
    every row (most do in a batch: the status, the type, the NULLs) is sent
    once instead of as an array. On the database clock the ``created_at``
    column is NULL, for the statement's time."""
    columns = list(zip(*map(record_values, records), strict=True))
    columns[PROCESS_AT] = tuple(r.process_at - r.created_at for r in records)
    if db_clock:
        columns[CREATED_AT] = (None,) * len(records)
    constant = tuple(len(set(values)) == 1 for values in columns)
    params: dict[str, Any] = {
        f"c{i}": values[0] if same else list(values)
        for i, (values, same) in enumerate(zip(columns, constant, strict=True))
    }
    return constant, params


def insert_many_query(constant: Sequence[bool]) -> str:
    """The many-row insert: one array per column, or one value for a column
    the same in every row (``constant``, in :data:`RECORD_FIELDS` order).
    ``created_at`` is the caller's or, when NULL (on the database clock), the
    statement's; the ``process_at`` slot carries each job's delay, added to it."""
    varying = [(i, f) for i, f in enumerate(RECORD_FIELDS) if not constant[i]]

    def value(i: int, field: str) -> str:
        return f"u.{field}" if not constant[i] else f"%(c{i})s::{ARRAY_TYPES.get(field, 'text')}"

    created = f"COALESCE({value(CREATED_AT, 'created_at')}, n.ms)"
    selected = [
        created if i == CREATED_AT else f"{created} + {value(i, f)}" if i == PROCESS_AT else value(i, f)
        for i, f in enumerate(RECORD_FIELDS)
    ]
    source = " FROM n"
    if varying:
        arrays = ", ".join(f"%(c{i})s::{ARRAY_TYPES.get(f, 'text')}[]" for i, f in varying)
        source += f", unnest({arrays}) AS u({', '.join(f for _, f in varying)})"
    return (
        "WITH n AS (SELECT {now} AS ms, pg_notify(%(jobq_channel)s, '') AS notified),"
        f" ins AS (INSERT INTO {{t}} ({COLUMNS}) SELECT {', '.join(selected)}{source})"
        " SELECT ms FROM n"
    )


def insert_one_query() -> str:
    """One row, its values named by field, whose times come from the CTE
    ``n`` (the statement's "now", or the caller's): ``created_at`` is it,
    ``process_at`` is ``jobq_span`` ms after; the CTE queues the wake-up."""
    values = [
        "(SELECT ms FROM n)" if f == "created_at"
        else "(SELECT ms FROM n) + %(jobq_span)s::bigint" if f == "process_at"
        else f"%({f})s"
        for f in RECORD_FIELDS
    ]  # fmt: skip
    return (
        "WITH n AS (SELECT {now} AS ms, pg_notify(%(jobq_channel)s, '') AS notified)"
        f" INSERT INTO {{t}} ({COLUMNS}) VALUES ({', '.join(values)}) RETURNING created_at"
    )


def extend_query() -> str:
    """Renews a batch of leases (``ids`` and their ``tokens``) still held;
    returns the ids renewed."""
    d = dataclasses.replace(DIALECT, value=lambda name: f"l.{name}", column=lambda name: f"j.{name}")
    return (
        "UPDATE {t} AS j SET process_at = {now} + %(lease)s::bigint"
        " FROM unnest(%(ids)s::text[], %(tokens)s::text[]) AS l(id, token)"
        f" WHERE j.id = l.id AND {held(d)} RETURNING j.id"
    )


def expired_query() -> str:
    """Marks the foreign claims not seen before, and reads the claims that
    ran out (see :mod:`jobq.store.sql`), in one statement."""
    return f"WITH seen AS ({see_foreign_query(DIALECT)}) {shared_expired_query(DIALECT)}"


def claim_ctes(where: str, prefix: str = "") -> str:
    """``picked`` (the due rows, locked, skipping rows other claims hold)
    and ``claimed`` (those rows leased, returned whole). ``prefix``: see
    :func:`jobq.store.sql.seek_prefix`."""
    picked = due(DIALECT, "id", where, limit="%(limit)s", prefix=prefix, lock=" FOR UPDATE SKIP LOCKED")
    return (
        f"picked AS ({picked}), claimed AS (UPDATE {{t}} AS j SET {lease_assignments(DIALECT)}"
        f" FROM picked WHERE j.id = picked.id RETURNING {J_COLUMNS})"
    )


#: Queues one notification on the finish channel (``%(jobq_finish)s``) when
#: a row of ``done`` reached a final status: delivered at commit, so only if
#: the settle commits, and sent with no round trip of its own.
_FINISHED_CTE = (
    "finished AS (SELECT pg_notify(%(jobq_finish)s, '') FROM done"
    " WHERE jobq_status IN ('completed', 'failed', 'cancelled') LIMIT 1)"
)
#: A condition that makes the statement evaluate ``finished`` (a CTE that
#: only reads runs only as far as the statement reads it).
_FINISHED_READ = "(SELECT count(*) FROM finished) >= 0"


def may_finish(shape: SettleShape) -> bool:
    """Whether a batch of this shape may bring a job to a final status."""
    status = dict(shape).get("status")
    return status is None or status in ("completed", "failed", "cancelled")


#: What the settle's ``done`` rows carry for the history: the batch's values,
#: and the start of the attempt from the row (a settle leaves it as it is).
_HISTORY_RETURNING = (
    ", b.outcome AS h_outcome, b.attempt AS h_attempt, b.worker AS h_worker, j.started_at AS h_started,"
    " b.error_type AS h_error_type, b.error AS h_error, b.traceback AS h_traceback"
)
#: Adds the history rows of the transitions written (``done``), in the
#: settle's own statement: no round trip of its own, and written exactly when
#: the outcomes are (a data-modifying CTE runs whether it is read or not).
_HISTORY_CTE = (
    f", history AS (INSERT INTO {{attempts}} ({ATTEMPT_COLUMNS})"
    " SELECT id, COALESCE(h_attempt, 0), h_worker, h_started, {now}, h_outcome, h_error_type, h_error,"
    " h_traceback FROM done WHERE h_outcome IS NOT NULL)"
)


def _history(shape: SettleShape) -> tuple[str, str]:
    """The extra ``RETURNING`` of the settle and the history CTE, for a
    batch that records attempts (both empty otherwise)."""
    return (_HISTORY_RETURNING, _HISTORY_CTE) if records_attempts(shape) else ("", "")


def settle_and_claim_query(where: str, shape: SettleShape = (), prefix: str = "") -> str:
    """Settled transitions and a claim in one statement. Its parts see one
    snapshot, which is safe here: the transitions touch processing rows, the
    claim pending ones. Rows settled come first in the result with NULL for
    every column of a claimed row; claimed rows have a NULL id first. Jobs
    brought to a final status are announced (:data:`_FINISHED_CTE`); the
    attempts are added to the history (:data:`_HISTORY_CTE`)."""
    nulls = ", ".join(["NULL"] * len(RECORD_FIELDS))
    extra, history = _history(shape)
    if not may_finish(shape):
        return (
            f"WITH done AS ({settle_query('j.id' + extra, shape)}){history}, {claim_ctes(where, prefix)}"
            f" SELECT done.id, {nulls} FROM done UNION ALL SELECT NULL, claimed.* FROM claimed"
        )
    return (
        f"WITH done AS ({settle_query('j.id, j.status AS jobq_status' + extra, shape)}){history},"
        f" {_FINISHED_CTE}, {claim_ctes(where, prefix)} SELECT done.id, {nulls} FROM done WHERE {_FINISHED_READ}"
        " UNION ALL SELECT NULL, claimed.* FROM claimed"
    )


def settle_announcing_query(returning: Sequence[tuple[str, str]], shape: SettleShape = ()) -> str:
    """:func:`settle_query` returning ``(expression, name)`` pairs, which
    also announces jobs brought to a final status (:data:`_FINISHED_CTE`)
    and adds the attempts to the history (:data:`_HISTORY_CTE`)."""
    columns = ", ".join(f"{expression} AS {name}" for expression, name in returning)
    extra, history = _history(shape)
    finishing = may_finish(shape)
    if not finishing and not history:
        return settle_query(columns, shape)
    names = ", ".join(name for _, name in returning)
    status = ", j.status AS jobq_status" if finishing else ""
    ctes = f"done AS ({settle_query(columns + status + extra, shape)}){history}"
    if not finishing:
        return f"WITH {ctes} SELECT {names} FROM done"
    return f"WITH {ctes}, {_FINISHED_CTE} SELECT {names} FROM done WHERE {_FINISHED_READ}"


#: The batch's arrays, one per transition field (see :data:`SETTLE_FIELDS`).
_SETTLE_BATCH = (
    "unnest(" + ", ".join(f"%(s_{name})s::{kind}[]" for name, kind in SETTLE_FIELDS) + ")"
    " AS b(" + ", ".join(name for name, _ in SETTLE_FIELDS) + ")"
)
_SETTLE_DIALECT = dataclasses.replace(
    DIALECT, value=lambda name: f"b.{name}", column=lambda name: f"j.{name}"
)


def settle_query(returning: str, shape: SettleShape = ()) -> str:
    """Writes a batch of transitions whose fence holds (see
    :mod:`jobq.store.sql`), for a batch of this ``shape``; returns
    ``returning`` of each row written."""
    return (
        f"UPDATE {{t}} AS j SET {settle_assignments(_SETTLE_DIALECT, shape)} FROM {_SETTLE_BATCH}"
        f" WHERE j.id = b.id AND {settle_fence(_SETTLE_DIALECT, shape)} RETURNING {returning}"
    )


def settle_batch_params(transitions: Sequence[Transition]) -> tuple[dict[str, Any], SettleShape]:
    """The arrays of :func:`settle_query` for ``transitions``, and the
    batch's shape. PostgreSQL text cannot hold NUL characters; an error or
    result keeps the rest."""
    columns = list(zip(*map(settle_params, transitions), strict=True))
    params: dict[str, Any] = {}
    for (name, _kind), values in zip(SETTLE_FIELDS, columns, strict=True):
        if name in ("error", "result", "traceback"):
            values = tuple(None if v is None else v.replace("\x00", "\ufffd") for v in values)
        params[f"s_{name}"] = list(values)
    return params, settle_shape(columns)
