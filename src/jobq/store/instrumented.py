"""One place that times every call of a store's verbs, for the metrics.

:func:`instrument` wraps the verb methods of one store object in place (as
Oban wraps every engine call in one telemetry span), so every backend is
measured the same way and the store stays what it was: ``isinstance`` and
its other attributes are untouched. The queue instruments the store it is
given; :func:`timings` reads the figures, and :mod:`jobq.metrics` exports
them as ``jobq_store_call_seconds``.

A call costs two ``perf_counter`` readings and a few additions, nothing per
job. Only the outermost verb of a call is counted: a verb a store carries out
with its other verbs (``settle_and_claim`` as ``settle`` then ``claim``)
counts once, so the seconds of all verbs add up to the time spent in the
store. A verb that raises is counted (in ``errors`` too) and the error goes
on. ``wait_for_change`` and ``wait_for_finish`` are not calls into the store
but idle waits, ``close`` happens once, and ``sync`` (SQLite's WAL synced
apart) runs beside other calls: none is timed.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from time import perf_counter
from typing import Any, TypeVar

from .base import AdminStore, TransactionalStore, WorkerStore

S = TypeVar("S")

#: Verbs that are waits or happen once, not calls to time.
UNTIMED = frozenset({"wait_for_change", "wait_for_finish", "close", "sync"})


def _verbs() -> tuple[str, ...]:
    names: dict[str, None] = {}
    for protocol in (WorkerStore, AdminStore, TransactionalStore):
        for name, member in vars(protocol).items():
            if inspect.iscoroutinefunction(member) and name not in UNTIMED:
                names[name] = None
    return tuple(names)


#: Every verb timed: the coroutine methods of the store protocols.
VERBS: tuple[str, ...] = _verbs()


@dataclass(slots=True)
class VerbTiming:
    """The calls of one verb so far."""

    calls: int = 0
    #: Calls that raised (counted in ``calls`` and ``seconds`` too).
    errors: int = 0
    seconds: float = 0.0  # in all
    max_seconds: float = 0.0  # the longest call


class StoreTimings:
    """The figures of one store object, by verb."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self.verbs: dict[str, VerbTiming] = {}

    def snapshot(self) -> dict[str, VerbTiming]:
        """A copy of the figures of every verb called at least once."""
        return {verb: replace(t) for verb, t in self.verbs.items() if t.calls}


_TIMINGS: weakref.WeakKeyDictionary[Any, StoreTimings] = weakref.WeakKeyDictionary()

# Whether a timed verb is running in this task: the verbs it calls are its own work.
_INSIDE: contextvars.ContextVar[bool] = contextvars.ContextVar("jobq_store_call", default=False)


def _timed(method: Callable[..., Awaitable[Any]], figures: VerbTiming) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(method)
    async def timed(*args: Any, **kwargs: Any) -> Any:
        if _INSIDE.get():
            return await method(*args, **kwargs)
        token = _INSIDE.set(True)
        started = perf_counter()
        try:
            return await method(*args, **kwargs)
        except BaseException:
            figures.errors += 1
            raise
        finally:
            elapsed = perf_counter() - started
            _INSIDE.reset(token)
            figures.calls += 1
            figures.seconds += elapsed
            if elapsed > figures.max_seconds:
                figures.max_seconds = elapsed

    return timed


def instrument(store: S) -> S:
    """Times every verb of ``store`` from now on (see the module's notes),
    in place; returns ``store``. Instrumenting a store twice changes nothing;
    a store object that cannot be weakly referenced is left untimed."""
    try:
        if store in _TIMINGS:
            return store
        figures = _TIMINGS[store] = StoreTimings(str(getattr(store, "name", type(store).__name__)))
    except TypeError:
        return store
    for verb in VERBS:
        method = getattr(store, verb, None)
        if method is not None and inspect.iscoroutinefunction(method):
            setattr(store, verb, _timed(method, figures.verbs.setdefault(verb, VerbTiming())))
    return store


def timings(store: Any) -> StoreTimings | None:
    """The figures of an instrumented store (``queue.store``), else ``None``."""
    return _TIMINGS.get(store)
