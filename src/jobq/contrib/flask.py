"""jobq in a Flask application (``pip install 'jobq[flask]'``).

::

    tasks = jobq.App("sqlite:////srv/app/jobq.db")
    app = Flask(__name__)
    jobq_ext = Jobq(tasks, app)

    @app.post("/resize")
    def resize_view():
        return {"id": resize.defer_sync(path, 640).id}

Views defer with ``task.defer_sync(...)`` and read results with
``tasks.get_sync(id)``: the synchronous queue, which survives ``os.fork()``,
so gunicorn's ``--preload`` (the app imported, even the queue opened, in
the master, then forked) is safe: each worker process opens its own queue
on first use. The extension adds ``flask jobq-worker``, which runs the
app's tasks, and :func:`queue` for the queue's verbs in a view.
"""

from __future__ import annotations

import asyncio
from typing import Any

import click
from flask import Flask, current_app

from ..sync import SyncQueue
from ..tasks import App

EXTENSION = "jobq"


class Jobq:
    """The Flask extension: ``Jobq(tasks, app)`` or ``Jobq(tasks)`` then
    ``init_app(app)``."""

    def __init__(self, tasks: App, app: Flask | None = None) -> None:
        self.tasks = tasks
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        app.extensions[EXTENSION] = self
        app.cli.add_command(self.worker_command())

    @property
    def queue(self) -> SyncQueue:
        """The tasks' queue, verbs as plain methods (opened on first use, per process)."""
        return self.tasks.open_sync()

    def worker_command(self) -> click.Command:
        """``flask jobq-worker``: runs the app's tasks until SIGTERM or Ctrl-C."""
        tasks = self.tasks

        @click.command("jobq-worker", help="Run this app's jobq tasks until SIGTERM or Ctrl-C.")
        @click.option("--concurrency", type=int, default=None, help="jobs run at once")
        @click.option("--queues", default=None, help="comma-separated queue names (default: all)")
        def command(concurrency: int | None, queues: str | None) -> None:
            options: dict[str, Any] = {}
            if concurrency is not None:
                options["concurrency"] = concurrency
            if queues:
                options["queues"] = [name.strip() for name in queues.split(",") if name.strip()]

            async def run() -> None:
                try:
                    await tasks.run_worker(**options)
                finally:
                    await tasks.close()

            asyncio.run(run())

        return command


def queue() -> SyncQueue:
    """The queue of the current Flask app's :class:`Jobq`."""
    extension = current_app.extensions.get(EXTENSION)
    if not isinstance(extension, Jobq):
        raise RuntimeError("this Flask app has no jobq extension: Jobq(tasks, app)")
    return extension.queue
