"""A worker's row in the registry (see :mod:`jobq.history`): stored when
the processor starts, refreshed every :data:`~jobq.history.HEARTBEAT_INTERVAL`
seconds from its background duties, deleted when it stops gracefully.

A heartbeat also deletes the rows of workers silent for
:data:`~jobq.history.FORGET_AFTER` seconds, so a registry whose workers
were killed empties itself. A heartbeat that fails is logged and tried again
(the loop of :func:`.maintenance.every`); it never stops the worker, whose
jobs do not depend on it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Callable, Mapping
from typing import Any

from .. import history
from ..events import ProcessorMetrics
from ..history import WorkerRecord
from ..queue import Queue
from .config import ProcessorConfig
from .limits import Circuit, CircuitState

log = logging.getLogger("jobq")


def _version() -> str:
    from .. import __version__

    return __version__


class Registration:
    """One processor's row in the registry, while it runs."""

    def __init__(
        self,
        queue: Queue,
        config: ProcessorConfig,
        worker_id: str,
        metrics: ProcessorMetrics,
        running: Callable[[], int],
        circuits: Callable[[], Mapping[str, Circuit]] = dict,
    ) -> None:
        self.queue = queue
        self.config = config
        self.worker_id = worker_id
        self.metrics = metrics
        self.running = running
        self.circuits = circuits
        self.started_ms = queue.now_ms()
        self.host = socket.gethostname()
        self.pid = os.getpid()

    def record(self) -> WorkerRecord:
        """The row as it stands now."""
        m, c = self.metrics, self.config
        return WorkerRecord(
            self.worker_id, self.host, self.pid, json.dumps(c.queue_names), c.concurrency, _version(),
            self.started_ms, self.queue.now_ms(), self.running(), m.processed + m.retried + m.cancelled + m.snoozed,
            json.dumps(self.limits(), sort_keys=True),
        )  # fmt: skip

    def limits(self) -> dict[str, Any]:
        """What this worker enforces, as :func:`jobq.history.limits_of` reads
        it back: only what is set, so a worker without limits stores ``{}``."""
        c = self.config
        out: dict[str, Any] = {}
        if c.queue_concurrency is not None:
            out["queues"] = dict(c.queue_concurrency)
        if c.rate_limit is not None:
            out["rate_limit"] = {"max_requests": c.rate_limit.max_requests,
                                 "window_seconds": c.rate_limit.window_seconds}  # fmt: skip
        if c.limits:
            out["key_limits"] = [
                {"key": k.key, "type": k.type, "rate": k.rate, "per": k.per, "concurrency": k.concurrency}
                for k in c.limits
            ]
        if c.circuit_breaker is not None:
            b = c.circuit_breaker
            out["circuit_breaker"] = {"failure_threshold": b.failure_threshold, "timeout": b.timeout,
                                      "reset_timeout": b.reset_timeout}  # fmt: skip
        opened = {t: str(s.state) for t, s in sorted(self.circuits().items()) if s.state is not CircuitState.CLOSED}
        if opened:
            out["open_circuits"] = opened
        if c.job_timeout is not None:
            out["job_timeout"] = c.job_timeout
        return out

    async def beat(self) -> None:
        """Stores the row (a heartbeat), and forgets long-silent workers."""
        record = self.record()
        await self.queue.store.heartbeat(record, forget_before_ms=history.forget_before(record.heartbeat_at))

    async def first_beat(self) -> None:
        """The heartbeat at start: the worker shows at once, not after an
        interval. A failure is logged; the duty's loop tries again."""
        try:
            await self.beat()
        except Exception:  # noqa: BLE001 - the registry never stops a worker
            log.warning("worker %s could not register itself; trying again", self.worker_id, exc_info=True)

    async def unregister(self) -> None:
        """Deletes the row at a graceful stop (a failure is logged: the row
        then shows dead, and is forgotten later)."""
        try:
            await self.queue.store.unregister(self.worker_id)
        except Exception:  # noqa: BLE001 - a stop goes on whatever the registry says
            log.warning("worker %s could not unregister itself", self.worker_id, exc_info=True)
