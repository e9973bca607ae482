"""SQL text both SQL stores share, written once with a small dialect.

A statement here is built from three parts a store supplies: how a value
is named (``:status`` for SQLite's executemany, ``b.status`` for a
PostgreSQL batch joined through ``unnest``), how a column of the job row is
named (``status``, or ``j.status`` beside the batch), and the SQL for "now"
(a parameter, or PostgreSQL's clock). What changes between SQLite and
PostgreSQL is only that spelling; the rule is the text below.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidOption
from ..transitions import Transition

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")  # 63 characters at most, as PostgreSQL allows

#: The fields of a transition a settle statement reads, in the order a batch
#: sends them, with their SQL types.
SETTLE_FIELDS: tuple[tuple[str, str], ...] = (
    ("id", "text"),
    ("status", "text"),
    ("token", "text"),
    ("expect_status", "text"),
    ("expect_attempts", "integer"),
    ("expect_expired", "integer"),
    ("attempts", "integer"),
    ("lost_count", "integer"),
    ("error", "text"),
    ("result", "text"),
    ("delay_ms", "bigint"),
)

#: The order ``claim`` takes ready jobs in.
DUE_ORDER = "priority DESC, process_at ASC, created_at ASC"


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

    value: Callable[[str], str]  # a transition field, by name
    column: Callable[[str], str]  # a column of the job row, by name
    now: str  # "now" in epoch milliseconds


def settle_params(transition: Transition) -> tuple[Any, ...]:
    """A transition's values in :data:`SETTLE_FIELDS` order."""
    t = transition
    return (
        t.job_id, t.status, t.token, t.expect_status, t.expect_attempts, int(t.expect_expired),
        t.attempts, t.lost_count, t.error, t.result, t.delay_ms,
    )  # fmt: skip


def settle_assignments(d: Dialect) -> str:
    """The ``SET`` list writing a transition (see
    :func:`jobq.transitions.apply`, the same rule in Python): the target
    status and the values given (``NULL`` keeps what is stored), the finish
    time of the target status, the claim cleared, and ``process_at`` back to
    the time the job was due, or ``delay_ms`` from now for a job waiting again."""
    v, c, now = d.value, d.column, d.now
    return (
        f"process_at = CASE WHEN {v('status')} = 'pending' AND {v('delay_ms')} IS NOT NULL"
        f" THEN {now} + {v('delay_ms')}"
        f" WHEN {c('status')} = 'processing' THEN COALESCE({c('scheduled_at')}, {c('process_at')})"
        f" ELSE {c('process_at')} END,"
        f" status = {v('status')},"
        f" attempts = COALESCE({v('attempts')}, {c('attempts')}),"
        f" lost_count = COALESCE({v('lost_count')}, {c('lost_count')}),"
        f" error = COALESCE({v('error')}, {c('error')}),"
        f" result = CASE WHEN {v('status')} = 'completed' THEN {v('result')} ELSE {c('result')} END,"
        f" completed_at = CASE WHEN {v('status')} = 'completed' THEN {now} ELSE {c('completed_at')} END,"
        f" failed_at = CASE WHEN {v('status')} = 'failed' THEN {now} ELSE {c('failed_at')} END,"
        f" cancelled_at = CASE WHEN {v('status')} = 'cancelled' THEN {now} ELSE {c('cancelled_at')} END,"
        f" lease_token = NULL, lease_owner = NULL, scheduled_at = NULL"
    )


def settle_fence(d: Dialect) -> str:
    """The condition under which a transition is written (see
    :func:`jobq.transitions.holds`): the claim token, then the
    compare-and-set on what a read saw."""
    v, c, now = d.value, d.column, d.now
    return (
        f"({v('token')} IS NULL OR ({c('status')} = 'processing' AND {c('lease_token')} = {v('token')}))"
        f" AND ({v('expect_status')} IS NULL OR {c('status')} = {v('expect_status')})"
        f" AND ({v('expect_attempts')} IS NULL OR {c('attempts')} = {v('expect_attempts')})"
        f" AND ({v('expect_expired')} = 0 OR {c('process_at')} <= {now})"
    )


def expired_query(table: str, now: str, limit: str, columns: str) -> str:
    """Processing jobs whose lease ran out, oldest lease end first."""
    return (
        f"SELECT {columns} FROM {table} WHERE status = 'processing' AND process_at <= {now}"
        f" ORDER BY process_at LIMIT {limit}"
    )


def check_table_name(table: str) -> str:
    """Table names are interpolated into SQL, so only plain identifiers pass."""
    if not isinstance(table, str) or not _IDENTIFIER.fullmatch(table):
        raise InvalidOption(
            f"table name {table!r} is not a plain SQL identifier (letters, digits, underscore)"
        )
    return table
