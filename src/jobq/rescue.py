"""Taking back the jobs of lost workers: the rescue verbs of :class:`~jobq.Queue`.

A claim runs out when its lease ends (its worker was lost) or, for a job
held without a lease by another writer (k-msg's workers, a script), a while
after a rescuer first saw it. :class:`RescueVerbs` reads such jobs and
settles each as :func:`jobq.transitions.rescued` decides, fenced on the row
as read, so rescuers in any number of processes rescue a job once; and it
fails for good the waiting rows no claim can take (a due time that cannot be
read). ``Queue`` inherits it, as it inherits the operator verbs.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from . import transitions
from .clock import to_ms
from .errors import JobqError
from .job import Job, JobRecord, unreadable
from .transitions import Transition

if TYPE_CHECKING:
    from .store.base import Settled, Store

_log = logging.getLogger("jobq")

RESCUE_INTERVAL = 1.0  # seconds between expired-lease sweeps: claim's own, and the processor's default
RESCUE_BATCH = 500  # expired leases read and settled per transaction by one sweep
#: The longest foreign claim timeout a store is given, in ms (any finite
#: timeout is accepted; a longer one waits this long, 31,000 years).
FOREIGN_CLAIM_TIMEOUT_MAX_MS = 10**15


class RescueVerbs:
    """The rescue verbs :class:`~jobq.Queue` inherits."""

    if TYPE_CHECKING:  # provided by Queue
        store: Store
        foreign_claim_timeout: float
        max_lost_leases: int
        _next_rescue_ms: int

        def now_ms(self) -> int: ...

        def _lenient_job(self, record: JobRecord) -> Job[Any]: ...

        def _settled(
            self, settling: Sequence[Transition], settled: Sequence[Settled]
        ) -> list[JobqError | None]: ...

    async def rescue_expired(self) -> list[Job[Any]]:
        """Returns every job whose claim ran out to waiting (a failed attempt,
        a lost worker), or fails it for good when it is out of attempts or was
        lost ``max_lost_leases`` times; a job asked to stop ends cancelled.
        A claim runs out when its lease ends, or, for a job held without a
        lease by another writer (k-msg's workers), ``foreign_claim_timeout``
        seconds after a rescuer first saw it. Returns the jobs rescued (not
        those cancelled). The rules are :func:`jobq.transitions.rescued`;
        each write is fenced on the row as read, so rescuers in any number of
        processes rescue a job once."""
        now_ms = self.now_ms()
        self._next_rescue_ms = now_ms + to_ms(RESCUE_INTERVAL)
        foreign_ms = min(to_ms(self.foreign_claim_timeout), FOREIGN_CLAIM_TIMEOUT_MAX_MS)
        rescued: list[Job[Any]] = []
        while True:
            records = await self.store.expired(
                now_ms=now_ms, limit=RESCUE_BATCH, foreign_timeout_ms=foreign_ms
            )
            if not records:
                break
            decided = [self._rescue(r, foreign_ms) for r in records]
            settled = await self.store.settle(decided, now_ms=now_ms, returning=True)
            self._settled(decided, settled)
            rescued += [
                self._lenient_job(record)
                for record in settled
                if isinstance(record, JobRecord) and record.status != "cancelled"
            ]
            if len(records) < RESCUE_BATCH:
                break
        return rescued

    def _rescue(self, record: JobRecord, foreign_ms: int) -> Transition:
        """What becomes of an expired lease: :func:`jobq.transitions.rescued`,
        unless the row cannot be read as a job (a lease end past year 9999,
        text in a number column): then it fails for good, saying why."""
        bad = unreadable(record)
        if bad is not None:
            return transitions.unreadable(record, str(bad), held=False)
        return transitions.rescued(record, max_lost=self.max_lost_leases, foreign_timeout_ms=foreign_ms)

    async def fail_unreadable_waiting(self) -> int:
        """Fails for good every waiting job whose ``process_at`` cannot be a
        time (text another program wrote, a time past year 9999): no claim
        ever takes it. Returns how many. Called when :meth:`next_due` meets
        one; it then reads the waiting jobs that are not due, which are few
        (such a row shows only once it is the last in line)."""
        now_ms = self.now_ms()
        failed, offset = 0, 0
        while True:
            records, _ = await self.store.list_jobs(
                statuses=["delayed"], types=None, queues=None, limit=RESCUE_BATCH, offset=offset,
                newest_first=False, now_ms=now_ms,
            )  # fmt: skip
            bad = [(r, unreadable(r)) for r in records]
            decided = [transitions.unreadable(r, str(e), held=False) for r, e in bad if e is not None]
            done = 0
            if decided:
                settled = await self.store.settle(decided, now_ms=now_ms)
                for t, outcome in zip(decided, settled, strict=True):
                    if not isinstance(outcome, JobqError):
                        done += 1
                        _log.warning("job %s failed: %s", t.job_id, t.error)
            failed += done
            if len(records) < RESCUE_BATCH:
                return failed
            offset += RESCUE_BATCH - done  # the failed ones left the listing
