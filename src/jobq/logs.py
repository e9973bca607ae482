"""What jobq logs, and how: every rule about log lines lives here.

jobq logs through the standard :mod:`logging` module, under the ``jobq``
logger tree:

- ``jobq.job``: one line per job outcome, with the job's id, type, queue,
  attempt (``n of max``), the handler's duration in seconds and the outcome:
  a start and a completion at DEBUG, a cancellation, snooze or release at
  INFO, a retry at WARNING, a failure for good at ERROR with its traceback,
  a rescue (naming the lost worker) at WARNING;
- ``jobq.worker``: a worker's start (its queue's location, queues and
  handlers) and stop, at INFO;
- ``jobq`` and the rest of the tree: the worker's duties (leases, claims,
  writes) when they meet trouble.

The fields of a job line are also attributes of its record (``job_id``,
``job_type``, ``queue``, ``attempt``, ``max_attempts``, ``duration``,
``outcome``), so a structured formatter needs no parsing.
:class:`JobContextFilter`, on a handler, gives every record logged while a
job runs (the application's own lines in a handler included) the running
job's ``job_id`` and ``job_type``. :func:`configure` sets up the root logger
as ``jobq worker`` does: ``text`` lines or ``json`` (one object per line).

Logging is cheap on the hot path: a completion is logged at DEBUG, and the
line (and its fields) is built only if that level is enabled.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import traceback
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .context import current_job
from .errors import InvalidOption

if TYPE_CHECKING:
    from .job import Job
    from .queue import Queue

DEBUG = logging.DEBUG
#: The logger of job outcomes, and that of a worker's life.
job_log = logging.getLogger("jobq.job")
worker_log = logging.getLogger("jobq.worker")

#: The formats :func:`configure` knows.
LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: The record attributes a job line carries (and a JSON line shows when set).
JOB_FIELDS = (
    "job_id", "job_type", "queue", "attempt", "max_attempts", "duration", "outcome", "error", "error_type",
    "delay", "worker",
)  # fmt: skip

__all__ = [
    "JOB_FIELDS",
    "LOG_FORMATS",
    "JobContextFilter",
    "JsonFormatter",
    "configure",
    "job_log",
    "job_outcome",
    "job_rescued",
    "job_started",
    "where",
    "worker_log",
    "worker_started",
    "worker_stopped",
]


# -- job lines -------------------------------------------------------------------


def _fields(job: Job[Any], outcome: str, duration: float | None) -> dict[str, Any]:
    return {
        "job_id": job.id,
        "job_type": job.type,
        "queue": job.queue,
        # ``attempts`` counts the failed attempts before this one.
        "attempt": job.attempts + 1,
        "max_attempts": job.max_attempts,
        "duration": None if duration is None else round(duration, 6),
        "outcome": outcome,
    }


def _head(job: Job[Any]) -> str:
    return f"job {job.id} ({job.type}) on queue {job.queue}, attempt {job.attempts + 1} of {job.max_attempts}"


def _log(logger: logging.Logger, level: int, text: str, exc_info: Any, extra: dict[str, Any]) -> None:
    """Logs one line; a log handler (or filter) that raises never reaches
    the job or the worker: it is told on stderr, once per failure."""
    try:
        logger.log(level, "%s", text, exc_info=exc_info, extra=extra)
    except Exception as exc:  # noqa: BLE001 - logging is never why a job fails
        with contextlib.suppress(Exception):  # nowhere left to tell
            sys.stderr.write(f"jobq: a log handler raised {type(exc).__name__}: {exc}\n")


def job_started(job: Job[Any]) -> None:
    """A handler is about to run (DEBUG)."""
    if job_log.isEnabledFor(logging.DEBUG):
        _log(job_log, logging.DEBUG, f"{_head(job)}: started", None, _fields(job, "started", None))


#: The level of each outcome's line (a failure with no exception object,
#: such as a job type without a handler, is an ERROR too, without traceback).
LEVELS = {
    "completed": logging.DEBUG,
    "retry": logging.WARNING,
    "failed": logging.ERROR,
    "snoozed": logging.INFO,
    "cancelled": logging.INFO,
    "released": logging.INFO,
}


def job_outcome(
    job: Job[Any],
    outcome: str,
    duration: float,
    *,
    error: str | None = None,
    exception: BaseException | None = None,
    delay: float | None = None,
) -> None:
    """One line for what became of one attempt, written to the store:
    ``outcome`` is one of :data:`LEVELS`. A final failure carries the
    exception's traceback."""
    level = LEVELS[outcome]
    if not job_log.isEnabledFor(level):
        return
    text = f"{_head(job)}: {outcome} after {duration:.3f} s"
    if error is not None:
        kind = type(exception).__name__ if exception is not None else None
        text += f": {kind}: {error}" if kind and kind != error else f": {error}"
    if delay is not None:
        text += f"; runs again in {delay:g} s"
    fields = _fields(job, outcome, duration)
    if error is not None:
        fields["error"] = error
        fields["error_type"] = None if exception is None else type(exception).__name__
    fields["delay"] = delay
    exc_info = exception if outcome == "failed" and exception is not None else None
    _log(job_log, level, text, exc_info, fields)


def job_rescued(job: Job[Any]) -> None:
    """A job whose worker was lost, taken back by the rescuer (WARNING); its
    error names the lost worker."""
    if job_log.isEnabledFor(logging.WARNING):
        fields = _fields(job, "rescued", None)
        fields["attempt"] = job.attempts  # the rescue counted the lost attempt already
        text = f"job {job.id} ({job.type}) on queue {job.queue} was rescued: {job.error}; now {job.status.value}"
        _log(job_log, logging.WARNING, text, None, fields)


# -- a worker's life -----------------------------------------------------------------


def where(queue: Queue) -> str:
    """Where ``queue`` keeps its jobs, as a URL fit for a log: a SQLite
    file's absolute path, a PostgreSQL server's host, port and database
    (never a password)."""
    store = queue.store
    name = str(getattr(store, "name", type(store).__name__))
    path = getattr(getattr(store, "db", None), "path", None)
    if name == "sqlite" and isinstance(path, str):
        return "sqlite:///" + (path if path == ":memory:" else os.path.abspath(path))
    server = getattr(store, "where", None)
    if name == "postgres" and isinstance(server, str):
        return f"postgresql://{server}"
    return "memory://" if name == "memory" else name


def worker_started(
    worker_id: str, queue: Queue, queues: Iterable[str] | None, handlers: Iterable[str], concurrency: int, grace: float
) -> None:
    """A worker claims jobs (INFO): where, how many at once, from which
    queues, its grace at stop, and the job types it handles."""
    named = ",".join(queues) if queues else "all"
    types = ",".join(sorted(handlers)) or "none"
    text = (
        f"worker {worker_id} started on {where(queue)}, concurrency {concurrency}, queues {named},"
        f" grace {grace:g} s, handlers {types}"
    )
    _log(worker_log, logging.INFO, text, None, {"worker": worker_id})


def worker_stopped(worker_id: str) -> None:
    _log(worker_log, logging.INFO, f"worker {worker_id} stopped", None, {"worker": worker_id})


# -- formats ---------------------------------------------------------------------------


class JobContextFilter(logging.Filter):
    """Gives each record logged while a job runs (in its handler, or a sync
    handler's thread) that job's ``job_id`` and ``job_type``, unless the
    record has its own. Add it to a handler (``handler.addFilter``); it
    never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "job_id"):
            job = current_job()
            if job is not None:
                record.job_id = job.id
                record.job_type = job.type
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (ISO 8601, UTC), ``level``,
    ``logger``, ``message``, the job fields a record has
    (:data:`JOB_FIELDS`), and ``traceback`` when it carries an exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in JOB_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info and record.exc_info[1] is not None:
            line["exception"] = type(record.exc_info[1]).__name__
            line["traceback"] = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        elif record.exc_text:
            line["traceback"] = record.exc_text
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, default=str, ensure_ascii=False)


def configure(level: str | int = "INFO", fmt: str = "text", stream: Any = None) -> logging.Handler:
    """Sets up the root logger as ``jobq worker`` does: one handler on
    ``stream`` (default stderr) writing ``text`` lines or ``json`` objects,
    with :class:`JobContextFilter`. Replaces the handlers it installed
    before; returns the handler."""
    if fmt not in LOG_FORMATS:
        raise InvalidOption(f"the log format is one of {', '.join(LOG_FORMATS)}, not {fmt!r}")
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(JobContextFilter())
    handler._jobq = True  # type: ignore[attr-defined]  # marks the handler this function owns
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_jobq", False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
