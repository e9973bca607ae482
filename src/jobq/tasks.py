"""Tasks: typed functions run as jobs, the API applications write against.

::

    app = jobq.App("sqlite:///jobq.db")

    @app.task(queue="sms", max_attempts=5, retry=jobq.ExponentialBackoff(), timeout=30)
    async def send_sms(to: str, body: str, at: datetime | None = None) -> Receipt: ...

    job = await send_sms.defer(to="+821012345678", body="hi")
    receipt = await job.result(timeout=10)

A task's settings are the defaults of its jobs wherever they are enqueued
(a web app and a worker agree, since both read the decorator), and the
worker runs the function with each job. The stored job stays a k-msg job:
its type is the task's name, its data the call's arguments by name as JSON
(:mod:`jobq.conversion` turns typed values into JSON and back).
"""

from __future__ import annotations

import asyncio
import os
import sys
import weakref
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Generic, ParamSpec, TypeVar, cast, overload

from .backends import DEFAULT_URL, connect, open_queue
from .conversion import ResultMismatch, Signature
from .errors import InvalidOption, JobCancelled, JobFailed, JobNotFound
from .job import DEFAULT_MAX_ATTEMPTS, DEFAULT_QUEUE, Job, JobStatus
from .keylimits import KeyLimit
from .newjobs import Defaults, NewJob, check_timeout
from .processor.executor import is_async
from .processor.processor import JobProcessor
from .queue import Queue
from .retry import RetryPolicy
from .sync import SyncQueue, leave_in_parent

P = ParamSpec("P")
R = TypeVar("R")

#: Environment variable naming the queue URL of an :class:`App` given none.
URL_VARIABLE = "JOBQ_URL"

def _default_name(fn: Callable[..., Any]) -> str:
    """``module.function``: stable while the function keeps its module and
    name. A script run directly names its module as a worker importing it
    would (``python -m pkg.jobs`` is ``pkg.jobs``, ``python jobs.py`` is
    ``jobs``), not ``__main__``."""
    module = getattr(fn, "__module__", None) or "task"
    if module == "__main__":
        main = sys.modules.get("__main__")
        spec = getattr(main, "__spec__", None)
        if spec is not None and spec.name:
            module = spec.name
        else:
            path = getattr(main, "__file__", None)
            if isinstance(path, str):
                module = os.path.splitext(os.path.basename(path))[0]
    return f"{module}.{fn.__qualname__.replace('.<locals>', '')}"


@dataclass(frozen=True, slots=True)
class CallOptions:
    """Per-call overrides of a task's settings (``None``: the task's)."""

    delay: float = 0
    priority: int | None = None
    queue: str | None = None
    max_attempts: int | None = None
    timeout: float | None = None
    unique_key: str | None = None
    metadata: Mapping[str, Any] | None = None
    connection: Any = None


class Task(Generic[P, R]):
    """A function registered with an :class:`App`, run by its workers.

    Calling the task calls the function here and now; :meth:`defer` (async)
    and :meth:`defer_sync` store a job that a worker runs, and return a
    :class:`JobHandle` for its result. :meth:`options` overrides settings
    for one call."""

    def __init__(
        self,
        app: App,
        fn: Callable[P, Awaitable[R]] | Callable[P, R],
        *,
        name: str,
        defaults: Defaults,
        retry: RetryPolicy | None,
        limits: Sequence[KeyLimit],
    ) -> None:
        self.app = app
        self.fn = fn
        self.name = name
        self.defaults = defaults
        self.retry = retry
        self.limits = tuple(limits)
        self.signature = Signature(fn, name)
        self.is_async = is_async(fn)
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def __repr__(self) -> str:
        return f"<Task {self.name} queue={self.defaults.queue!r}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Any:
        """Runs the function itself, in this process (a coroutine for an
        async task)."""
        return self.fn(*args, **kwargs)

    # -- enqueueing ------------------------------------------------------------

    def options(
        self,
        *,
        delay: float = 0,
        priority: int | None = None,
        queue: str | None = None,
        max_attempts: int | None = None,
        timeout: float | None = None,
        unique_key: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        connection: Any = None,
    ) -> Deferral[P, R]:
        """This task with settings overridden for the calls made through
        the result: ``delay`` (seconds before it may run), ``priority``,
        ``queue``, ``max_attempts``, ``timeout`` (seconds it may run),
        ``unique_key`` (see :meth:`jobq.Queue.enqueue`), ``metadata``
        (merged over what the task sets) and ``connection`` (an open
        PostgreSQL transaction to enqueue in)."""
        return Deferral(
            self, CallOptions(delay, priority, queue, max_attempts, timeout, unique_key, metadata, connection)
        )

    async def defer(self, *args: P.args, **kwargs: P.kwargs) -> JobHandle[R]:
        """Stores a job that runs this task with these arguments; returns its
        handle. ``TypeError`` for arguments that do not fit the function's
        signature, :class:`~jobq.InvalidJob` for a value with no JSON form:
        in both cases before anything is stored."""
        spec = self._new_job(_NO_OPTIONS, args, kwargs)
        (job,) = await (await self.app.open()).enqueue_many([spec])
        return JobHandle(self.app, job, self)

    def defer_sync(self, *args: P.args, **kwargs: P.kwargs) -> JobHandle[R]:
        """:meth:`defer` for code that is not async (Django, Flask, scripts)."""
        return Deferral(self, _NO_OPTIONS).defer_sync(*args, **kwargs)

    def job(self, *args: P.args, **kwargs: P.kwargs) -> NewJob:
        """The job a call would store, checked and not stored: for
        :meth:`App.defer_many`, which stores many in one transaction."""
        return self._new_job(_NO_OPTIONS, args, kwargs)

    def _new_job(self, call: CallOptions, args: tuple[Any, ...], kwargs: dict[str, Any]) -> NewJob:
        """The job of one call with ``call``'s settings (see :meth:`options`)."""
        data = self.signature.encode(args, kwargs)
        metadata = dict(call.metadata) if call.metadata else None
        for limit in self.limits:
            # A per-key limit reads its key from the metadata; a task takes it
            # from the argument of the same name unless told.
            value = data.get(limit.key)
            if isinstance(value, (str, int)) and not isinstance(value, bool):
                if metadata is None:
                    metadata = {}
                metadata.setdefault(limit.key, value)
        return self.defaults.job(
            self.name, data, priority=call.priority, delay=call.delay, max_attempts=call.max_attempts,
            metadata=metadata, queue=call.queue, unique_key=call.unique_key, timeout=call.timeout,
        )  # fmt: skip

    # -- running -----------------------------------------------------------------

    def handler(self) -> Callable[[Job[Any]], Any]:
        """The job handler a worker registers for this task: it decodes the
        job's arguments into the annotated types and calls the function (a
        plain function in a worker thread, as every sync handler)."""
        decode, plain = self.signature.decode, self.signature.is_plain_call
        fn = cast(Callable[..., Any], self.fn)
        if self.is_async:
            coroutine_fn = cast(Callable[..., Awaitable[Any]], fn)

            async def run_async(job: Job[Any]) -> Any:
                data = job.data
                if plain(data):
                    return await coroutine_fn(**data)
                positional, named = decode(data)
                return await coroutine_fn(*positional, **named)

            return run_async

        def run(job: Job[Any]) -> Any:
            data = job.data
            if plain(data):
                return fn(**data)
            positional, named = decode(data)
            return fn(*positional, **named)

        return run


class Deferral(Generic[P, R]):
    """A task with per-call settings (:meth:`Task.options`)."""

    __slots__ = ("task", "call")

    def __init__(self, task: Task[P, R], call: CallOptions) -> None:
        self.task = task
        self.call = call

    def job(self, *args: P.args, **kwargs: P.kwargs) -> NewJob:
        return self.task._new_job(self.call, args, kwargs)

    async def defer(self, *args: P.args, **kwargs: P.kwargs) -> JobHandle[R]:
        spec = self.job(*args, **kwargs)
        queue = await self.task.app.open()
        (job,) = await queue.enqueue_many([spec], connection=self.call.connection)
        return JobHandle(self.task.app, job, self.task)

    def defer_sync(self, *args: P.args, **kwargs: P.kwargs) -> JobHandle[R]:
        spec = self.job(*args, **kwargs)
        connection = self.call.connection
        (job,) = self.task.app.open_sync().enqueue_many([spec], connection=connection)
        return JobHandle(self.task.app, job, self.task)


_NO_OPTIONS = CallOptions()


class JobHandle(Generic[R]):
    """A job stored by :meth:`Task.defer`: its id, the job as stored, and
    its result once it finishes.

    ``await handle.result(timeout=10)`` (or ``handle.result_sync(...)``)
    returns the task's return value, decoded into its annotated type;
    raises :class:`~jobq.JobFailed` (with the stored error and its exception
    type) for a job that failed for good, :class:`~jobq.JobCancelled` for a
    cancelled one and :class:`~jobq.ResultTimeout` (a ``TimeoutError``) when
    the time runs out."""

    __slots__ = ("app", "job", "task")

    def __init__(self, app: App, job: Job[Any], task: Task[Any, R] | None = None) -> None:
        self.app = app
        self.job = job
        """The job as stored when deferred (or last read)."""
        self.task = task

    @property
    def id(self) -> str:
        return self.job.id

    @property
    def deduplicated(self) -> bool:
        """Whether an unfinished job with the same ``unique_key`` was found
        and nothing new was stored (this handle then follows that job)."""
        return self.job.deduplicated

    def __repr__(self) -> str:
        return f"<JobHandle {self.job.type} {self.job.id} {self.job.status.value}>"

    def _outcome(self, job: Job[Any]) -> R:
        self.job = job
        if job.status is JobStatus.COMPLETED:
            task = self.task or self.app.tasks.get(job.type)
            if task is None or job.result is None:
                return cast(R, job.result)
            try:
                return cast(R, task.signature.decode_result(job.result))
            except Exception as exc:  # noqa: BLE001 - msgspec's or a model's own error
                raise ResultMismatch(
                    f"the result of job {job.id!r} does not fit {task.name}'s return type: {exc}"
                ) from None
        if job.status is JobStatus.CANCELLED:
            raise JobCancelled(job.id, job.error)
        raise JobFailed(job.id, job.error, getattr(job, "error_type", None))

    async def result(self, timeout: float | None = None) -> R:
        """Waits until the job finished (``timeout`` seconds at most; ``None``:
        no limit) and returns its result (see the class notes)."""
        queue = await self.app.open()
        return self._outcome(await queue.wait(self.job.id, timeout=timeout))

    def result_sync(self, timeout: float | None = None) -> R:
        """:meth:`result` for code that is not async."""
        return self._outcome(self.app.open_sync().wait(self.job.id, timeout=timeout))

    async def refresh(self) -> Job[Any]:
        """The job as stored now."""
        job = await (await self.app.open()).get_job(self.job.id)
        if job is None:
            raise JobNotFound(self.job.id)
        self.job = job
        return job

    def refresh_sync(self) -> Job[Any]:
        job = self.app.open_sync().get_job(self.job.id)
        if job is None:
            raise JobNotFound(self.job.id)
        self.job = job
        return job

    async def cancel(self) -> bool:
        """Cancels the job (see :meth:`jobq.Queue.cancel`)."""
        return await (await self.app.open()).cancel(self.job.id)

    def cancel_sync(self) -> bool:
        return self.app.open_sync().cancel(self.job.id)


class App:
    """An application's tasks and the queue they go through.

    ``url``: the queue URL (``sqlite:///...``, ``postgresql://...``,
    ``memory://``); without one, ``$JOBQ_URL``, else ``sqlite:///jobq.db``.
    ``queue``: a queue already open, used as it is instead. Other keyword
    options go to the queue (``lease``, ``clock``, ...).

    The queue opens on first use: once per event loop for async calls, and
    once for synchronous ones (on a thread of its own, see
    :func:`jobq.connect_sync`); after ``os.fork()`` a child opens its own.
    """

    def __init__(self, url: str | None = None, *, queue: Queue | None = None, **options: Any) -> None:
        if url is not None and queue is not None:
            raise InvalidOption("give App a url or a queue, not both")
        self.url = url or os.environ.get(URL_VARIABLE) or DEFAULT_URL
        self.options = options
        self.tasks: dict[str, Task[Any, Any]] = {}
        self._given = queue
        self._queues: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Queue] = (
            weakref.WeakKeyDictionary()
        )
        self._sync: SyncQueue | None = None
        if queue is None and self.url.startswith("memory:"):
            # One store for the whole process, whatever loop or thread asks.
            self._given = open_queue(self.url, **options)
        _apps.add(self)

    def __repr__(self) -> str:
        return f"<App {self.url if self._given is None else self._given!r} tasks={len(self.tasks)}>"

    # -- tasks -------------------------------------------------------------------

    @overload
    def task(self, fn: Callable[P, Awaitable[R]], /) -> Task[P, R]: ...
    @overload
    def task(self, fn: Callable[P, R], /) -> Task[P, R]: ...
    @overload
    def task(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        queue: str = DEFAULT_QUEUE,
        priority: int = 0,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        limits: Sequence[KeyLimit] = (),
    ) -> _TaskDecorator: ...
    def task(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        queue: str = DEFAULT_QUEUE,
        priority: int = 0,
        max_attempts: int = DEFAULT_MAX_ATTEMPTS,
        retry: RetryPolicy | None = None,
        timeout: float | None = None,
        limits: Sequence[KeyLimit] = (),
    ) -> Any:
        """Registers a function (async or plain) as a task; as ``@app.task``
        or ``@app.task(...)``.

        - ``name``: the stored job type (default ``module.function``); give
          one to keep jobs already queued runnable across a rename.
        - ``queue``, ``priority``, ``max_attempts``: its jobs' defaults.
        - ``retry``: its retry policy (default: the worker's ``retry_delays``).
        - ``timeout``: seconds a run may take (default: the worker's limit).
        - ``limits``: :class:`jobq.KeyLimit` s for its jobs, enforced by the
          workers of this app; the key's value comes from the argument of
          the same name unless the call's metadata gives it.
        """
        from .newjobs import new_records  # checks the defaults as a job would be

        def register(function: Callable[..., Any]) -> Task[Any, Any]:
            if not callable(function):
                raise TypeError(f"@app.task decorates a function, not {type(function).__name__}")
            task_name = name or _default_name(function)
            if retry is not None and not isinstance(retry, RetryPolicy):
                raise InvalidOption(
                    f"retry must be a retry policy such as jobq.ExponentialBackoff, not {retry!r}"
                )
            seconds = None if timeout is None else check_timeout(timeout)
            defaults = Defaults(priority, max_attempts, queue, seconds)
            new_records([defaults.job(task_name)], 0, ["0"], 1024)  # bad settings fail here
            checked = tuple(
                replace(limit, type=task_name) if limit.type is None else limit for limit in limits
            )
            existing = self.tasks.get(task_name)
            if existing is not None and existing.fn is not function:
                raise InvalidOption(
                    f"a task named {task_name!r} is registered already; give this one a name="
                )
            made: Task[Any, Any] = Task(
                self, function, name=task_name, defaults=defaults, retry=retry, limits=checked
            )
            self.tasks[task_name] = made
            return made

        if fn is not None:
            return register(fn)
        return register

    # -- the queue ---------------------------------------------------------------

    async def open(self) -> Queue:
        """The app's queue for the running event loop (opened on first use)."""
        if self._given is not None:
            return self._given
        loop = asyncio.get_running_loop()
        queue = self._queues.get(loop)
        if queue is None:
            queue = self._queues[loop] = await connect(self.url, **self.options)
        return queue

    def open_sync(self) -> SyncQueue:
        """The app's queue for code that is not async (opened on first use)."""
        if self._sync is None:
            if self._given is not None:
                self._sync = SyncQueue(self._given)
            else:
                url, options = self.url, self.options
                self._sync = SyncQueue(open_queue(url, **options), reopen=lambda: open_queue(url, **options))
        return self._sync

    async def defer_many(self, jobs: Iterable[NewJob], *, connection: Any = None) -> list[JobHandle[Any]]:
        """Stores many jobs (:meth:`Task.job`) in one transaction: all or,
        on bad input anywhere, none."""
        stored = await (await self.open()).enqueue_many(jobs, connection=connection)
        return [JobHandle(self, job, self.tasks.get(job.type)) for job in stored]

    def defer_many_sync(self, jobs: Iterable[NewJob], *, connection: Any = None) -> list[JobHandle[Any]]:
        stored = self.open_sync().enqueue_many(jobs, connection=connection)
        return [JobHandle(self, job, self.tasks.get(job.type)) for job in stored]

    async def get(self, job_id: str) -> JobHandle[Any]:
        """A handle on any job by id (for example one a web request deferred
        earlier); :class:`~jobq.JobNotFound` if there is none."""
        job = await (await self.open()).get_job(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return JobHandle(self, job, self.tasks.get(job.type))

    def get_sync(self, job_id: str) -> JobHandle[Any]:
        job = self.open_sync().get_job(job_id)
        if job is None:
            raise JobNotFound(job_id)
        return JobHandle(self, job, self.tasks.get(job.type))

    # -- workers -----------------------------------------------------------------

    def processor(self, queue: Queue, **options: Any) -> JobProcessor:
        """A :class:`jobq.JobProcessor` on ``queue`` that runs this app's
        tasks, each with its own timeout, retry policy and per-key limits.
        ``options`` are the processor's (``concurrency``, ``queues``, ...)."""
        limits = list(options.pop("limits", ()))
        for task in self.tasks.values():
            limits.extend(limit for limit in task.limits if limit not in limits)
        processor = JobProcessor(queue, limits=limits, **options)
        for task in self.tasks.values():
            timeout = task.defaults.timeout
            processor.handle(task.name, task.handler(), timeout=timeout, retry=task.retry)
        return processor

    async def run_worker(self, **options: Any) -> None:
        """Runs a worker for this app's tasks in this process until SIGTERM
        or Ctrl-C (see :meth:`jobq.JobProcessor.run`); ``options`` as for
        :meth:`processor`."""
        await self.processor(await self.open(), **options).run()

    # -- closing -----------------------------------------------------------------

    async def close(self) -> None:
        """Closes the queue of the running loop (and a given queue)."""
        queue = self._given
        if queue is None:
            queue = self._queues.pop(asyncio.get_running_loop(), None)
        if queue is not None:
            await queue.close()

    def close_sync(self) -> None:
        """Closes the synchronous queue."""
        sync_queue, self._sync = self._sync, None
        if sync_queue is not None:
            sync_queue.close()

    def _after_fork_in_child(self) -> None:
        leave_in_parent(dict(self._queues))
        self._queues = weakref.WeakKeyDictionary()


class _TaskDecorator:
    """What ``@app.task(...)`` returns: registers the function it decorates."""

    @overload
    def __call__(self, fn: Callable[P, Awaitable[R]], /) -> Task[P, R]: ...
    @overload
    def __call__(self, fn: Callable[P, R], /) -> Task[P, R]: ...
    def __call__(self, fn: Callable[..., Any], /) -> Any: ...


_apps: weakref.WeakSet[App] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for app in list(_apps):
        app._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)
