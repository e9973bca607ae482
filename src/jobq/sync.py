"""A synchronous twin of the queue, for code that is not async (Django views,
Flask, scripts, a REPL).

It owns an event loop on a background thread and runs each verb there, so
the queue behaves exactly as it does for async callers. Each verb is
declared below from the queue's own method, so editors and type checkers
see its signature.

It survives ``os.fork()`` (gunicorn's ``--preload``, multiprocessing): the
child cannot use the parent's thread or connections, so on its first call
there it opens the queue again from its URL. The parent's objects are left
untouched in the child (never closed there), as SQLite and PostgreSQL
require of connections carried across a fork.
"""

from __future__ import annotations

import asyncio
import os
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

from .backends import DEFAULT_URL, open_queue
from .errors import QueueClosed
from .queue import Queue

P = ParamSpec("P")
R = TypeVar("R")

#: What a forked child inherited and must not use or close (see the module notes).
_left_in_parent: list[object] = []


def leave_in_parent(thing: object) -> None:
    """Keeps ``thing`` (a queue the parent opened) alive and untouched in a
    forked child, so no finaliser closes the parent's connections from here."""
    _left_in_parent.append(thing)


class _Verb(Generic[P, R]):
    """One queue verb as a plain method of :class:`SyncQueue`."""

    def __init__(self, method: Callable[Concatenate[Queue, P], Coroutine[Any, Any, R]]) -> None:
        self.method = method

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type) -> _Verb[P, R]: ...
    @overload
    def __get__(self, instance: SyncQueue, owner: type | None = None) -> Callable[P, R]: ...
    def __get__(self, instance: SyncQueue | None, owner: type | None = None) -> Callable[P, R] | _Verb[P, R]:
        if instance is None:
            return self
        method = self.method

        def call(*args: P.args, **kwargs: P.kwargs) -> R:
            return instance.run(lambda queue: method(queue, *args, **kwargs))

        call.__name__ = self.name
        call.__doc__ = method.__doc__
        return call


class SyncQueue:
    """The queue verbs as plain methods (:class:`jobq.Queue`'s, each
    declared below), and a context manager that closes the queue.

    Made by :func:`jobq.connect_sync`; ``SyncQueue(queue)`` wraps a queue
    already open (which cannot be reopened after a fork)."""

    def __init__(self, queue: Queue, *, reopen: Callable[[], Queue] | None = None) -> None:
        self._reopen = reopen
        self._closed = False
        self._start(queue)
        _instances.add(self)

    def _start(self, queue: Queue) -> None:
        self.queue = queue
        self._pid = os.getpid()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="jobq-sync", daemon=True)
        self._thread.start()

    def _after_fork_in_child(self) -> None:
        """The thread that ran the loop is gone: leave the parent's queue and
        loop alone, and open again on the next call (from the URL)."""
        leave_in_parent((self.queue, self._loop))
        self._pid = -1

    def run(self, verb: Callable[[Queue], Coroutine[Any, Any, R]]) -> R:
        """Runs ``verb(queue)`` on the queue's loop and returns its result."""
        if self._closed:
            raise QueueClosed("this synchronous queue was closed")
        if self._pid != os.getpid():
            if self._reopen is None:
                raise QueueClosed(
                    "this synchronous queue was opened before os.fork() from a queue object, and a"
                    " child process cannot use it; open it with jobq.connect_sync(url) instead"
                )
            self._start(self._reopen())
        return asyncio.run_coroutine_threadsafe(verb(self.queue), self._loop).result()

    # -- the verbs ---------------------------------------------------------------

    enqueue = _Verb(Queue.enqueue)
    enqueue_many = _Verb(Queue.enqueue_many)
    dequeue = _Verb(Queue.dequeue)
    claim = _Verb(Queue.claim)
    peek = _Verb(Queue.peek)
    size = _Verb(Queue.size)
    next_due = _Verb(Queue.next_due)
    complete = _Verb(Queue.complete)
    complete_many = _Verb(Queue.complete_many)
    complete_and_claim = _Verb(Queue.complete_and_claim)
    fail = _Verb(Queue.fail)
    release = _Verb(Queue.release)
    settle = _Verb(Queue.settle)
    settle_and_claim = _Verb(Queue.settle_and_claim)
    extend_leases = _Verb(Queue.extend_leases)
    rescue_expired = _Verb(Queue.rescue_expired)
    fail_unreadable_waiting = _Verb(Queue.fail_unreadable_waiting)
    set_progress = _Verb(Queue.set_progress)
    cancel = _Verb(Queue.cancel)
    cancel_running = _Verb(Queue.cancel_running)
    cancel_requests = _Verb(Queue.cancel_requests)
    wait = _Verb(Queue.wait)
    get_job = _Verb(Queue.get_job)
    list_jobs = _Verb(Queue.list_jobs)
    counts = _Verb(Queue.counts)
    summary = _Verb(Queue.summary)
    throughput = _Verb(Queue.throughput)
    oldest_ready = _Verb(Queue.oldest_ready)
    attempts = _Verb(Queue.attempts)
    workers = _Verb(Queue.workers)
    retry = _Verb(Queue.retry)
    remove = _Verb(Queue.remove)
    clear = _Verb(Queue.clear)
    cleanup_terminal = _Verb(Queue.cleanup_terminal)
    pause = _Verb(Queue.pause)
    resume = _Verb(Queue.resume)
    paused = _Verb(Queue.paused)
    outcomes = _Verb(Queue.outcomes)
    durations = _Verb(Queue.durations)
    cron_slots = _Verb(Queue.cron_slots)
    cron_jobs = _Verb(Queue.cron_jobs)
    prune = _Verb(Queue.prune)
    enqueue_for_slot = _Verb(Queue.enqueue_for_slot)
    wait_for_change = _Verb(Queue.wait_for_change)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._pid != os.getpid():
            return  # a child that never reopened: nothing of its own to close
        try:
            asyncio.run_coroutine_threadsafe(self.queue.close(), self._loop).result()
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def __enter__(self) -> SyncQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<SyncQueue {self.queue!r}>"


_instances: weakref.WeakSet[SyncQueue] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for sync_queue in list(_instances):
        if not sync_queue._closed:
            sync_queue._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork_in_child)


def connect_sync(url: str = DEFAULT_URL, **options: Any) -> SyncQueue:
    """Opens the queue ``url`` names, with every verb as a plain method. In a
    process forked after this call, the queue opens again on first use."""
    return SyncQueue(open_queue(url, **options), reopen=lambda: open_queue(url, **options))
