"""A reference model of one jobq queue, for the model-based test: plain
Python, no I/O, one line of logic per rule of the contract.

Times are integer milliseconds on the test's clock. A claim is identified
by its token; it stands while the job is processing under that token (an
expired lease still stands until a rescue takes the job back).
"""

from __future__ import annotations

from dataclasses import dataclass, field

WAITING, PROCESSING, COMPLETED, FAILED, CANCELLED = "waiting", "processing", "completed", "failed", "cancelled"
FINISHED = frozenset({COMPLETED, FAILED, CANCELLED})

#: Stored status changes a job may make (waiting covers pending and delayed).
LEGAL = frozenset(
    {
        (WAITING, PROCESSING),
        (WAITING, CANCELLED),
        (PROCESSING, COMPLETED),
        (PROCESSING, FAILED),
        (PROCESSING, WAITING),
        (PROCESSING, CANCELLED),
        # An operator's retry of a job that ended without completing.
        (FAILED, WAITING),
        (CANCELLED, WAITING),
    }
)


@dataclass
class ModelJob:
    id: str
    priority: int
    max_attempts: int
    process_at: int
    data: object
    status: str = WAITING
    attempts: int = 0
    lost_count: int = 0
    token: str | None = None
    lease_until: int = 0
    cancel_requested: bool = False
    unique_key: str | None = None
    history: list[str] = field(default_factory=lambda: [WAITING])

    def move(self, status: str) -> None:
        assert (self.status, status) in LEGAL, (self.id, self.status, status)
        self.status = status
        self.history.append(status)


class Model:
    def __init__(self, max_lost: int) -> None:
        self.jobs: dict[str, ModelJob] = {}
        self.max_lost = max_lost

    def add(self, job: ModelJob) -> None:
        self.jobs[job.id] = job

    def holder_of(self, unique_key: str | None) -> ModelJob | None:
        """The unfinished job holding ``unique_key``, if any."""
        if unique_key is None:
            return None
        return next(
            (j for j in self.jobs.values() if j.unique_key == unique_key and j.status not in FINISHED), None
        )

    def release(self, job_id: str, now: int, delay: int | None) -> None:
        """Given back by its holder: no attempt spent; due again after
        ``delay`` ms, or (``None``) when it was due before its claim."""
        job = self.jobs[job_id]
        job.move(WAITING)
        job.token = None
        if delay is not None:
            job.process_at = now + delay

    def retry(self, job_id: str, now: int) -> bool:
        """An operator's retry: a failed or cancelled job waits again, ready
        now, with its attempts back to 0 (its lost workers still counted),
        unless another unfinished job now holds its unique key."""
        job = self.jobs[job_id]
        if job.status not in (FAILED, CANCELLED) or self.holder_of(job.unique_key) is not None:
            return False
        job.move(WAITING)
        job.attempts, job.process_at, job.cancel_requested = 0, now, False
        return True

    def remove(self, job_id: str) -> bool:
        return self.jobs.pop(job_id, None) is not None

    def ready(self, now: int) -> list[ModelJob]:
        return [j for j in self.jobs.values() if j.status == WAITING and j.process_at <= now]

    def holds(self, job_id: str, token: str | None) -> bool:
        job = self.jobs[job_id]
        return job.status == PROCESSING and token is not None and job.token == token

    def claimed(self, job_id: str, token: str, lease_until: int) -> None:
        job = self.jobs[job_id]
        job.move(PROCESSING)
        job.token, job.lease_until = token, lease_until

    def complete(self, job_id: str) -> None:
        job = self.jobs[job_id]
        job.move(COMPLETED)
        job.token = None

    def fail(self, job_id: str, now: int, retry_delay: int | None) -> None:
        job = self.jobs[job_id]
        job.attempts += 1
        job.token = None
        if retry_delay is not None and job.attempts < job.max_attempts:
            job.move(WAITING)
            job.process_at = now + retry_delay
        else:
            job.move(FAILED)

    def cancel(self, job_id: str) -> bool:
        job = self.jobs[job_id]
        if job.status == WAITING:
            job.move(CANCELLED)
            return True
        if job.status == PROCESSING:
            job.cancel_requested = True
            return True
        return False

    def rescue(self, now: int) -> None:
        """A sweep: an expired claim on a job asked to stop ends it cancelled;
        any other expired claim counts a failed attempt and a lost worker."""
        for job in self.jobs.values():
            if job.status != PROCESSING or job.lease_until > now:
                continue
            job.token = None
            if job.cancel_requested:
                job.move(CANCELLED)
                continue
            job.attempts += 1
            job.lost_count += 1
            if job.attempts < job.max_attempts and job.lost_count < self.max_lost:
                job.move(WAITING)
                job.process_at = now
            else:
                job.move(FAILED)
