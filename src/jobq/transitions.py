"""How a job leaves ``processing`` (and how an operator moves it): the rules,
decided once, in Python.

A caller that holds a job (a processor, or code that ``dequeue`` d it)
decides what becomes of it (completed, retried after a delay, failed for
good, given back, cancelled) from the :class:`~jobq.job.Job` in hand, and
hands the store a :class:`Transition`: the state to write, and the fence
under which to write it. Stores decide nothing: they write the target state
if the fence still holds, and report :class:`~jobq.errors.LeaseLost`
otherwise (River's ``JobSetStateIfRunning``, Oban's engine acks).

Two kinds of fence:

- a claim ``token``: the write happens only while the job is ``processing``
  under that claim. Its holder's ``Job`` is then an exact picture of the row
  (nobody else changes a held job), so values such as ``attempts + 1`` are
  computed from it.
- a compare-and-set on what a read saw (``expect_status``,
  ``expect_attempts``, ``expect_expired``, ``expect_seen``): for decisions
  made on a row the caller does not hold, such as the rescue of an expired
  lease or an operator failing a job by id. If the row changed since, the
  write does nothing and the caller reads again.

Claims jobq cannot see. A writer without leases (k-msg's queues, a script)
moves a job to ``processing`` and writes nothing else: no claim token, no
lease end. Such a *foreign claim* is never taken for an expired lease. The
rescuer marks it when it first sees it (:func:`see_foreign`: ``started_at``
then, and ``lease_owner`` naming the attempt it was seen at, so that a
claim taken again after the writer's own retry is a new one), and takes it
back only ``foreign_claim_timeout`` after that (:func:`ran_out`).

:func:`apply` is the same rule on a record in memory: the in-memory store
writes with it, and every SQL store's statement (``store/sql.py``) is its
translation.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

from .job import Job, JobRecord

#: Where a transition can lead (stored statuses).
Target = Literal["completed", "failed", "pending", "cancelled"]

LOST_WORKER_ERROR = "worker {owner} was lost: its lease expired before the job finished"
#: The error of a foreign claim taken back (``{timeout}`` in seconds).
ABANDONED_ERROR = (
    "held in processing without a lease by a writer that is not a jobq worker (k-msg, a script),"
    " and not finished {timeout:g} s after jobq first saw it (foreign_claim_timeout): taken back"
)
#: The error of a job failed for good because its workers kept being lost
#: (``{lost}`` is ``max_lost_leases``); the processor emits ``job_quarantined``.
QUARANTINE_ERROR = (
    "quarantined after {lost} lost workers: the job may be killing its worker"
    " (the last lost was worker {owner}, whose lease expired before the job finished)"
)
#: The same, when the last holder lost was a foreign claim.
ABANDONED_QUARANTINE_ERROR = (
    "quarantined after {lost} lost workers: the job may be killing its worker"
    " (the last lost held it without a lease, and did not finish it {timeout:g} s after jobq first saw it)"
)
#: ``lease_owner`` of a foreign claim jobq has seen, at its attempts count
#: then (a claim without a token carrying another count is not seen yet).
FOREIGN_OWNER = "foreign@"
#: What the ``job_cancelled`` event reports when a cancel request stopped a
#: running handler (the job's stored error is left as it was).
CANCEL_REQUESTED = "cancel requested"


class Transition(NamedTuple):
    """One job moved to ``status``, if its fence holds. (A named tuple: one
    is built per job on a worker's hot path, several times faster than a
    frozen dataclass.)

    ``None`` in a value field keeps what is stored. Whatever the target, the
    claim is cleared (token, owner), and a processing job's ``process_at``
    (its lease end while it ran) goes back to the time it was due, unless
    ``delay_ms`` sets a new one."""

    job_id: str
    status: Target
    #: Fence: only while the job is ``processing`` under this claim token.
    token: str | None = None
    #: Compare-and-set: only while the stored status is this.
    expect_status: str | None = None
    #: Compare-and-set: only while the stored attempts count is this.
    expect_attempts: int | None = None
    #: Compare-and-set: only while the job's lease has run out (rescue).
    expect_expired: bool = False
    #: Compare-and-set: only while the job is a foreign claim (no token)
    #: first seen at this time (``started_at``), at its current attempts.
    expect_seen: int | None = None
    attempts: int | None = None
    lost_count: int | None = None
    error: str | None = None
    #: Stored as the result when ``status`` is ``completed`` (JSON text).
    result: str | None = None
    #: ``pending`` only: runs again ``delay_ms`` after now; ``None`` keeps
    #: the time it was due before its claim (its old place in line).
    delay_ms: int | None = None
    #: Written with ``error`` (``None`` then clears it): the name of the
    #: exception class the error came from.
    error_type: str | None = None
    # The attempt's row in the history (see :mod:`jobq.history`), written
    # with the transition when ``outcome`` is set (``None``: no row).
    #: What became of the attempt (one of :data:`jobq.history.OUTCOMES`).
    outcome: str | None = None
    #: Which attempt it was (1 for the first run).
    attempt: int | None = None
    #: The worker that ran it (its claim's owner). Its start is the row's
    #: ``started_at``, which the store reads (a settle leaves it as it is).
    worker: str | None = None
    #: The traceback of the error (capped, see :func:`jobq.history.format_traceback`).
    traceback: str | None = None

    @property
    def fenced(self) -> bool:
        """Whether the write is conditional (a claim token or a compare-and-set)."""
        return (
            self.token is not None
            or self.expect_status is not None
            or self.expect_attempts is not None
            or self.expect_expired
            or self.expect_seen is not None
        )

    @property
    def wakes_workers(self) -> bool:
        """Whether the job waits to run again afterwards, so idle workers
        should look."""
        return self.status == "pending"


# -- the decisions -----------------------------------------------------------


class Ran(NamedTuple):
    """Which attempt ran, and on which worker: what a history row needs to
    know of the job beside the outcome (the store reads its start from the row)."""

    attempt: int  # 1 for the first run
    worker: str | None


def ran(record: JobRecord) -> Ran:
    """The attempt a processing job's row is in."""
    return Ran(record.attempts + 1, record.lease_owner)


def attempt_of(job: Job[Any]) -> Ran:
    """The attempt a claimed job (as its holder has it) is in."""
    return Ran(job.attempts + 1, job.lease_owner)


def completed(
    job_id: str, token: str | None, result: str | None, attempt: int | None = None, worker: str | None = None
) -> Transition:
    """A completion; with ``attempt`` (and its ``worker``), the attempt goes into the history."""
    # Positional, and the attempt as plain values: one per job on a worker's hot path.
    if attempt is None:
        return Transition(job_id, "completed", token, None, None, False, None, None, None, None, result, None)
    return Transition(
        job_id, "completed", token, None, None, False, None, None, None, None, result, None, None,
        "completed", attempt, worker, None,
    )  # fmt: skip


def will_retry(attempts: int, max_attempts: int) -> bool:
    """k-msg's rule: a failed attempt is retried while attempts are left
    after it."""
    return attempts + 1 < max_attempts


def failed_attempt(
    job_id: str,
    *,
    token: str | None,
    attempts: int,
    max_attempts: int,
    error: str,
    retry_delay_ms: int | None,
    expect_status: str | None = None,
    error_type: str | None = None,
    run: Ran | None = None,
    traceback: str | None = None,
    timed_out: bool = False,
) -> Transition:
    """A failed attempt: retried after ``retry_delay_ms`` while attempts are
    left (``None``: no retry asked), failed for good otherwise. ``attempts``
    is the count before this attempt was counted. With ``run``, the attempt
    goes into the history (``timed_out`` when it ran past its timeout)."""
    again = retry_delay_ms is not None and will_retry(attempts, max_attempts)
    history: dict[str, object] = {}
    if run is not None:
        outcome = "timed_out" if timed_out else "retry" if again else "failed"
        history = {
            "outcome": outcome, "attempt": attempts + 1, "worker": run.worker, "traceback": traceback,
        }  # fmt: skip
    return Transition(
        job_id, "pending" if again else "failed", token=token, attempts=attempts + 1, error=error,
        delay_ms=retry_delay_ms if again else None, expect_status=expect_status,
        expect_attempts=attempts if token is None else None, error_type=error_type,
        **history,  # type: ignore[arg-type]
    )  # fmt: skip


def released(
    job_id: str, token: str, delay_ms: int | None, run: Ran | None = None, *, snoozed: bool = False
) -> Transition:
    """Given back without spending an attempt (a snooze, a graceful stop).
    With ``run``, the attempt goes into the history (``released`` or ``snoozed``)."""
    if run is None:
        return Transition(job_id, "pending", token=token, delay_ms=delay_ms)
    return Transition(
        job_id, "pending", token=token, delay_ms=delay_ms, outcome="snoozed" if snoozed else "released",
        attempt=run.attempt, worker=run.worker,
    )  # fmt: skip


def cancelled(
    job_id: str,
    token: str,
    reason: str | None,
    error_type: str | None = None,
    run: Ran | None = None,
    traceback: str | None = None,
) -> Transition:
    """Stopped for good by its holder (``CancelJob``, a cancel request).
    With ``run``, the attempt goes into the history."""
    if run is None:
        return Transition(job_id, "cancelled", token=token, error=reason, error_type=error_type)
    return Transition(
        job_id, "cancelled", token=token, error=reason, error_type=error_type, outcome="cancelled",
        attempt=run.attempt, worker=run.worker, traceback=traceback,
    )  # fmt: skip


def rescued(record: JobRecord, *, max_lost: int, foreign_timeout_ms: int) -> Transition:
    """What becomes of a processing job whose claim ran out (:func:`ran_out`:
    its worker was lost, or a foreign claim was abandoned): cancelled if a
    cancel was asked of it; otherwise a failed attempt and a lost worker,
    waiting to run again at once while attempts are left and it was lost
    fewer than ``max_lost`` times, failed for good (the last time,
    quarantined) otherwise. Fenced on the row as read."""
    fence: dict[str, object] = {"expect_status": "processing", "expect_attempts": record.attempts}
    foreign = record.lease_token is None
    if foreign:
        fence["expect_seen"] = record.started_at
    else:
        fence["expect_expired"] = True
    history: dict[str, object] = {"attempt": record.attempts + 1, "worker": record.lease_owner}
    if record.cancel_requested_at is not None:
        return Transition(record.id, "cancelled", outcome="cancelled", **history, **fence)  # type: ignore[arg-type]
    lost = record.lost_count + 1
    owner = record.lease_owner or "unknown"
    timeout = foreign_timeout_ms / 1000
    if lost >= max_lost:
        template = ABANDONED_QUARANTINE_ERROR if foreign else QUARANTINE_ERROR
        error = template.format(lost=max_lost, owner=owner, timeout=timeout)
    else:
        error = (ABANDONED_ERROR if foreign else LOST_WORKER_ERROR).format(owner=owner, timeout=timeout)
    again = will_retry(record.attempts, record.max_attempts) and lost < max_lost
    return Transition(
        record.id, "pending" if again else "failed", attempts=record.attempts + 1, lost_count=lost,
        error=error, delay_ms=0 if again else None, outcome="lease_lost", **history, **fence,  # type: ignore[arg-type]
    )  # fmt: skip


# -- claims that ran out -----------------------------------------------------


def foreign_owner(attempts: int) -> str:
    """The ``lease_owner`` that marks a foreign claim seen at ``attempts``."""
    return f"{FOREIGN_OWNER}{attempts}"


def is_foreign(record: JobRecord) -> bool:
    """A processing job without jobq's claim token: held by a writer without
    leases."""
    return record.status == "processing" and record.lease_token is None


def seen_foreign(record: JobRecord) -> bool:
    """A foreign claim the rescuer has seen (under its current attempts)."""
    return is_foreign(record) and record.lease_owner == foreign_owner(record.attempts)


def see_foreign(record: JobRecord, now_ms: int) -> None:
    """Marks a foreign claim not seen yet as seen at ``now_ms``: its
    ``foreign_claim_timeout`` runs from then."""
    record.started_at = now_ms
    record.lease_owner = foreign_owner(record.attempts)


def ran_out(record: JobRecord, now_ms: int, foreign_timeout_ms: int) -> bool:
    """Whether a processing job's claim ran out at ``now_ms``: a jobq lease
    whose end passed, or a foreign claim seen ``foreign_timeout_ms`` ago."""
    if record.status != "processing":
        return False
    if record.lease_token is not None:
        return record.process_at <= now_ms
    return (
        seen_foreign(record)
        and record.started_at is not None
        and record.started_at + foreign_timeout_ms <= now_ms
    )


def unreadable(record: JobRecord, error: str, *, held: bool) -> Transition:
    """A job whose row cannot be read as a job (see :func:`jobq.job.unreadable`):
    failed for good with ``error``, its attempts counted if they can be.
    ``held``: just claimed, so fenced by that claim; otherwise (the rescuer
    found it) fenced on the status read and, for a processing job, its
    claim token."""
    attempts = record.attempts + 1 if type(record.attempts) is int else None
    token = record.lease_token if held or record.status == "processing" else None
    return Transition(
        record.id, "failed", token=token, expect_status=None if held else record.status,
        attempts=attempts, error=error, outcome=None if attempts is None else "failed", attempt=attempts,
        worker=record.lease_owner if held and isinstance(record.lease_owner, str) else None,
    )  # fmt: skip


# -- the same rule on a record in memory -------------------------------------


def holds(record: JobRecord, transition: Transition, now_ms: int) -> bool:
    """Whether ``transition``'s fence holds on ``record`` at ``now_ms``."""
    t = transition
    if t.token is not None and (record.status != "processing" or record.lease_token != t.token):
        return False
    if t.expect_status is not None and record.status != t.expect_status:
        return False
    if t.expect_attempts is not None and record.attempts != t.expect_attempts:
        return False
    if t.expect_seen is not None and not (seen_foreign(record) and record.started_at == t.expect_seen):
        return False
    return not (t.expect_expired and record.process_at > now_ms)


def apply(record: JobRecord, transition: Transition, now_ms: int) -> None:
    """Writes ``transition`` into ``record`` (its fence already checked), as
    every store does."""
    t = transition
    if t.status == "pending" and t.delay_ms is not None:
        record.process_at = now_ms + t.delay_ms
    elif record.status == "processing" and record.scheduled_at is not None:
        record.process_at = record.scheduled_at
    record.status = t.status
    if t.attempts is not None:
        record.attempts = t.attempts
    if t.lost_count is not None:
        record.lost_count = t.lost_count
    if t.error is not None:
        record.error = t.error
        record.error_type = t.error_type
    if t.status == "completed":
        record.result = t.result
        record.completed_at = now_ms
    elif t.status == "failed":
        record.failed_at = now_ms
    elif t.status == "cancelled":
        record.cancelled_at = now_ms
    record.lease_token = None
    record.lease_owner = None
    record.scheduled_at = None
