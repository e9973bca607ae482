"""jobq: background jobs for Python applications, embedded on SQLite by default.

The public API is everything imported here; see ``README.md``.
"""

from .admin import CountRow, JobPage, Retention, ThroughputRow
from .backends import DEFAULT_URL, MemoryQueue, PostgresQueue, SQLiteQueue, connect
from .clock import Clock, FakeClock, SystemClock
from .context import current_job, report_progress, report_progress_sync
from .conversion import ArgumentMismatch, ResultMismatch
from .errors import (
    BackendMissing,
    CancelJob,
    CircuitOpen,
    CorruptJob,
    FailJob,
    InvalidJob,
    InvalidOption,
    InvalidURL,
    JobCancelled,
    JobFailed,
    JobNotFound,
    JobqError,
    JobTimeout,
    LeaseLost,
    NoCurrentJob,
    NotRetryable,
    QueueClosed,
    ResultTimeout,
    RetryJob,
    SchemaMismatch,
    SnoozeJob,
    StoreUnavailable,
    UnknownOption,
    WorkerFailed,
)
from .events import EVENTS, Event, ProcessorMetrics, QueueStatus
from .job import TERMINAL_STATUSES, Job, JobStatus, RetryDirective
from .keylimits import KeyLimit
from .newjobs import NewJob
from .processor.limits import CircuitBreaker, CircuitState, RateLimit
from .processor.processor import JobProcessor
from .queue import Queue
from .retry import ExponentialBackoff, FixedDelays, RetryPolicy
from .sync import SyncQueue, connect_sync
from .tasks import App, JobHandle, Task

__version__ = "0.1.0"

__all__ = [
    "App",
    "ArgumentMismatch",
    "FailJob",
    "JobCancelled",
    "JobFailed",
    "JobHandle",
    "ResultMismatch",
    "ResultTimeout",
    "Task",
    "CountRow",
    "JobPage",
    "KeyLimit",
    "NoCurrentJob",
    "NotRetryable",
    "Retention",
    "ThroughputRow",
    "current_job",
    "report_progress",
    "report_progress_sync",
    "DEFAULT_URL",
    "EVENTS",
    "TERMINAL_STATUSES",
    "BackendMissing",
    "CancelJob",
    "CircuitBreaker",
    "CircuitOpen",
    "CircuitState",
    "Clock",
    "CorruptJob",
    "Event",
    "ExponentialBackoff",
    "FakeClock",
    "FixedDelays",
    "InvalidJob",
    "InvalidOption",
    "InvalidURL",
    "Job",
    "JobNotFound",
    "JobProcessor",
    "JobStatus",
    "JobTimeout",
    "JobqError",
    "LeaseLost",
    "MemoryQueue",
    "NewJob",
    "PostgresQueue",
    "ProcessorMetrics",
    "Queue",
    "QueueClosed",
    "QueueStatus",
    "RateLimit",
    "RetryDirective",
    "RetryJob",
    "RetryPolicy",
    "SQLiteQueue",
    "SchemaMismatch",
    "SnoozeJob",
    "StoreUnavailable",
    "SyncQueue",
    "SystemClock",
    "UnknownOption",
    "WorkerFailed",
    "connect",
    "connect_sync",
]
