"""The in-memory backend: a real backend for one process, not a test double.

Ready jobs sit in one heap per queue, ordered as ``dequeue`` takes them;
delayed jobs wait in a heap by due time and move over once due. Heap entries
are invalidated lazily: each job carries a version bumped whenever its place
in line changes, and a popped entry whose version is stale is dropped.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
from collections.abc import Collection, Sequence
from typing import Any

from .. import figures, keylimits
from .. import transitions as transitions_
from ..errors import NotRetryable
from ..history import AttemptRecord, WorkerRecord
from ..job import UNFINISHED_STORED, JobRecord, copy_record
from ..transitions import Transition
from .base import RETRYABLE, ClaimRequest, Search, Settled, missing, not_retryable, settle_then_claim
from .signal import Signal

_FINAL = frozenset({"completed", "failed", "cancelled"})


_ReadyEntry = tuple[int, int, int, int, str, int]  # -priority, process_at, created_at, seq, id, version
_DelayedEntry = tuple[int, int, str, int]  # process_at, seq, id, version


class MemoryStore:
    name = "memory"
    syncs_apart = False  # nothing to sync

    def __init__(self) -> None:
        self._jobs: dict[str, JobRecord] = {}
        self._version: dict[str, int] = {}
        self._ready: dict[str, list[_ReadyEntry]] = {}
        self._delayed: list[_DelayedEntry] = []
        self._processing: set[str] = set()
        self._seq = itertools.count()
        self._lock = threading.Lock()
        # unique_key -> id of the job that held it last; checked on use, so a
        # finished or removed holder frees the key without bookkeeping.
        self._unique: dict[str, str] = {}
        # Per-key rate limits: limit name -> (start ms, key), oldest first.
        self._starts: dict[str, list[tuple[int, str]]] = {}
        self._cron: dict[str, int] = {}  # cron schedule name -> last slot run (epoch ms)
        self._paused: dict[str, int] = {}  # paused queue -> when it was paused (epoch ms)
        self._finished = Signal()  # a job reached a final status (or was removed)
        # job id -> its attempts, oldest first, as AttemptRecord values
        self._attempts: dict[str, tuple[tuple[Any, ...], ...]] = {}
        self._attempt_seq = itertools.count(1)
        self._workers: dict[str, WorkerRecord] = {}  # the worker registry, by worker id

    # -- bookkeeping -------------------------------------------------------

    def _enqueue_waiting(self, record: JobRecord, now_ms: int) -> None:
        """Puts a pending job in line (ready or delayed) under a new version."""
        version = self._version.get(record.id, 0) + 1
        self._version[record.id] = version
        seq = next(self._seq)
        if record.process_at <= now_ms:
            heap = self._ready.setdefault(record.queue, [])
            heapq.heappush(
                heap, (-record.priority, record.process_at, record.created_at, seq, record.id, version)
            )
        else:
            heapq.heappush(self._delayed, (record.process_at, seq, record.id, version))

    def _is_current(self, job_id: str, version: int) -> bool:
        record = self._jobs.get(job_id)
        return record is not None and record.status == "pending" and self._version.get(job_id) == version

    def _promote_due(self, now_ms: int) -> None:
        while self._delayed and self._delayed[0][0] <= now_ms:
            _, _, job_id, version = heapq.heappop(self._delayed)
            if self._is_current(job_id, version):
                self._enqueue_waiting(self._jobs[job_id], now_ms)

    def _top(self, queue: str, now_ms: int) -> _ReadyEntry | None:
        heap = self._ready.get(queue)
        while heap:
            entry = heap[0]
            if not self._is_current(entry[4], entry[5]):
                heapq.heappop(heap)
            elif entry[1] > now_ms:
                # The clock went back since it was put in line: not due yet.
                heapq.heappop(heap)
                self._enqueue_waiting(self._jobs[entry[4]], now_ms)
            else:
                return entry
        return None

    def _queues(self, queues: Sequence[str] | None) -> Sequence[str]:
        return list(self._ready) if queues is None else queues

    def _best(self, queues: Sequence[str] | None, now_ms: int) -> tuple[str, _ReadyEntry] | None:
        best: tuple[str, _ReadyEntry] | None = None
        for queue in self._queues(queues):
            entry = self._top(queue, now_ms)
            if entry is not None and (best is None or entry < best[1]):
                best = (queue, entry)
        return best

    def _held(self, job_id: str, token: str | None) -> JobRecord:
        record = self._jobs.get(job_id)
        if record is None or (token is not None and (record.status != "processing" or record.lease_token != token)):
            raise missing(job_id, record)
        return record

    # -- the Store protocol -----------------------------------------------

    async def insert(self, records: Sequence[JobRecord]) -> None:
        with self._lock:
            for record in records:
                if record.id in self._jobs:
                    raise ValueError(f"duplicate job id {record.id!r}")
            for record in records:
                stored = copy_record(record)
                self._jobs[stored.id] = stored
                if stored.status == "pending":
                    # Delayed entries are compared against the time of the claim.
                    self._enqueue_waiting(stored, stored.created_at)

    async def claim(self, request: ClaimRequest) -> list[JobRecord]:
        if request.limits:
            return self._claim_limited(request)
        limit, now_ms, queues, exclude_types = request.limit, request.now_ms, request.queues, request.exclude_types
        lost_below, lost_from = request.lost_below, request.lost_from
        claimed: list[JobRecord] = []
        skipped: list[tuple[str, _ReadyEntry]] = []
        with self._lock:
            self._promote_due(now_ms)
            if request.exclude_queues:
                queues = [q for q in self._queues(queues) if q not in request.exclude_queues]
            while len(claimed) < limit:
                best = self._best(queues, now_ms)
                if best is None:
                    break
                queue, entry = best
                heapq.heappop(self._ready[queue])
                record = self._jobs[entry[4]]
                if (
                    record.type in exclude_types
                    or (lost_below is not None and record.lost_count >= lost_below)
                    or (lost_from is not None and record.lost_count < lost_from)
                ):
                    skipped.append(best)
                    continue
                claimed.append(self._lease(record, request))
            for queue, entry in skipped:
                heapq.heappush(self._ready[queue], entry)
        return claimed

    async def settle_and_claim(
        self, transitions: Sequence[Transition], request: ClaimRequest
    ) -> tuple[list[Settled], list[JobRecord]]:
        """Nothing to commit: the two verbs one after the other."""
        return await settle_then_claim(self, transitions, request)

    async def sync(self) -> None:
        return None

    async def peek(self, *, now_ms: int, queues: Sequence[str] | None = None) -> JobRecord | None:
        with self._lock:
            self._promote_due(now_ms)
            best = self._best(queues, now_ms)
            return None if best is None else copy_record(self._jobs[best[1][4]])

    async def count_ready(self, *, now_ms: int, queues: Sequence[str] | None = None) -> int:
        with self._lock:
            return sum(
                1
                for r in self._jobs.values()
                if r.status == "pending" and r.process_at <= now_ms and (queues is None or r.queue in queues)
            )

    async def next_due_ms(self, *, queues: Sequence[str] | None = None) -> int | None:
        with self._lock:
            due = [
                r.process_at
                for r in self._jobs.values()
                if r.status == "pending" and (queues is None or r.queue in queues)
            ]
            return min(due, default=None)

    async def get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            record = self._jobs.get(job_id)
            return None if record is None else copy_record(record)

    async def settle(
        self, transitions: Sequence[Transition], *, now_ms: int, returning: bool = False
    ) -> list[Settled]:
        settled: list[Settled] = []
        with self._lock:
            for transition in transitions:
                record = self._jobs.get(transition.job_id)
                if record is None or not transitions_.holds(record, transition, now_ms):
                    settled.append(missing(transition.job_id, record))
                    continue
                transitions_.apply(record, transition, now_ms)
                if transition.outcome is not None:
                    self._record_attempt(transition, record.started_at, now_ms)
                self._processing.discard(record.id)
                if record.status == "pending":
                    self._enqueue_waiting(record, now_ms)
                settled.append(copy_record(record) if returning else None)
        if any(t.status in _FINAL for t in transitions):
            self._finished.set()
        return settled

    def _record_attempt(self, t: Transition, started_ms: int | None, now_ms: int) -> None:
        # Plain tuples of plain values: the garbage collector stops tracking
        # them, so a store holding many jobs' histories costs it nothing.
        row = (
            next(self._attempt_seq), t.job_id, t.attempt or 0, t.worker, started_ms, now_ms, t.outcome or "",
            t.error_type, t.error, t.traceback,
        )  # fmt: skip
        self._attempts[t.job_id] = self._attempts.get(t.job_id, ()) + (row,)

    async def attempts(self, job_id: str) -> list[AttemptRecord]:
        with self._lock:
            return [AttemptRecord(*row) for row in self._attempts.get(job_id, ())]

    async def heartbeat(self, worker: WorkerRecord, *, forget_before_ms: int) -> None:
        with self._lock:
            self._workers[worker.id] = worker
            for gone in [w.id for w in self._workers.values() if w.heartbeat_at < forget_before_ms]:
                del self._workers[gone]

    async def unregister(self, worker_id: str) -> None:
        with self._lock:
            self._workers.pop(worker_id, None)

    async def workers(self) -> list[WorkerRecord]:
        with self._lock:
            return sorted(self._workers.values(), key=lambda w: (w.started_at, w.id))

    async def extend_leases(self, leases: Sequence[tuple[str, str]], *, until_ms: int) -> set[str]:
        lost: set[str] = set()
        with self._lock:
            for job_id, token in leases:
                record = self._jobs.get(job_id)
                if record is None or record.status != "processing" or record.lease_token != token:
                    lost.add(job_id)
                else:
                    record.process_at = until_ms
        return lost

    async def expired(self, *, now_ms: int, limit: int, foreign_timeout_ms: int) -> list[JobRecord]:
        found: list[JobRecord] = []
        with self._lock:
            for job_id in list(self._processing):
                record = self._jobs.get(job_id)
                if record is None or record.status != "processing":
                    self._processing.discard(job_id)
                    continue
                if transitions_.is_foreign(record) and not transitions_.seen_foreign(record):
                    transitions_.see_foreign(record, now_ms)
                elif transitions_.ran_out(record, now_ms, foreign_timeout_ms):
                    found.append(copy_record(record))
        found.sort(key=lambda r: r.process_at)
        return found[:limit]

    async def claim_cron_slot(self, name: str, slot_ms: int, job: JobRecord) -> bool:
        with self._lock:
            last = self._cron.get(name)
            if last is not None and last >= slot_ms:
                return False
            self._cron[name] = slot_ms
            if last is None:
                return False
            if job.id in self._jobs:
                raise ValueError(f"duplicate job id {job.id!r}")
            stored = copy_record(job)
            self._jobs[stored.id] = stored
            self._enqueue_waiting(stored, stored.created_at)
            return True

    async def remove(self, job_id: str) -> bool:
        with self._lock:
            self._processing.discard(job_id)
            self._version.pop(job_id, None)
            removed = self._jobs.pop(job_id, None) is not None
            self._attempts.pop(job_id, None)
        self._finished.set()
        return removed

    async def pause_queue(self, queue: str, *, now_ms: int) -> bool:
        with self._lock:
            if queue in self._paused:
                return False
            self._paused[queue] = now_ms
            return True

    async def resume_queue(self, queue: str) -> bool:
        with self._lock:
            return self._paused.pop(queue, None) is not None

    async def paused_queues(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._paused.items()))

    async def clear(self) -> None:
        with self._lock:
            self._jobs.clear()
            self._attempts.clear()
            self._version.clear()
            self._ready.clear()
            self._delayed.clear()
            self._processing.clear()

    def _finished_before(self, statuses: Collection[str], before_ms: int | None) -> list[str]:
        return [
            r.id
            for r in self._jobs.values()
            if r.status in statuses
            and (before_ms is None or (r.completed_at or r.failed_at or r.cancelled_at or r.created_at) < before_ms)
        ]

    async def count_terminal(self, statuses: Collection[str], *, before_ms: int | None = None) -> int:
        with self._lock:
            return len(self._finished_before(statuses, before_ms))

    async def delete_terminal(self, statuses: Collection[str], *, before_ms: int | None = None) -> int:
        with self._lock:
            doomed = self._finished_before(statuses, before_ms)
            for job_id in doomed:
                del self._jobs[job_id]
                self._version.pop(job_id, None)
                self._attempts.pop(job_id, None)
            return len(doomed)

    async def count_by_status(self, *, now_ms: int) -> dict[str, int]:
        counts: dict[str, int] = {}
        with self._lock:
            for r in self._jobs.values():
                status = "delayed" if r.status == "pending" and r.process_at > now_ms else r.status
                counts[status] = counts.get(status, 0) + 1
        return counts

    # -- per-key limits ------------------------------------------------------

    def _lease(self, record: JobRecord, request: ClaimRequest) -> JobRecord:
        """Moves a waiting job to ``processing`` under the request's claim;
        returns a copy to hand out."""
        record.status = "processing"
        record.scheduled_at = record.process_at
        record.process_at = request.lease_until_ms
        record.lease_token = request.token
        record.lease_owner = request.owner
        record.started_at = request.now_ms
        self._processing.add(record.id)
        return copy_record(record)

    def _claim_limited(self, request: ClaimRequest) -> list[JobRecord]:
        limit, now_ms, limits = request.limit, request.now_ms, request.limits
        queues, exclude_types = request.queues, request.exclude_types
        with self._lock:
            ready = sorted(
                (
                    r
                    for r in self._jobs.values()
                    if r.status == "pending"
                    and r.process_at <= now_ms
                    and (queues is None or r.queue in queues)
                    and r.queue not in request.exclude_queues
                    and r.type not in exclude_types
                    and (request.lost_below is None or r.lost_count < request.lost_below)
                    and (request.lost_from is None or r.lost_count >= request.lost_from)
                ),
                key=lambda r: (-r.priority, r.process_at, r.created_at),
            )
            candidates = keylimits.round_robin(ready, limits, limit)[: keylimits.candidate_cap(limit)]
            running = [(r.type, r.metadata) for r in self._jobs.values() if r.status == "processing"]
            recent: list[tuple[str, str]] = []
            for lim in keylimits.rate_limits(limits):
                log = self._starts.setdefault(lim.name, [])
                log[:] = [(at, key) for at, key in log if at > now_ms - lim.per_ms]
                recent.extend((lim.name, key) for _, key in log)
            chosen, starts = keylimits.choose(
                candidates, limit, limits, keylimits.usage(limits, running, recent)
            )
            for name, key in starts:
                self._starts.setdefault(name, []).append((now_ms, key))
            return [self._lease(record, request) for record in chosen]

    # -- unique jobs, cancellation, progress, inspection ---------------------

    def _holder(self, unique_key: str) -> JobRecord | None:
        job_id = self._unique.get(unique_key)
        record = None if job_id is None else self._jobs.get(job_id)
        if record is None or record.unique_key != unique_key or record.status not in UNFINISHED_STORED:
            return None
        return record

    async def insert_unique(self, records: Sequence[JobRecord]) -> list[JobRecord | None]:
        with self._lock:
            for record in records:
                if record.id in self._jobs:
                    raise ValueError(f"duplicate job id {record.id!r}")
            answer: list[JobRecord | None] = []
            for record in records:
                if record.unique_key is not None:
                    holder = self._holder(record.unique_key)
                    if holder is not None:
                        answer.append(copy_record(holder))
                        continue
                stored = copy_record(record)
                self._jobs[stored.id] = stored
                if stored.unique_key is not None:
                    self._unique[stored.unique_key] = stored.id
                if stored.status == "pending":
                    self._enqueue_waiting(stored, stored.created_at)
                answer.append(None)
            return answer

    async def cancel(self, job_id: str, *, now_ms: int) -> tuple[bool, JobRecord]:
        with self._lock:
            record = self._held(job_id, None)
            if record.status == "pending":
                record.status = "cancelled"
                record.cancelled_at = now_ms
                self._finished.set()
                return True, copy_record(record)
            if record.status == "processing":
                if record.cancel_requested_at is None:
                    record.cancel_requested_at = now_ms
                return True, copy_record(record)
            return False, copy_record(record)

    async def cancel_requested(self, job_ids: Sequence[str]) -> set[str]:
        with self._lock:
            return {
                job_id
                for job_id in job_ids
                if (r := self._jobs.get(job_id)) is not None
                and r.status == "processing"
                and r.cancel_requested_at is not None
            }

    async def retry(self, job_id: str, *, now_ms: int) -> JobRecord:
        with self._lock:
            record = self._held(job_id, None)
            if record.status not in RETRYABLE:
                raise not_retryable(job_id, record)
            if record.unique_key is not None:
                holder = self._holder(record.unique_key)
                if holder is not None and holder.id != job_id:
                    raise NotRetryable(
                        f"job {job_id!r} cannot be retried: job {holder.id!r} holds its unique key"
                        f" {record.unique_key!r}"
                    )
                self._unique[record.unique_key] = job_id
            record.status = "pending"
            record.attempts = 0
            record.process_at = now_ms
            record.lease_owner = None
            record.failed_at = None
            record.cancelled_at = None
            record.cancel_requested_at = None
            self._enqueue_waiting(record, now_ms)
            return copy_record(record)

    async def set_progress(
        self, job_id: str, *, token: str | None, progress: float, message: str | None
    ) -> None:
        with self._lock:
            record = self._held(job_id, token)
            record.progress = progress
            record.progress_message = message

    @staticmethod
    def _public_status(record: JobRecord, now_ms: int) -> str:
        return "delayed" if record.status == "pending" and record.process_at > now_ms else record.status

    async def list_jobs(
        self,
        *,
        statuses: Collection[str] | None,
        types: Collection[str] | None,
        queues: Collection[str] | None,
        limit: int,
        offset: int,
        newest_first: bool,
        now_ms: int,
        search: Search | None = None,
        after: tuple[int, str] | None = None,
    ) -> tuple[list[JobRecord], int]:
        with self._lock:
            found = [
                r
                for r in self._jobs.values()
                if (statuses is None or self._public_status(r, now_ms) in statuses)
                and (types is None or r.type in types)
                and (queues is None or r.queue in queues)
                and (search is None or search.matches(r))
            ]
            found.sort(key=lambda r: (r.created_at, r.id), reverse=newest_first)
            page = found
            if after is not None:
                page = [r for r in found if ((r.created_at, r.id) < after if newest_first else (r.created_at, r.id) > after)]
            return [copy_record(r) for r in page[offset : offset + limit]], len(found)

    async def summary(
        self, *, now_ms: int, statuses: Collection[str] | None = None
    ) -> list[tuple[str, str, str, int]]:
        counts: dict[tuple[str, str, str], int] = {}
        with self._lock:
            for r in self._jobs.values():
                if statuses is not None and r.status not in statuses:
                    continue
                group = (r.queue, r.type, self._public_status(r, now_ms))
                counts[group] = counts.get(group, 0) + 1
        return [(*group, count) for group, count in sorted(counts.items())]

    async def oldest_ready(self, *, now_ms: int, queue: str | None = None) -> JobRecord | None:
        with self._lock:
            ready = [
                r for r in self._jobs.values()
                if (queue is None or r.queue == queue) and self._public_status(r, now_ms) == "pending"
            ]  # fmt: skip
            found = min(ready, key=lambda r: (r.process_at, r.created_at, r.id), default=None)
            return None if found is None else copy_record(found)

    async def outcomes(
        self, *, since_ms: int, bucket_ms: int, until_ms: int, queue: str | None = None
    ) -> list[tuple[int, int, int]]:
        end = figures.bucket_of(until_ms, bucket_ms) + bucket_ms
        with self._lock:
            rows = [(ended, outcome) for _, _, _, ended, outcome in self._every_attempt(queue) if ended < end]
        return figures.outcome_counts(rows, since_ms=since_ms, bucket_ms=bucket_ms)

    async def durations(self, *, since_ms: int, queue: str | None = None) -> list[tuple[str, str, int, int]]:
        with self._lock:
            rows = [
                (job.type, job.created_at, attempt, started, ended)
                for job, attempt, started, ended, _ in self._every_attempt(queue)
            ]  # fmt: skip
        return figures.duration_counts(rows, since_ms=since_ms)

    def _every_attempt(self, queue: str | None) -> list[figures.Ended]:
        return figures.every_attempt(self._jobs.values(), self._attempts, queue)

    async def cron_slots(self) -> dict[str, int]:
        with self._lock:
            return dict(sorted(self._cron.items()))

    async def cron_jobs(self, name: str, *, limit: int) -> list[JobRecord]:
        with self._lock:
            return figures.made_by_schedule(map(copy_record, self._jobs.values()), name, limit)

    async def wait_for_change(self, timeout: float) -> bool:
        # Nothing outside this process can change an in-memory store.
        await asyncio.sleep(timeout)
        return False

    async def wait_for_finish(self, timeout: float) -> bool:
        return await self._finished.wait(timeout)

    def twin(self) -> MemoryStore:
        """Itself: its jobs live in this process, behind a thread lock, so
        any thread's event loop may use it."""
        return self

    async def close(self) -> None:
        return None
