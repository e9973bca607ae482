"""Prometheus metrics (needs ``prometheus-client``, in the ``web`` extra).

Three sources. The queue's own counts (jobs by status and queue) are read
from the store when scraped, so any process sees the same numbers. Processor
metrics (jobs processed, failed and retried per type, processing time,
enqueue-to-start latency, lease rescues, circuit-breaker state) are counted
from a processor's events by :func:`instrument`, in the process that runs it.
Store calls (``jobq_store_call_seconds``: calls and seconds by backend and
verb, with errors and the longest call) are timed by the queue's store
(:mod:`jobq.store.instrumented`), in this process.

The queue's figures also give ``jobq_oldest_ready_job_age_seconds{queue}``:
how long the oldest ready job of each named queue has waited since it became
ready (due: a retried job from its retry; 0 for a queue with none ready). Attempts are counted by outcome in
``jobq_job_attempts_total{type,outcome}`` (completed, retry, failed, snoozed,
cancelled, released, lost).

The dashboard serves both at ``/metrics``; ``jobq worker --metrics-port N``
serves a worker's on a port of its own. Under ``--processes`` the supervisor
serves one endpoint for all its workers (:func:`serve_supervisor_metrics`):
each worker counts into files in a temporary ``PROMETHEUS_MULTIPROC_DIR``
(prometheus-client's multiprocess mode) that the supervisor creates, sums and
removes.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Iterable, Mapping
from typing import Any

try:
    from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily
    from prometheus_client.registry import Collector
except ImportError as exc:  # pragma: no cover - depends on the environment
    from .errors import BackendMissing

    raise BackendMissing(f"metrics need prometheus-client: pip install 'jobq[web]' ({exc})") from None

from .admin import THROUGHPUT_MINUTES, CountRow, Recounted, breakdown, ready_since, slow_figures
from .events import Event
from .job import JobStatus
from .processor.limits import CircuitState
from .processor.processor import JobProcessor
from .queue import Queue
from .store.instrumented import StoreTimings, VerbTiming, timings

SCRAPE_TIMEOUT = 10.0  # seconds a worker's scrape waits for the store
#: Seconds; histogram buckets of processing time and of enqueue-to-start latency.
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900)

__all__ = [
    "CONTENT_TYPE", "QueueCollector", "StoreCollector", "instrument", "queue_figures", "queue_metrics",
    "count_into_shared_files", "render_latest", "serve_supervisor_metrics", "serve_worker_metrics",
]  # fmt: skip


def queue_metrics(
    rows: Iterable[Any], ages: Mapping[str, float] | None = None, paused: Iterable[str] = ()
) -> list[Metric]:
    """``jobq_jobs{queue,status}`` from the rows of ``Queue.summary()``,
    ``jobq_oldest_ready_job_age_seconds{queue}`` from ``ages`` (see
    :func:`queue_figures`) when given, and ``jobq_queue_paused{queue}`` (1)
    for each of the ``paused`` queues."""
    jobs = GaugeMetricFamily("jobq_jobs", "Jobs in the store, by queue and status", labels=["queue", "status"])
    totals: dict[tuple[str, str], int] = {}
    for row in rows:
        key = (str(row.queue), str(getattr(row.status, "value", row.status)))
        totals[key] = totals.get(key, 0) + int(row.count)
    for (queue, status), count in sorted(totals.items()):
        jobs.add_metric([queue, status], count)
    stopped = GaugeMetricFamily(
        "jobq_queue_paused", "1 for each named queue workers do not claim from (paused)", labels=["queue"]
    )
    for name in sorted(paused):
        stopped.add_metric([name], 1)
    if ages is None:
        return [jobs, stopped]
    oldest = GaugeMetricFamily(
        "jobq_oldest_ready_job_age_seconds",
        "Seconds the oldest ready job of each queue has waited since it became ready (0: none ready)",
        labels=["queue"],
    )
    for queue, age in sorted(ages.items()):
        oldest.add_metric([queue], age)
    return [jobs, stopped, oldest]


#: What :func:`queue_metrics` is made from: the summary rows, the age of each
#: queue's oldest ready job, the paused queues.
Figures = tuple[list[Any], dict[str, float], list[str]]


async def queue_figures(queue: Queue, counted: Recounted[dict[str, Any]] | None = None) -> Figures:
    """The queue's counts (``Queue.summary()``), per named queue the age in
    seconds of its oldest ready job (one small read per queue that has ready
    jobs), and the paused queues.

    With ``counted`` (a :class:`~jobq.admin.Recounted` of
    :func:`jobq.admin.breakdown`, the dashboard's), the counts per queue are
    its own: exact while counting is fast, else the last background count
    (a scrape never counts a million jobs), and the waiting and running
    jobs alone until its first count ends."""
    if counted is None:
        rows = list(await queue.summary())
    else:
        slow, _, _ = await slow_figures(queue, THROUGHPUT_MINUTES, counted)
        rows = [
            CountRow(name, "", JobStatus(status), n)
            for name, statuses in slow["by_queue"].items()
            for status, n in statuses.items()
        ]
    now = queue.clock.now()
    names = sorted({str(row.queue) for row in rows})
    ready = {str(row.queue) for row in rows if row.status is JobStatus.PENDING and row.count}
    ages = dict.fromkeys(names, 0.0)
    for name in sorted(ready):
        oldest = await queue.oldest_ready(name)
        if oldest is not None:
            ages[name] = max(0.0, now - ready_since(oldest).timestamp())
    return rows, ages, list(await queue.paused())


class _Rows(Collector):
    def __init__(self, figures: Figures) -> None:
        self.figures = figures

    def collect(self) -> Iterable[Metric]:
        rows, ages, paused = self.figures
        return queue_metrics(rows, ages, paused)


class QueueCollector(Collector):
    """The queue's counts, read when scraped from another thread (the
    metrics server's) through the event loop that owns the queue."""

    def __init__(self, queue: Queue, loop: asyncio.AbstractEventLoop) -> None:
        self.queue = queue
        self.loop = loop
        #: Counted again for each scrape while that is fast, in the
        #: background once it is slow (a scrape never counts a million jobs).
        self.counted: Recounted[dict[str, Any]] = Recounted(lambda: breakdown(queue, minutes=1))

    def collect(self) -> Iterable[Metric]:
        future = asyncio.run_coroutine_threadsafe(queue_figures(self.queue, self.counted), self.loop)
        try:
            rows, ages, paused = future.result(SCRAPE_TIMEOUT)
        except Exception:  # an unreachable store leaves this scrape without counts
            future.cancel()
            return []
        return queue_metrics(rows, ages, paused)


class _CircuitCollector(Collector):
    """``jobq_circuit_state{type,state}``: 1 for each type's current state."""

    def __init__(self) -> None:
        self.processors: weakref.WeakSet[JobProcessor] = weakref.WeakSet()

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            "jobq_circuit_state", "Circuit-breaker state per job type (1 = current)", labels=["type", "state"]
        )
        for processor in list(self.processors):
            for job_type, circuit in sorted(processor.circuits.items()):
                current = str(circuit.state)
                for state in CircuitState:
                    family.add_metric([job_type, state.value], 1.0 if state.value == current else 0.0)
        return [family]


class StoreCollector(Collector):
    """The timings of store calls (see :mod:`jobq.store.instrumented`) of
    the stores it was given, summed by backend and verb:
    ``jobq_store_call_seconds`` (a summary: ``_count`` calls, ``_sum``
    seconds), ``jobq_store_call_errors_total`` and
    ``jobq_store_call_max_seconds``."""

    def __init__(self) -> None:
        self.stores: weakref.WeakSet[StoreTimings] = weakref.WeakSet()

    def add(self, queue: Queue) -> None:
        figures = timings(queue.store)
        if figures is not None:
            self.stores.add(figures)

    def collect(self) -> Iterable[Metric]:
        totals: dict[tuple[str, str], VerbTiming] = {}
        for figures in list(self.stores):
            for verb, t in figures.snapshot().items():
                total = totals.setdefault((figures.backend, verb), VerbTiming())
                total.calls += t.calls
                total.errors += t.errors
                total.seconds += t.seconds
                total.max_seconds = max(total.max_seconds, t.max_seconds)
        labels = ["backend", "verb"]
        seconds = SummaryMetricFamily("jobq_store_call_seconds", "Seconds in calls of store verbs", labels=labels)
        errors = CounterMetricFamily("jobq_store_call_errors", "Calls of store verbs that raised", labels=labels)
        longest = GaugeMetricFamily("jobq_store_call_max_seconds", "The longest call of each store verb", labels=labels)
        for key, t in sorted(totals.items()):
            seconds.add_metric(list(key), count_value=t.calls, sum_value=t.seconds)
            errors.add_metric(list(key), t.errors)
            longest.add_metric(list(key), t.max_seconds)
        return [seconds, errors, longest]


class _Instruments:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.processed = Counter(
            "jobq_jobs_processed", "Jobs that reached an end (completed or failed for good)", ["type"],
            registry=registry,
        )
        self.succeeded = Counter("jobq_jobs_succeeded", "Jobs completed", ["type"], registry=registry)
        self.failed = Counter("jobq_jobs_failed", "Jobs failed for good", ["type"], registry=registry)
        self.retried = Counter("jobq_jobs_retried", "Failed attempts scheduled to run again", ["type"], registry=registry)
        self.attempts = Counter(
            "jobq_job_attempts", "Attempts by job type and outcome (completed, retry, failed, snoozed,"
            " cancelled, released, lost)", ["type", "outcome"], registry=registry,
        )  # fmt: skip
        self.rescued = Counter(
            "jobq_lease_rescues", "Jobs taken back after their worker's lease expired", ["type"], registry=registry
        )
        self.processing = Histogram(
            "jobq_job_processing_seconds", "Seconds a handler ran", ["type"], buckets=BUCKETS, registry=registry
        )
        self.latency = Histogram(
            "jobq_job_start_latency_seconds",
            "Seconds from when a job was due (enqueued, or its delay over) to its handler starting",
            ["type"],
            buckets=BUCKETS,
            registry=registry,
        )
        self.circuits = _CircuitCollector()
        registry.register(self.circuits)


_instruments: dict[int, _Instruments] = {}
_lock = threading.Lock()


def _for(registry: CollectorRegistry) -> _Instruments:
    with _lock:
        found = _instruments.get(id(registry))
        if found is None:
            found = _instruments[id(registry)] = _Instruments(registry)
        return found


_store_collectors: dict[int, StoreCollector] = {}


def _stores(registry: CollectorRegistry) -> StoreCollector:
    """The registry's store-call collector, registered on first use."""
    with _lock:
        found = _store_collectors.get(id(registry))
        if found is None:
            found = _store_collectors[id(registry)] = StoreCollector()
            registry.register(found)
        return found


def instrument(processor: JobProcessor, registry: CollectorRegistry | None = None) -> None:
    """Counts ``processor``'s events, and times its store's calls, into
    ``registry`` (default: the process-wide one, which the dashboard's
    ``/metrics`` also serves)."""
    registry = REGISTRY if registry is None else registry
    m = _for(registry)
    _stores(registry).add(processor.queue)
    m.circuits.processors.add(processor)

    def started(event: Event) -> None:
        job = event.job
        if job is None:
            return
        due = max(job.created_at, job.process_at).timestamp()
        begun = job.started_at.timestamp() if job.started_at else processor.clock.now()
        m.latency.labels(job.type).observe(max(0.0, begun - due))

    def ended(outcome: str) -> Any:
        attempt = _ATTEMPT_OUTCOMES[outcome]

        def count(event: Event) -> None:
            if event.job is None:
                return
            job_type = event.job.type
            # A rescue's failure for good has no processing time: its attempt
            # was counted as lost.
            if event.processing_time is not None:
                m.attempts.labels(job_type, attempt).inc()
            if outcome == "retried":
                m.retried.labels(job_type).inc()
            else:
                m.processed.labels(job_type).inc()
                (m.succeeded if outcome == "succeeded" else m.failed).labels(job_type).inc()
            if event.processing_time is not None:
                m.processing.labels(job_type).observe(event.processing_time)

        return count

    def lost(event: Event) -> None:
        if event.job is not None:
            m.rescued.labels(event.job.type).inc()
            m.attempts.labels(event.job.type, "lost").inc()

    def other(outcome: str) -> Any:
        def count(event: Event) -> None:
            if event.job is not None:
                m.attempts.labels(event.job.type, outcome).inc()

        return count

    processor.on("job_started", started)
    processor.on("job_completed", ended("succeeded"))
    processor.on("job_retry", ended("retried"))
    processor.on("job_failed", ended("failed"))
    processor.on("job_lost", lost)
    for name, outcome in (("job_snoozed", "snoozed"), ("job_cancelled", "cancelled"), ("job_released", "released")):
        processor.on(name, other(outcome))


#: The ``outcome`` label of ``jobq_job_attempts_total`` per counted ending.
_ATTEMPT_OUTCOMES = {"succeeded": "completed", "retried": "retry", "failed": "failed"}


async def render_latest(
    queue: Queue, registry: CollectorRegistry | None = None, *, counted: Recounted[dict[str, Any]] | None = None
) -> bytes:
    """The text exposition the dashboard serves: the queue's counts (see
    :func:`queue_figures` for ``counted``), then ``registry`` (default: the
    process-wide one), with the timings of the queue's store calls."""
    registry = REGISTRY if registry is None else registry
    _stores(registry).add(queue)
    figures = await queue_figures(queue, counted)
    counts = CollectorRegistry(auto_describe=False)
    counts.register(_Rows(figures))
    return generate_latest(counts) + generate_latest(registry)


def serve_worker_metrics(processor: JobProcessor, port: int, host: str = "127.0.0.1") -> Any:
    """Serves ``processor``'s metrics and its queue's counts on ``host:port``
    (a thread of its own); call from the event loop that runs the processor.
    Returns the HTTP server (``.shutdown()`` stops it)."""
    from prometheus_client import start_http_server

    registry = CollectorRegistry()
    instrument(processor, registry)
    registry.register(QueueCollector(processor.queue, asyncio.get_running_loop()))
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server


def serve_supervisor_metrics(directory: str, port: int, host: str = "127.0.0.1") -> Any:
    """Serves on ``host:port`` the processor metrics of every worker process
    that counts into ``directory`` (their ``PROMETHEUS_MULTIPROC_DIR``;
    prometheus-client's multiprocess mode sums their files), for ``jobq
    worker --processes N --metrics-port PORT``. Returns the HTTP server
    (``.shutdown()`` stops it)."""
    from prometheus_client import start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    server, _thread = start_http_server(port, addr=host, registry=registry)
    return server


def count_into_shared_files(processor: JobProcessor) -> None:
    """Counts ``processor``'s events for a supervisor's endpoint (see
    :func:`serve_supervisor_metrics`): this process was started with
    ``PROMETHEUS_MULTIPROC_DIR`` set, so its counters live in files there."""
    instrument(processor, CollectorRegistry())
