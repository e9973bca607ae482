"""Steering a stored job from outside its run: the cancel, retry, progress
and waiting verbs of :class:`~jobq.Queue`.

Each is one store call under the rules every backend shares: a cancel ends a
waiting job at once and asks a running one to stop; a retry gives a finished
job its attempts again; progress is fenced like a completion when the
caller holds the job; a wait listens for the store's announcements of
finished jobs (:mod:`jobq.results`). ``Queue`` inherits them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from . import codec, transitions
from .errors import InvalidOption, JobNotFound
from .job import Job, JobRecord

if TYPE_CHECKING:
    from .results import Finishes
    from .store.base import Store
    from .transitions import Transition


class SteeringVerbs:
    """The verbs that steer a stored job, which :class:`~jobq.Queue` inherits."""

    if TYPE_CHECKING:  # provided by Queue
        store: Store
        _cancel_listeners: list[Callable[[str], None]]
        _finishes: Finishes

        def now_ms(self) -> int: ...

        def _notify(self) -> None: ...

        def _lenient_job(self, record: JobRecord) -> Job[Any]: ...

        @staticmethod
        def _target(job: str | Job[Any]) -> tuple[str, str | None]: ...

        async def _settle_one(self, transition: Transition) -> JobRecord: ...

        async def get_job(self, job_id: str) -> Job[Any] | None: ...

    # -- cancellation --------------------------------------------------------

    def on_cancel(self, listener: Callable[[str], None]) -> Callable[[], None]:
        """Calls ``listener(job_id)`` (from any thread) when this queue object
        asks a running job to stop; returns a function that unregisters it.
        A processor in this process stops the job at once; others notice the
        stored request within their ``cancel_check_interval``."""
        self._cancel_listeners.append(listener)
        return lambda: self._cancel_listeners.remove(listener) if listener in self._cancel_listeners else None

    async def cancel(self, job_id: str) -> bool:
        """Cancels a job so that it ends in status ``CANCELLED``.

        - waiting (pending or delayed): cancelled at once, it never runs;
          returns ``True``.
        - running: a cancel request is stored (``cancel_requested_at``); the
          processor running it cancels an async handler cooperatively (a sync
          handler is abandoned in its thread) and stores ``cancelled``;
          returns ``True``. If the handler finishes first, its outcome stands.
          A request on a job whose worker was lost is honoured when its lease
          expires.
        - finished (completed, failed, cancelled): nothing changes; returns
          ``False``.
        - unknown id: raises :class:`~jobq.JobNotFound`.
        """
        if not codec.storable_id(job_id):
            raise JobNotFound(job_id)
        changed, record = await self.store.cancel(job_id, now_ms=self.now_ms())
        if changed and record.status == "processing":
            for listener in list(self._cancel_listeners):
                listener(job_id)
        return changed

    async def cancel_running(self, job: Job[Any], reason: str | None = None) -> Job[Any]:
        """Ends a job this caller holds (the ``Job`` from ``dequeue``) as
        ``CANCELLED``, storing ``reason`` as its error when given. Fenced:
        raises :class:`~jobq.LeaseLost` if that claim is gone."""
        job_id, token = self._target(job)
        if token is None:
            raise TypeError("cancel_running needs the Job returned by dequeue, not an id; use cancel()")
        if reason is not None:
            if not isinstance(reason, str):
                raise InvalidOption(f"reason must be a str or None, not {type(reason).__name__}")
            codec.check_text(reason, "reason", InvalidOption)
        cancel = transitions.cancelled(job_id, token, reason, run=transitions.attempt_of(job))
        return self._lenient_job(await self._settle_one(cancel))

    async def cancel_requests(self, jobs: Sequence[Job[Any] | str]) -> set[str]:
        """The ids among ``jobs`` (running ones) that have a cancel request."""
        return await self.store.cancel_requested([self._target(j)[0] for j in jobs])

    # -- retry ---------------------------------------------------------------------

    async def retry(self, job_id: str) -> Job[Any]:
        """Puts a failed or cancelled job back to waiting, ready now, with
        ``attempts`` reset to 0 so it gets its full ``max_attempts`` again.
        Its last ``error`` is kept until the next run. Raises
        :class:`~jobq.NotRetryable` for any other status (or when another
        unfinished job now holds its ``unique_key``), :class:`~jobq.JobNotFound`
        for an unknown id."""
        if not codec.storable_id(job_id):
            raise JobNotFound(job_id)
        record = await self.store.retry(job_id, now_ms=self.now_ms())
        self._notify()
        return self._lenient_job(record)

    # -- progress ----------------------------------------------------------------

    async def set_progress(self, job: str | Job[Any], value: float, message: str | None = None) -> None:
        """Stores a job's progress (any finite number; a fraction or a
        percentage, as the application likes) and an optional message, shown
        by ``get_job``. Given the ``Job`` from ``dequeue``, fenced like
        ``complete``."""
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise InvalidOption(f"progress must be a finite number, not {value!r}")
        if message is not None:
            if not isinstance(message, str):
                raise InvalidOption(f"progress message must be a str or None, not {type(message).__name__}")
            codec.check_text(message, "progress message", InvalidOption)
        job_id, token = self._target(job)
        if message is not None:
            message = codec.error_text(message)  # a lone surrogate cannot be stored: U+FFFD
        await self.store.set_progress(job_id, token=token, progress=float(value), message=message)

    async def wait_for_change(self, timeout: float) -> bool:
        """Returns when another process may have stored work, or after
        ``timeout``; ``True`` when the store was told of new work (see
        :meth:`jobq.store.base.Store.wait_for_change`)."""
        return await self.store.wait_for_change(timeout)

    async def wait(self, job_id: str, *, timeout: float | None = None) -> Job[Any]:
        """Waits until the job has finished (completed, failed or cancelled)
        and returns it. Raises :class:`~jobq.ResultTimeout` after ``timeout``
        seconds (``None``: no limit), :class:`~jobq.JobNotFound` if there is
        no such job (or it is removed meanwhile). Waits on the store's
        announcements of finished jobs, not a sleep loop
        (:mod:`jobq.results`)."""
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout >= 0
        ):
            raise InvalidOption(f"timeout must be a number of seconds >= 0 or None, not {timeout!r}")
        return await self._finishes.wait(job_id, self.get_job, timeout)
