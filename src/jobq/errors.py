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


def _check_delay(what: str, delay: object) -> float:
    """The delay a steering exception carries, checked by the rule every
    delay follows (:func:`jobq.codec.check_delay`), as :class:`InvalidOption`:
    a handler that asks for an impossible delay fails its attempt with a
    message saying so, and nothing is stored."""
    from .codec import check_delay  # codec imports this module

    return check_delay(delay, f"{what} delay", InvalidOption)


class RetryJob(JobqError):
    """Retry this job after ``delay`` seconds.

    Spends an attempt, like any failure; a job out of attempts fails for good
    with this exception's message. ``delay=None`` uses the processor's retry
    policy."""

    def __init__(self, delay: float | None = None, message: str | None = None) -> None:
        if delay is not None:
            delay = _check_delay("RetryJob", delay)
        super().__init__(message or (f"retry requested in {delay:g} s" if delay is not None else None))
        self.delay = delay


class SnoozeJob(JobqError):
    """Put this job back to wait ``delay`` seconds without spending an attempt
    (for example, a resource it needs is busy). Its ``attempts`` do not
    change, so a handler that snoozes forever runs forever."""

    def __init__(self, delay: float = 0.0) -> None:
        delay = _check_delay("SnoozeJob", delay)
        super().__init__(f"snoozed for {delay:g} s")
        self.delay = delay


class CancelJob(JobqError):
    """Stop this job for good: it ends in status ``cancelled`` with
    ``reason`` as its error, and is never retried."""

    def __init__(self, reason: str = "cancelled by its handler") -> None:
        super().__init__(reason)
        self.reason = reason


class FailJob(JobqError):
    """Fail this job for good, without retrying it: the attempt is counted
    and the job ends ``failed`` with this exception's message as its error,
    whatever attempts it had left."""


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


class SchemaMismatch(JobqError):
    """The database holds a table jobq cannot use as it stands; nothing was
    changed."""


class SchemaOutdated(SchemaMismatch):
    """The job table needs creating or upgrading, which a read-only open
    never does: run ``jobq migrate URL`` (or open it with a worker) first."""


# -- results: what waiting for a job's result raises ----------------------


class JobFailed(JobqError):
    """The job failed for good; ``error`` is its stored error and
    ``error_type`` the name of the exception that failed it (``None`` when
    the store does not know it)."""

    def __init__(self, job_id: str, error: str | None, error_type: str | None = None) -> None:
        kind = f"{error_type}: " if error_type else ""
        super().__init__(f"job {job_id!r} failed: {kind}{error or 'no error recorded'}")
        self.job_id = job_id
        self.error = error
        self.error_type = error_type


class JobCancelled(JobqError):
    """The job was cancelled; it has no result."""

    def __init__(self, job_id: str, reason: str | None = None) -> None:
        super().__init__(f"job {job_id!r} was cancelled" + (f": {reason}" if reason else ""))
        self.job_id = job_id
        self.reason = reason


class ResultTimeout(JobqError, TimeoutError):
    """The job did not finish within the time waited for its result."""

    def __init__(self, job_id: str, timeout: float, status: str) -> None:
        super().__init__(f"job {job_id!r} did not finish within {timeout:g} s (it is {status})")
        self.job_id = job_id
        self.status = status

