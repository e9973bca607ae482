"""Processor events and metrics.

Every callback registered with ``processor.on(name, callback)`` receives one
:class:`Event`. Callbacks may be plain functions or coroutines; an exception
in a callback is logged and never reaches the job.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from .errors import InvalidOption
from .job import Job

log = logging.getLogger("jobq")

#: Event names, each with when it is emitted.
EVENTS: dict[str, str] = {
    "job_added": "a job was enqueued through the processor's add()",
    "job_started": "a handler is about to run",
    "job_completed": "a handler returned; the job is completed (event.result)",
    "job_retry": "a handler raised and the job will run again (event.error, event.retry_delay)",
    "job_failed": "a job failed for good (event.error)",
    "job_lost": "a job's lease expired and the rescuer took it back (event.job.status tells if it failed for good)",
    "job_snoozed": "a handler raised SnoozeJob: the job waits event.retry_delay seconds, no attempt spent",
    "job_cancelled": "a handler raised CancelJob, or a cancel request stopped it: the job ended as cancelled"
    " (event.error is the reason)",
    "job_released": "a job was given back unfinished, no attempt spent (the processor stopped, or its"
    " type's circuit opened after the claim): it runs again at once",
    "job_quarantined": "a job whose worker was lost max_lost_leases times failed for good (event.error)",
    "cron_enqueued": "a cron schedule's slot was won by this processor and its job enqueued",
    "processor_started": "start() has workers running",
    "processor_stopped": "stop() finished",
}
#: k-msg spells events "job:completed"; both spellings are accepted.
_ALIASES = {name.replace("_", ":", 1): name for name in EVENTS}


def event_name(name: str) -> str:
    name = _ALIASES.get(name, name)
    if name not in EVENTS:
        raise InvalidOption(f"unknown event {name!r}; events are: {', '.join(EVENTS)}")
    return name


@dataclass(frozen=True, slots=True)
class Event:
    name: str
    job: Job[Any] | None = None
    result: Any = None
    error: str | None = None
    retry_delay: float | None = None
    processing_time: float | None = None  # seconds
    exception: BaseException | None = None
    """What the handler raised (``job_retry``, ``job_failed``, ``job_snoozed``,
    ``job_cancelled``), for tools such as Sentry that capture the exception
    itself; ``None`` for an error with no exception (a job type without a
    handler, a rescue). ``error`` keeps its message."""


class Emitter:
    def __init__(self) -> None:
        self._callbacks: dict[str, list[Callable[[Event], Any]]] = {}
        self._pending: set[asyncio.Task[Any]] = set()

    def on(self, name: str, callback: Callable[[Event], Any]) -> Callable[[Event], Any]:
        self._callbacks.setdefault(event_name(name), []).append(callback)
        return callback

    def off(self, name: str, callback: Callable[[Event], Any]) -> None:
        callbacks = self._callbacks.get(event_name(name), [])
        if callback in callbacks:
            callbacks.remove(callback)

    def wants(self, name: str) -> bool:
        """Whether anyone listens for ``name``: lets a hot path skip building the event."""
        return bool(self._callbacks.get(name))

    def emit(self, event: Event) -> None:
        for callback in self._callbacks.get(event.name, ()):
            try:
                outcome = callback(event)
                if outcome is not None and inspect.isawaitable(outcome):
                    task = asyncio.ensure_future(outcome)
                    self._pending.add(task)
                    task.add_done_callback(self._settled)
            except Exception as exc:  # noqa: BLE001 - a callback never fails a job or stops a worker
                _callback_failed(f"the callback for {event.name}", exc)

    def _settled(self, task: asyncio.Task[Any]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _callback_failed("an async event callback", task.exception())

    async def drain(self) -> None:
        """Waits for async callbacks still running."""
        while self._pending:
            await asyncio.gather(*list(self._pending), return_exceptions=True)


def _callback_failed(what: str, exc: BaseException | None) -> None:
    """Logs a callback that raised; a log handler that raises too is left
    alone (the job goes on)."""
    with contextlib.suppress(Exception):
        log.error("%s raised", what, exc_info=exc)


class _Record(Mapping[str, Any]):
    """A dataclass that also reads like a dict (``m.processed``, ``m["processed"]``)."""

    def __getitem__(self, key: str) -> Any:
        try:
            return getattr(self, key)
        except AttributeError:
            raise KeyError(key) from None

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(asdict(self))  # type: ignore[call-overload]

    def __len__(self) -> int:
        return len(asdict(self))  # type: ignore[call-overload]


@dataclass
class ProcessorMetrics(_Record):
    processed: int = 0
    """Jobs that reached an end: completed or failed for good."""
    succeeded: int = 0
    failed: int = 0
    """Jobs that failed for good."""
    retried: int = 0
    """Failed attempts that were scheduled to run again."""
    active_jobs: int = 0
    queue_size: int = 0
    """Ready jobs, as last counted (by get_queue_status or when idle)."""
    average_processing_time: float = 0.0
    """Seconds a handler took, on average."""
    last_processed_at: datetime | None = None
    lost: int = 0
    """Jobs this processor rescued after their worker was lost."""
    quarantined: int = 0
    """Rescued jobs that failed for good after max_lost_leases lost workers."""
    snoozed: int = 0
    """Jobs whose handler raised SnoozeJob."""
    cancelled: int = 0
    """Jobs whose handler raised CancelJob."""
    by_type: dict[str, dict[str, int]] = field(default_factory=dict)
    """processed/succeeded/failed/retried per job type."""


@dataclass
class QueueStatus(_Record):
    pending: int
    """Jobs ready to run now."""
    processing: int
    """Jobs this processor is running."""
    failed: int
    """Jobs this processor failed for good."""
    total_processed: int
