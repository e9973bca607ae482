"""The worker side of :class:`~jobq.contrib.django.JobqBackend`: a
:class:`jobq.JobProcessor` that runs a Django project's tasks.

Two ways to start one, both with ``DJANGO_SETTINGS_MODULE`` set::

    jobq worker jobq.contrib.django.worker:processor --concurrency 8
    python manage.py jobq_worker --concurrency 8     # "jobq.contrib.django" in INSTALLED_APPS

The worker knows a task by its import path (the job's type). It imports
each installed app's ``tasks`` module and the backend's ``"modules"``, and
registers every Django task they define; a job of a task it does not know
fails with ``No handler registered for job type: <path>``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from types import ModuleType
from typing import Any

from ...errors import CancelJob, FailJob, RetryJob, SnoozeJob
from ...job import Job
from ...processor.processor import JobProcessor
from . import _compat as dj
from .backend import JobqBackend, raised

#: What a task may raise to steer its job as any jobq handler does; passed
#: through as it is, never recorded as the task's failure.
STEERING = (RetryJob, SnoozeJob, CancelJob, FailJob)


def setup() -> None:
    """``django.setup()``, unless the project is set up already."""
    import django
    from django.apps import apps

    if not apps.ready:
        django.setup()


def backend(alias: str = "default") -> JobqBackend:
    """The jobq backend under ``alias`` in the project's ``TASKS``."""
    from importlib import import_module

    handler = import_module(f"{dj.FRAMEWORK}").task_backends
    found = handler[alias]
    if not isinstance(found, JobqBackend):
        raise TypeError(f"TASKS[{alias!r}] is {type(found).__name__}, not jobq.contrib.django.JobqBackend")
    return found


def discover(modules: list[str]) -> dict[str, Any]:
    """Every Django task defined in the installed apps' ``tasks`` modules and
    in ``modules``, by import path."""
    from importlib import import_module

    from django.apps import apps
    from django.utils.module_loading import autodiscover_modules

    autodiscover_modules("tasks")
    found: list[ModuleType] = [import_module(name) for name in modules]
    for config in apps.get_app_configs():
        module = getattr(config.module, "tasks", None)
        if isinstance(module, ModuleType):
            found.append(module)
    tasks: dict[str, Any] = {}
    for module in found:
        for value in vars(module).values():
            if isinstance(value, dj.Task):
                tasks[value.module_path] = value
    return tasks


def handler(task: Any, owner: JobqBackend) -> Callable[[Job[Any]], Any]:
    """The jobq handler that runs one Django task with a job's arguments:
    a coroutine function on the worker's loop, a plain one in a worker
    thread (with Django's stale connections closed before and after, as a
    request does). Sends Django's ``task_started`` and ``task_finished``."""
    from django.db import close_old_connections

    def begin(job: Job[Any]) -> tuple[Any, list[Any], dict[str, Any]]:
        result = owner.result_of(job, task)
        dj.task_started.send(type(owner), task_result=result)
        data = job.data if isinstance(job.data, dict) else {}
        args = list(data.get("args", []))
        if task.takes_context:
            args.insert(0, dj.TaskContext(task_result=result))
        return result, args, dict(data.get("kwargs", {}))

    def finish(result: Any, status: str) -> None:
        object.__setattr__(result, "status", dj.TaskResultStatus[status])
        dj.task_finished.send(type(owner), task_result=result)

    if inspect.iscoroutinefunction(task.func):

        async def run_async(job: Job[Any]) -> Any:
            result, args, kwargs = begin(job)
            try:
                value = dj.normalize_json(await task.func(*args, **kwargs))
            except STEERING:
                raise
            except Exception as exc:
                finish(result, "FAILED")
                raise raised(exc) from exc
            finish(result, "SUCCESSFUL")
            return value

        return run_async

    def run(job: Job[Any]) -> Any:
        close_old_connections()
        try:
            result, args, kwargs = begin(job)
            try:
                value = dj.normalize_json(task.func(*args, **kwargs))
            except STEERING:
                raise
            except Exception as exc:
                finish(result, "FAILED")
                raise raised(exc) from exc
            finish(result, "SUCCESSFUL")
            return value
        finally:
            close_old_connections()

    return run


def build_processor(alias: str = "default", **options: Any) -> JobProcessor:
    """A processor on the backend's queue with every discovered task
    registered; ``options`` over the backend's ``"worker"`` options. It takes
    jobs from the backend's ``QUEUES`` (all queues when that is empty)."""
    setup()
    owner = backend(alias)
    settings = {**owner.worker_options, **options}
    if owner.queues and "queues" not in settings:
        settings["queues"] = sorted(owner.queues)
    processor = JobProcessor(owner.open_queue(), **settings)
    for path, task in discover(owner.modules).items():
        processor.handle(path, handler(task, owner))
    return processor


def __getattr__(name: str) -> Any:
    # ``jobq worker jobq.contrib.django.worker:processor`` builds it on import.
    if name == "processor":
        return build_processor()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
