"""jobq in a Starlette application (FastAPI builds on it: see
:mod:`jobq.contrib.fastapi`). Needs the ``web`` extra.

::

    tasks = jobq.App("sqlite:///jobq.db")
    app = Starlette(routes=[...], lifespan=lifespan(tasks, worker=True, concurrency=4))
    app.mount("/jobq", dashboard(auth=("ops", "a long password")))

- :func:`lifespan` opens the app's queue when the server starts and closes
  it when it stops; with ``worker=True`` it also runs a worker for the app's
  tasks in the server's process (jobs in flight finish, or go back to
  waiting, at shutdown).
- :func:`get_queue` hands a request the open queue.
- :func:`dashboard` is the dashboard on that queue, to mount under a prefix.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import InvalidOption, JobqError
from ..processor.processor import JobProcessor
from ..queue import Queue
from ..tasks import App

#: Where :func:`lifespan` keeps its :class:`Jobq` on the application: ``app.state.jobq``.
STATE_ATTRIBUTE = "jobq"


@dataclass(frozen=True)
class Jobq:
    """What :func:`lifespan` keeps on ``app.state.jobq`` while the server runs."""

    tasks: App
    queue: Queue
    processor: JobProcessor | None
    """The in-process worker (``worker=True``), else ``None``."""


class NoJobqLifespan(JobqError, RuntimeError):
    """The application was not started with :func:`lifespan`, so no queue is open."""


def lifespan(
    tasks: App, *, worker: bool = False, **processor_options: Any
) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    """A Starlette/FastAPI ``lifespan`` that opens ``tasks``' queue at
    startup, keeps it on ``app.state.jobq`` (a :class:`Jobq`) and closes it
    at shutdown. ``worker=True`` also runs ``tasks.processor(queue,
    **processor_options)`` in the server's process (``concurrency``,
    ``queues``, ...), stopped gracefully at shutdown.

    An application with a lifespan of its own enters this one inside it::

        @contextlib.asynccontextmanager
        async def my_lifespan(app):
            async with lifespan(tasks)(app):
                yield
    """
    if processor_options and not worker:
        raise InvalidOption(f"processor options {sorted(processor_options)} need worker=True")

    @contextlib.asynccontextmanager
    async def run(app: Any) -> AsyncIterator[None]:
        queue = await tasks.open()
        processor = None
        try:
            if worker:
                processor = tasks.processor(queue, **processor_options)
                await processor.start()
            setattr(app.state, STATE_ATTRIBUTE, Jobq(tasks, queue, processor))
            yield
        finally:
            try:
                if processor is not None:
                    await processor.stop()
            finally:
                with contextlib.suppress(AttributeError):
                    delattr(app.state, STATE_ATTRIBUTE)
                await tasks.close()

    return run


def jobq_of(app: Any) -> Jobq:
    """The :class:`Jobq` of a running application; :class:`NoJobqLifespan` if none."""
    state = getattr(getattr(app, "state", None), STATE_ATTRIBUTE, None)
    if not isinstance(state, Jobq):
        raise NoJobqLifespan(
            "no jobq queue is open: start the application with lifespan=jobq.contrib.starlette.lifespan(tasks)"
        )
    return state


def get_queue(connection: HTTPConnection) -> Queue:
    """The queue the lifespan opened, for a request (or a websocket); as a
    FastAPI dependency: ``Depends(get_queue)``."""
    return jobq_of(connection.app).queue


class _Dashboard:
    """The dashboard on the queue of the application it is mounted in, made
    on its first request (the queue opens at startup)."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        self._made: tuple[Queue, ASGIApp] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        queue = jobq_of(scope.get("app")).queue
        if self._made is None or self._made[0] is not queue:
            from ..web import create_app

            self._made = (queue, create_app(queue, **self.options))
        await self._made[1](scope, receive, send)


def dashboard(**options: Any) -> ASGIApp:
    """jobq's dashboard on the application's queue (see :func:`lifespan`),
    to mount under a prefix: ``app.mount("/jobq", dashboard(auth=...))``.
    ``options`` are :func:`jobq.web.create_app`'s (``auth``,
    ``allowed_origins``, ``allowed_hosts``, ``secret``); its authentication
    is checked here, so a missing one fails at import rather than at the
    first request."""
    from ..web import auth_from_env

    if "auth" not in options:
        found = auth_from_env()
        if found is None:
            raise InvalidOption(
                "the dashboard needs authentication: set JOBQ_DASHBOARD_TOKEN (or JOBQ_DASHBOARD_USER and"
                " JOBQ_DASHBOARD_PASSWORD), or pass auth=...; auth=None serves it without"
            )
        options["auth"] = found
    options.setdefault("secret", secrets.token_bytes(32))  # sessions outlive a restart of the queue
    return _Dashboard(options)
