"""The processor verbs k-msg's ``JobProcessor`` has, under its names:
``add``, ``get_metrics``, ``get_queue_status``, ``cleanup``, ``get_job`` and
``remove_job`` (API.md). Each is a thin layer over the queue or the
processor's counters; :class:`jobq.JobProcessor` inherits them."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ..events import Emitter, Event, ProcessorMetrics, QueueStatus
from ..job import Job
from ..queue import Queue
from .completer import Reporter
from .config import ProcessorConfig
from .executor import Running


class KmsgVerbs:
    """k-msg's processor verbs (mixed into :class:`jobq.JobProcessor`)."""

    queue: Queue
    config: ProcessorConfig
    _events: Emitter
    _metrics: ProcessorMetrics
    _reporter: Reporter
    _jobs: dict[str, Running]

    async def add(
        self,
        job_type: str,
        data: Any = None,
        *,
        priority: int | None = None,
        delay: float = 0,
        max_attempts: int | None = None,
        metadata: dict[str, Any] | None = None,
        queue: str | None = None,
        timeout: float | None = None,
    ) -> str:
        """Enqueues a job and returns its id; what it is not told comes from
        the processor's defaults (priority 5, ``max_retries`` attempts, its
        first queue: :attr:`ProcessorConfig.add_defaults`). ``timeout``:
        seconds this job may run (kept in its metadata as ``"jobq.timeout"``)."""
        spec = self.config.add_defaults.job(
            job_type, data, priority=priority, delay=delay, max_attempts=max_attempts,
            metadata=metadata, queue=queue or None, timeout=timeout,
        )  # fmt: skip
        (job,) = await self.queue.enqueue_many([spec])
        self._events.emit(Event("job_added", job=job))
        return job.id

    def get_metrics(self) -> ProcessorMetrics:
        """A copy of the counters: processed, succeeded, failed, retried,
        active_jobs, queue_size, average_processing_time, last_processed_at
        (and more: see :class:`jobq.ProcessorMetrics`)."""
        metrics = ProcessorMetrics(**{k: getattr(self._metrics, k) for k in self._metrics})
        metrics.active_jobs = len(self._jobs)
        last = self._reporter.last_processed
        if last is not None:
            metrics.last_processed_at = datetime.fromtimestamp(last, UTC)
        metrics.by_type = {t: dict(c) for t, c in self._metrics.by_type.items()}
        return metrics

    async def get_queue_status(self) -> QueueStatus:
        pending = await self.queue.size(queues=self.config.queue_names)
        self._metrics.queue_size = pending
        return QueueStatus(
            pending=pending,
            processing=len(self._jobs),
            failed=self._metrics.failed,
            total_processed=self._metrics.processed,
        )

    async def cleanup(self) -> int:
        """Deletes completed and failed jobs; returns how many."""
        return await self.queue.cleanup_terminal()

    async def get_job(self, job_id: str) -> Job[Any] | None:
        return await self.queue.get_job(job_id)

    async def remove_job(self, job_id: str) -> bool:
        return await self.queue.remove(job_id)
