"""Django's task framework, wherever it comes from: ``django.tasks`` (Django
6.0 and later) or the ``django-tasks`` backport (Django 5.2, the last Django
that runs on Python 3.11). The names below are the same in both."""

from __future__ import annotations

import importlib
from typing import Any


def _load() -> dict[str, Any]:
    try:
        importlib.import_module("django.tasks")
    except ImportError:
        try:
            importlib.import_module("django_tasks")
        except ImportError:
            from ...errors import BackendMissing

            raise BackendMissing(
                "jobq's Django backend needs Django 6's django.tasks, or the django-tasks backport on"
                " Django 5.2: pip install 'jobq[django]'"
            ) from None
        root, invalid, normalize = "django_tasks", "InvalidTaskError", "django_tasks.utils"
    else:
        root, invalid, normalize = "django.tasks", "InvalidTask", "django.utils.json"
    base = importlib.import_module(f"{root}.base")
    exceptions = importlib.import_module(f"{root}.exceptions")
    signals = importlib.import_module(f"{root}.signals")
    return {
        "root": root,
        "BaseTaskBackend": importlib.import_module(f"{root}.backends.base").BaseTaskBackend,
        "Task": base.Task,
        "TaskContext": base.TaskContext,
        "TaskError": base.TaskError,
        "TaskResult": base.TaskResult,
        "TaskResultStatus": base.TaskResultStatus,
        "InvalidTask": getattr(exceptions, invalid),
        "TaskResultDoesNotExist": exceptions.TaskResultDoesNotExist,
        "normalize_json": importlib.import_module(normalize).normalize_json,
        "task_enqueued": signals.task_enqueued,
        "task_started": signals.task_started,
        "task_finished": signals.task_finished,
    }


_names = _load()

#: Where the framework was found: ``"django.tasks"`` or ``"django_tasks"``.
FRAMEWORK: str = _names["root"]
BaseTaskBackend: Any = _names["BaseTaskBackend"]
Task: Any = _names["Task"]
TaskContext: Any = _names["TaskContext"]
TaskError: Any = _names["TaskError"]
TaskResult: Any = _names["TaskResult"]
TaskResultStatus: Any = _names["TaskResultStatus"]
InvalidTask: Any = _names["InvalidTask"]
TaskResultDoesNotExist: Any = _names["TaskResultDoesNotExist"]
normalize_json: Any = _names["normalize_json"]
task_enqueued: Any = _names["task_enqueued"]
task_started: Any = _names["task_started"]
task_finished: Any = _names["task_finished"]
