"""Every exception jobq raises, and the ones handlers raise to steer their job.

All of them derive from :class:`JobqError`, so ``except jobq.JobqError``
catches anything the package raises. Errors about bad arguments also derive
from :class:`ValueError` or :class:`TypeError`, as Python code expects.
A class docstring is the default message.
"""

from __future__ import annotations


class JobqError(Exception):
    """A jobq operation failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip().splitlines()[0])


class InvalidJob(JobqError, ValueError):
    """The job was rejected before anything was stored."""


class InvalidURL(JobqError, ValueError):
    """The queue URL cannot be opened."""


class InvalidOption(JobqError, ValueError):
    """An option has a value jobq cannot use."""


class JobNotFound(JobqError, LookupError):
    """No job has that id."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job with id {job_id!r}")
        self.job_id = job_id


class LeaseLost(JobqError):
    """The claim on this job is gone: it expired and the job was rescued,
    claimed again, or finished by someone else. Nothing was changed."""

    def __init__(self, job_id: str, detail: str = "") -> None:
        message = f"lease lost on job {job_id!r}"
        super().__init__(f"{message}: {detail}" if detail else message)
        self.job_id = job_id


class CorruptJob(JobqError):
    """A stored job cannot be decoded (its payload, metadata or result is not
    valid JSON, or a column holds what its type cannot: text in a number
    column, a time past year 9999)."""

    def __init__(self, job_id: str, detail: str) -> None:
        super().__init__(f"job {job_id!r} cannot be decoded: {detail}")
        self.job_id = job_id


class StoreUnavailable(JobqError):
    """The store could not be reached or stayed busy past its timeout."""


class BackendMissing(JobqError, ImportError):
    """A backend needs an optional dependency that is not installed."""


class QueueClosed(JobqError):
    """The queue was closed."""


class JobTimeout(JobqError, TimeoutError):
    """The handler ran past its time limit."""


class CircuitOpen(JobqError):
    """The circuit breaker for this job type is open."""


class UnknownOption(JobqError, TypeError):
    """An option name jobq does not know (often a typo)."""


# -- steering: exceptions a handler raises to decide what happens to its job --


def _check_delay(what: str, delay: object) -> None:
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not 0 <= delay < float("inf"):
        raise InvalidOption(f"{what} delay must be a number of seconds >= 0, not {delay!r}")


class RetryJob(JobqError):
    """Retry this job after ``delay`` seconds.

    Spends an attempt, like any failure; a job out of attempts fails for good
    with this exception's message. ``delay=None`` uses the processor's retry
    policy."""

    def __init__(self, delay: float | None = None, message: str | None = None) -> None:
        if delay is not None:
            _check_delay("RetryJob", delay)
        super().__init__(message or (f"retry requested in {delay:g} s" if delay is not None else None))
        self.delay = delay


class SnoozeJob(JobqError):
    """Put this job back to wait ``delay`` seconds without spending an attempt
    (for example, a resource it needs is busy). Its ``attempts`` do not
    change, so a handler that snoozes forever runs forever."""

    def __init__(self, delay: float = 0.0) -> None:
        _check_delay("SnoozeJob", delay)
        super().__init__(f"snoozed for {delay:g} s")
        self.delay = delay


class CancelJob(JobqError):
    """Stop this job for good: it ends in status ``cancelled`` with
    ``reason`` as its error, and is never retried."""

    def __init__(self, reason: str = "cancelled by its handler") -> None:
        super().__init__(reason)
        self.reason = reason


class NotRetryable(JobqError, ValueError):
    """Only a failed or cancelled job can be retried."""


class WorkerFailed(JobqError):
    """A worker stopped on its own: one of its duties (the claim loop, the
    rescuer, lease renewal, ...) kept failing and could not recover. The
    log has each failure with its traceback; ``jobq worker`` exits non-zero,
    so a supervisor starts a fresh worker."""


class NoCurrentJob(JobqError):
    """No job is running here: report_progress works only inside a handler
    run by a JobProcessor."""
