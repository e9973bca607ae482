"""Whether a store's reads may run on the caller's thread.

The SQLite store runs a read on the calling thread when it cannot wait (WAL
readers never do), which saves a hand-off to a thread but holds the event
loop for as long as the read lasts. A worker's reads are short. An
operator's are not: counting a million jobs takes a good part of a second,
during which a server on that loop answers nobody. Code that serves others
from the loop (the dashboard) runs its reads inside :func:`reads_off_loop`,
and the store then runs them on a thread of their own.

A context variable, so it follows each request's task, and nothing else.
No jobq imports: both the stores and the front ends use it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

#: True where a store must not run a read on the caller's thread.
OFF_LOOP: ContextVar[bool] = ContextVar("jobq_reads_off_loop", default=False)


@contextmanager
def reads_off_loop() -> Iterator[None]:
    """Within it, the store's reads run on a thread, never on the event loop."""
    token = OFF_LOOP.set(True)
    try:
        yield
    finally:
        OFF_LOOP.reset(token)


__all__ = ["OFF_LOOP", "reads_off_loop"]
