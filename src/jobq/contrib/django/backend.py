"""``JobqBackend``: Django's task backend interface on a jobq queue.

A Django task becomes a jobq job whose type is the task function's import
path (``shop.tasks.send_receipt``), whose data is ``{"args": [...],
"kwargs": {...}}``, whose priority and named queue are the task's, and whose
delay runs to its ``run_after``. The result id Django hands back is the job
id, so ``task.get_result(id)`` reads the job again, in any process.

With ``"database": ALIAS`` (a PostgreSQL database of the project, the
default when the ``default`` database is one) the jobs live in that
database, and an enqueue inside ``transaction.atomic()`` is inserted on the
request's own connection: a rollback leaves no job, and workers hear of the
job when the transaction commits. With ``"url": ...`` (a SQLite file of its
own, or another PostgreSQL database) a job is stored at once, whatever the
request's transaction does; ``transaction.on_commit`` defers it there.
"""

from __future__ import annotations

import builtins
import os
import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from ... import errors
from ...backends import DEFAULT_URL, PostgresQueue, open_queue
from ...job import Job, JobStatus
from ...newjobs import NewJob
from ...options import reject_unknown
from ...queue import Queue
from ...sync import SyncQueue
from . import _compat as dj

#: Metadata key marking a job as a Django task's, naming the backend alias.
BACKEND_KEY = "django_backend"
#: Attempts a Django task gets unless ``"max_attempts"`` says otherwise: one,
#: as Django expects (a task that raises is FAILED); jobq retries past it.
DEFAULT_MAX_ATTEMPTS = 1
#: The ``OPTIONS`` the backend reads (lower case), each documented in
#: docs/frameworks.md.
OPTIONS = frozenset({"url", "database", "table", "max_attempts", "modules", "worker"})

_STATUS = {
    JobStatus.PENDING: "READY",
    JobStatus.DELAYED: "READY",
    JobStatus.PROCESSING: "RUNNING",
    JobStatus.COMPLETED: "SUCCESSFUL",
    JobStatus.FAILED: "FAILED",
    JobStatus.CANCELLED: "FAILED",
}


def _improperly_configured(message: str) -> Exception:
    from django.core.exceptions import ImproperlyConfigured

    return ImproperlyConfigured(message)  # type: ignore[no-any-return]


def postgres_dsn(settings_dict: Mapping[str, Any]) -> str:
    """A libpq connection string for a Django ``DATABASES`` entry: its name,
    user, password, host and port, and the ``OPTIONS`` that are libpq
    parameters (``sslmode``, ``options`` with a ``search_path``, ...), so
    jobq's connections reach the same database and schema as Django's."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    keywords = {d.keyword.decode() for d in psycopg.pq.Conninfo.get_defaults()}
    params: dict[str, Any] = {
        "dbname": settings_dict.get("NAME"),
        "user": settings_dict.get("USER"),
        "password": settings_dict.get("PASSWORD"),
        "host": settings_dict.get("HOST"),
        "port": settings_dict.get("PORT"),
    }
    for key, value in (settings_dict.get("OPTIONS") or {}).items():
        if key in keywords and isinstance(value, (str, int)) and not isinstance(value, bool):
            params[key] = value
    return make_conninfo(**{k: str(v) for k, v in params.items() if v not in (None, "")})


def _class_path(error_type: str | None) -> str:
    """The import path Django's ``TaskError`` holds, from the class name jobq
    stored: a Django task's own failures store the full path (see
    :class:`TaskRaised`); a failure jobq decided (a timeout, a lost worker)
    stores a jobq or builtin class name."""
    if not error_type:
        return "builtins.Exception"
    if "." in error_type:
        return error_type
    if isinstance(getattr(builtins, error_type, None), type):
        return f"builtins.{error_type}"
    if isinstance(getattr(errors, error_type, None), type):
        return f"jobq.{error_type}"
    return "builtins.Exception"


class TaskRaised(Exception):
    """What a Django task raised, as jobq records it. Its message is the
    formatted traceback, and the class made for each exception class (see
    :func:`raised`) is named with that class's import path, so the job's
    ``error`` and ``error_type`` give Django's ``TaskError`` its traceback
    and ``exception_class_path``."""


_raised_classes: dict[str, type[TaskRaised]] = {}
_raised_lock = threading.Lock()


def raised(exc: BaseException) -> TaskRaised:
    """:class:`TaskRaised` for ``exc``, to raise from it."""
    import traceback

    cls = type(exc)
    path = f"{cls.__module__}.{cls.__qualname__}"
    with _raised_lock:
        carrier = _raised_classes.get(path)
        if carrier is None:
            carrier = _raised_classes[path] = type(path, (TaskRaised,), {"__module__": __name__})
    return carrier("".join(traceback.format_exception(exc)))


class JobqBackend(dj.BaseTaskBackend):  # type: ignore[misc]
    """A Django task backend that stores tasks as jobq jobs; ``jobq worker``
    or ``manage.py jobq_worker`` runs them.

    ``TASKS["default"]["OPTIONS"]`` (all optional):

    - ``"database"``: the alias of a PostgreSQL database in ``DATABASES``
      that holds the jobs; an enqueue inside ``transaction.atomic()`` joins
      that transaction. Default: ``"default"`` when it is PostgreSQL.
    - ``"url"``: a jobq URL instead (``sqlite:////srv/app/jobq.db``, or a
      PostgreSQL URL); default ``$JOBQ_URL``, else ``sqlite:///jobq.db``.
    - ``"table"``: the job table in the database (jobq's default otherwise).
    - ``"max_attempts"``: attempts per task (default 1: a task that raises is
      FAILED, as Django expects; more retries it on the worker's schedule).
    - ``"modules"``: modules that define tasks, besides each installed app's
      ``tasks`` module, for the worker to import.
    - ``"worker"``: options of the worker's :class:`jobq.JobProcessor`
      (``concurrency``, ``retry_delays``, ``job_timeout``, ...).
    """

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        options: dict[str, Any] = dict(self.options)
        reject_unknown(f"TASKS[{alias!r}]['OPTIONS']", {k: v for k, v in options.items() if k not in OPTIONS}, OPTIONS)
        self.database: str | None = options.get("database")
        url: str | None = options.get("url")
        table: str | None = options.get("table")
        if self.database is not None and url is not None:
            raise _improperly_configured(f"TASKS[{alias!r}]: give OPTIONS 'database' or 'url', not both")
        if self.database is None and url is None and self._engine("default").endswith("postgresql"):
            self.database = "default"
        if self.database is not None:
            if not self._engine(self.database).endswith("postgresql"):
                raise _improperly_configured(
                    f"TASKS[{alias!r}]: OPTIONS 'database' names {self.database!r}, which is not a"
                    " PostgreSQL database; use 'url' for a SQLite file of jobq's own"
                )
            from django.db import connections

            dsn = postgres_dsn(connections[self.database].settings_dict)
            extra: dict[str, Any] = {} if table is None else {"table": table}
            self.open_queue: Callable[[], Queue] = lambda: PostgresQueue(dsn, **extra)
            self.where = f"database {self.database!r}"
        else:
            chosen = url or os.environ.get("JOBQ_URL") or DEFAULT_URL
            if table is not None:
                chosen += ("&" if "?" in chosen else "?") + urlencode({"table": table})
            self.open_queue = lambda: open_queue(chosen)
            self.where = chosen
        self.max_attempts: int = options.get("max_attempts", DEFAULT_MAX_ATTEMPTS)
        if isinstance(self.max_attempts, bool) or not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise _improperly_configured(f"TASKS[{alias!r}]: 'max_attempts' must be an int >= 1")
        self.modules: list[str] = list(options.get("modules", ()))
        self.worker_options: dict[str, Any] = dict(options.get("worker", {}))
        self._queue: SyncQueue | None = None
        self._lock = threading.Lock()

    @staticmethod
    def _engine(alias: str) -> str:
        from django.conf import settings

        entry = settings.DATABASES.get(alias)
        return str(entry.get("ENGINE", "")) if entry else ""

    # -- the queue ------------------------------------------------------------------

    @property
    def queue(self) -> SyncQueue:
        """The jobq queue of this backend, with its verbs as plain methods
        (opened on first use; a process forked after that opens its own)."""
        with self._lock:
            if self._queue is None:
                self._queue = SyncQueue(self.open_queue(), reopen=self.open_queue)
            return self._queue

    def close(self) -> None:
        """Closes the queue (it opens again on next use)."""
        with self._lock:
            queue, self._queue = self._queue, None
        if queue is not None:
            queue.close()

    def _transaction(self) -> Any:
        """The psycopg connection of the request's open transaction on the
        backend's database, if one is open; else ``None`` (the job commits on
        its own)."""
        if self.database is None:
            return None
        from django.db import connections

        connection = connections[self.database]
        if not connection.in_atomic_block and connection.get_autocommit():
            return None
        connection.ensure_connection()
        raw = connection.connection
        import psycopg

        if not isinstance(raw, psycopg.Connection):
            raise _improperly_configured(
                "jobq joins Django's transaction through psycopg 3; this database uses"
                f" {type(raw).__module__}.{type(raw).__name__} (pip install 'psycopg[binary]')"
            )
        return raw

    # -- Django's interface -----------------------------------------------------------

    def enqueue(self, task: Any, args: Any, kwargs: Any) -> Any:
        """Stores a job that runs ``task(*args, **kwargs)``; returns its
        ``TaskResult`` (status READY), whose id is the job's."""
        self.validate_task(task)
        data = {"args": dj.normalize_json(list(args)), "kwargs": dj.normalize_json(dict(kwargs))}
        delay = 0.0
        if task.run_after is not None:
            from django.utils import timezone

            delay = max(0.0, (task.run_after - timezone.now()).total_seconds())
        spec = NewJob(
            task.module_path, data, priority=task.priority, delay=delay, max_attempts=self.max_attempts,
            metadata={BACKEND_KEY: self.alias}, queue=task.queue_name,
        )  # fmt: skip
        (job,) = self.queue.enqueue_many([spec], connection=self._transaction())
        result = self.result_of(job, task)
        dj.task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> Any:
        """The ``TaskResult`` of a job by id, as stored now; Django's
        ``TaskResultDoesNotExist`` if there is none (or it is no Django
        task's)."""
        job = self.queue.get_job(str(result_id))
        if job is None or not isinstance(job.metadata, dict) or BACKEND_KEY not in job.metadata:
            raise dj.TaskResultDoesNotExist(result_id)
        return self.result_of(job)

    # -- jobs and results -------------------------------------------------------------

    def task_of(self, job: Job[Any]) -> Any:
        """The Django ``Task`` a job runs, as it was enqueued (its priority,
        queue and ``run_after``)."""
        from django.utils.module_loading import import_string

        try:
            task = import_string(job.type)
        except ImportError:
            raise dj.TaskResultDoesNotExist(job.id) from None
        if not isinstance(task, dj.Task):
            raise dj.TaskResultDoesNotExist(job.id)
        try:
            return task.using(
                priority=job.priority, queue_name=job.queue, backend=self.alias,
                run_after=self._time(job.process_at) if job.delay > 0 else None,
            )  # fmt: skip
        except dj.InvalidTask:
            return task  # enqueued with settings this backend no longer accepts

    def result_of(self, job: Job[Any], task: Any = None) -> Any:
        """A job as Django's ``TaskResult``: READY while it waits (a retry
        included), RUNNING, SUCCESSFUL, or FAILED (a cancelled job too)."""
        status = dj.TaskResultStatus[_STATUS[job.status]]
        data = job.data if isinstance(job.data, dict) else {}
        runs = job.attempts + (1 if job.status in (JobStatus.PROCESSING, JobStatus.COMPLETED) else 0)
        failed = job.error is not None and job.status is not JobStatus.COMPLETED
        errors_seen = [
            dj.TaskError(exception_class_path=_class_path(job.error_type), traceback=job.error or "")
        ] if failed else []  # fmt: skip
        result = dj.TaskResult(
            task=task if task is not None else self.task_of(job),
            id=job.id,
            status=status,
            enqueued_at=self._time(job.created_at),
            started_at=self._time(job.started_at),
            finished_at=self._time(job.completed_at or job.failed_at or job.cancelled_at),
            last_attempted_at=self._time(job.started_at),
            args=data.get("args", []),
            kwargs=data.get("kwargs", {}),
            backend=self.alias,
            errors=errors_seen,
            worker_ids=[job.lease_owner or ""] * runs,
        )
        if status == dj.TaskResultStatus.SUCCESSFUL:
            object.__setattr__(result, "_return_value", job.result)
        return result

    @staticmethod
    def _time(moment: datetime | None) -> datetime | None:
        """A time as Django expects it: aware with ``USE_TZ``, else naive local."""
        if moment is None:
            return None
        from django.conf import settings
        from django.utils import timezone

        return moment if settings.USE_TZ else timezone.make_naive(moment)
