"""Hooks around each enqueue and each handler run, for tracing.

A hook (:class:`Hook`, registered with :func:`add`) sees every batch of new
jobs just before the queue stores them (:meth:`Queue.enqueue_many`, which
every way of enqueueing goes through) and may return them changed (a trace
context put in their metadata), then hears how the insert ended; and it
wraps each handler run in a context manager of its own (the handler, and a
sync handler's thread, run inside it). :mod:`jobq.otel` is one.

A hook that raises never fails an enqueue or a job: its error is logged and
the work goes on without it. With no hook registered, nothing is called.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .job import Job
    from .newjobs import NewJob

log = logging.getLogger("jobq")

#: Called once the insert ended: the stored jobs (``None`` if it raised) and
#: the error it raised (``None`` if none).
Finish = Callable[["list[Job[Any]] | None", "BaseException | None"], None]


class Hook(Protocol):
    def enqueue(self, specs: list[NewJob]) -> tuple[list[NewJob], Finish]:
        """The jobs to store instead of ``specs`` (as many, same order), and
        what to call once stored."""
        ...

    def run(self, job: Job[Any]) -> AbstractContextManager[Any]:
        """Wraps one attempt of ``job``: entered before its handler runs,
        exited with what it raised."""
        ...


_hooks: list[Hook] = []


def add(hook: Hook) -> None:
    """Registers ``hook`` (once) for every queue and processor of this process."""
    if hook not in _hooks:
        _hooks.append(hook)


def remove(hook: Hook) -> None:
    if hook in _hooks:
        _hooks.remove(hook)


def active() -> bool:
    """Whether any hook is registered (the hot paths skip this module if not)."""
    return bool(_hooks)


def _failed(what: str, exc: BaseException) -> None:
    with contextlib.suppress(Exception):  # a log handler that raises too is left alone
        log.error("a %s hook raised; going on without it", what, exc_info=exc)


async def enqueue(
    specs: list[NewJob], insert: Callable[[list[NewJob]], Awaitable[list[Job[Any]]]]
) -> list[Job[Any]]:
    """Stores ``specs`` through ``insert``, each hook seeing them first and
    hearing how it ended."""
    finishers: list[Finish] = []
    for hook in list(_hooks):
        try:
            changed, finish = hook.enqueue(specs)
        except Exception as exc:  # noqa: BLE001 - a hook never fails an enqueue
            _failed("enqueue", exc)
            continue
        if len(changed) == len(specs):
            specs = changed
        finishers.append(finish)
    try:
        jobs = await insert(specs)
    except BaseException as exc:
        _finish(finishers, None, exc)
        raise
    _finish(finishers, jobs, None)
    return jobs


def _finish(finishers: list[Finish], jobs: list[Job[Any]] | None, error: BaseException | None) -> None:
    for finish in finishers:
        try:
            finish(jobs, error)
        except Exception as exc:  # noqa: BLE001 - a hook never fails an enqueue
            _failed("enqueue", exc)


class _Guarded:
    """A hook's context manager whose own errors are logged, never raised:
    what the handler raised goes on as it was."""

    __slots__ = ("inner",)

    def __init__(self, inner: AbstractContextManager[Any]) -> None:
        self.inner = inner

    def __enter__(self) -> None:
        self.inner.__enter__()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.inner.__exit__(kind, exc, tb)
        except Exception as error:  # noqa: BLE001 - a hook never fails a job
            _failed("run", error)


@contextlib.contextmanager
def running(job: Job[Any]) -> Iterator[None]:
    """Wraps one attempt of ``job`` in every hook's context manager."""
    with contextlib.ExitStack() as stack:
        for hook in list(_hooks):
            try:
                stack.enter_context(_Guarded(hook.run(job)))
            except Exception as exc:  # noqa: BLE001 - a hook never fails a job
                _failed("run", exc)
        yield
