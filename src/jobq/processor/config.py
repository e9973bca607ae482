"""A processor's options: each documented beside its default, and checked
once, when the processor is made.

:class:`ProcessorConfig` is what ``JobProcessor(queue, **options)`` builds
from its keyword options; ``processor.config`` holds it, and the processor's
option attributes (``processor.concurrency``, ``processor.poll_interval``,
...) read it. Unknown option names are refused with a suggestion
(:func:`jobq.options.reject_unknown`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from ..admin import Retention
from ..errors import InvalidOption
from ..job import DEFAULT_MAX_ATTEMPTS, DEFAULT_QUEUE
from ..keylimits import KeyLimit, check_limits
from ..newjobs import Defaults
from ..rescue import RESCUE_INTERVAL
from ..retry import RETRY_DELAYS, FixedDelays, RetryPolicy
from .limits import CircuitBreaker, RateLimit

CONCURRENCY = 5  # jobs run at once by one processor
MAX_RETRIES = DEFAULT_MAX_ATTEMPTS  # max_attempts of jobs added through the processor
POLL_INTERVAL = 1.0  # seconds; the longest an idle worker waits before looking again
HEARTBEAT_INTERVAL = 10.0  # seconds between lease renewals of running jobs
SHUTDOWN_TIMEOUT = 30.0  # seconds stop() lets jobs in flight finish before releasing them
PRUNE_INTERVAL = 300.0  # seconds between prunes of finished jobs (None: never)
CANCEL_CHECK_INTERVAL = 1.0  # seconds between checks for cancel requests on running jobs
ADD_PRIORITY = 5  # priority of jobs added through the processor, as in k-msg


def _positive_seconds(name: str, seconds: object, *, none_ok: bool = False) -> None:
    if seconds is None and none_ok:
        return
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
        raise InvalidOption(f"{name} must be a positive number of seconds, not {seconds!r}")


def _per_queue(queues: Mapping[Any, Any]) -> dict[str, int]:
    per_queue: dict[str, int] = {}
    for name, slots in queues.items():
        if not isinstance(name, str) or not name:
            raise InvalidOption(f"queue names must be non-empty strs, not {name!r}")
        if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
            raise InvalidOption(f"concurrency of queue {name!r} must be an int >= 1, not {slots!r}")
        per_queue[name] = slots
    if not per_queue:
        raise InvalidOption("queues must name at least one queue")
    return per_queue


@dataclass(frozen=True)
class ProcessorConfig:
    """Every option of a :class:`jobq.JobProcessor`, with its default.

    Checked when made (:class:`jobq.InvalidOption` names the option and the
    value refused); change one with :func:`dataclasses.replace`, which checks
    again."""

    concurrency: int = CONCURRENCY
    """Jobs run at once. With per-queue concurrency (``queues`` as a
    mapping) it is the sum of the queues' slots, unless set after."""
    retry_delays: Sequence[float] = RETRY_DELAYS
    """Seconds; attempt n waits ``retry_delays[min(n, len-1)]`` before it
    runs again (k-msg's rule)."""
    retry_policy: RetryPolicy | None = None
    """Replaces ``retry_delays`` (for example :class:`jobq.ExponentialBackoff`)."""
    max_retries: int = MAX_RETRIES
    """``max_attempts`` of jobs added with ``add`` (and by cron schedules)
    unless they say otherwise."""
    poll_interval: float = POLL_INTERVAL
    """Seconds; the longest an idle worker waits before looking again.
    Enqueues wake it sooner (at once in this process, within about 10 ms
    from another process on SQLite)."""
    rate_limit: RateLimit | None = None
    """A :class:`jobq.RateLimit` on job starts (``None``: none)."""
    circuit_breaker: CircuitBreaker | None = None
    """A :class:`jobq.CircuitBreaker`, one state per job type (``None``: none)."""
    queues: Sequence[str] | Mapping[str, int] | None = None
    """The named queues to take jobs from (``None``: all). A mapping gives
    each queue its own concurrency (``{"emails": 4, "default": 8}``): each
    gets that many slots and is claimed on its own."""
    heartbeat_interval: float = HEARTBEAT_INTERVAL
    """Seconds between lease renewals of running jobs; shorter than the
    queue's lease."""
    rescue_interval: float = RESCUE_INTERVAL
    """Seconds between sweeps for jobs whose claim ran out: a lease that
    expired (a lost worker), or a claim without a lease held past the
    queue's ``foreign_claim_timeout``. A sweep also starts that timeout for
    such claims it sees for the first time."""
    shutdown_timeout: float | None = None
    """Seconds ``stop()`` lets jobs in flight finish; the rest are released
    to run again at once (no attempt spent). ``None``: 30 s
    (:data:`SHUTDOWN_TIMEOUT`), or ``jobq worker``'s own 8 s, which fits
    ``docker stop``."""
    job_timeout: float | None = None
    """Seconds a handler may run before it is cancelled and the job fails
    with :class:`jobq.JobTimeout` (retried as usual); ``None``: no limit. A
    job type's ``timeout`` (``handle``) overrides it, and a job's own
    (``add(timeout=)``, metadata key ``"jobq.timeout"``) overrides both. A
    sync handler cannot be interrupted: it is abandoned in its thread, its
    slot is freed, and whatever it returns later is ignored."""
    batch_size: int | None = None
    """Most jobs claimed in one statement (``None``: ``concurrency``)."""
    worker_id: str | None = None
    """Names this processor in leases and logs (``None``: the queue's)."""
    limits: Sequence[KeyLimit] = ()
    """:class:`jobq.KeyLimit` s (per-key rate or concurrency), enforced by
    the store across every process configured with them."""
    prune_interval: float | None = PRUNE_INTERVAL
    """Seconds between deletions of finished jobs older than ``retention``;
    ``None`` never prunes."""
    retention: Retention | None = None
    """How long finished jobs are kept (``None``: a default
    :class:`jobq.Retention`: completed 1 day, failed and cancelled 7 days)."""
    cancel_check_interval: float = CANCEL_CHECK_INTERVAL
    """Seconds between checks for cancel requests on running jobs (a cancel
    through this process's queue object is seen at once)."""

    # Derived once from the options above (not options themselves).
    policy: RetryPolicy = field(init=False, repr=False, compare=False)
    """``retry_policy``, or ``retry_delays`` as a policy."""
    queue_names: list[str] | None = field(init=False, repr=False, compare=False)
    """The names in ``queues`` (``None``: every queue)."""
    queue_concurrency: dict[str, int] | None = field(init=False, repr=False, compare=False)
    """Slots per queue when ``queues`` is a mapping, else ``None``."""
    claim_batch: int = field(init=False, repr=False, compare=False)
    """``batch_size``, or ``concurrency``."""
    keep: Retention = field(init=False, repr=False, compare=False)
    """``retention``, or the default."""
    grace: float = field(init=False, repr=False, compare=False)
    """Seconds ``stop()`` waits: ``shutdown_timeout``, or its default."""

    def __post_init__(self) -> None:
        queues = self.queues
        per_queue: dict[str, int] | None = None
        if isinstance(queues, Mapping):
            per_queue = _per_queue(queues)
        elif isinstance(queues, str):
            raise InvalidOption(f"queues must be a list of names (or a mapping), not the str {queues!r}")
        _positive_seconds("prune_interval", self.prune_interval, none_ok=True)
        _positive_seconds("cancel_check_interval", self.cancel_check_interval)
        if self.retention is not None and not isinstance(self.retention, Retention):
            raise InvalidOption(f"retention must be a jobq.Retention, not {type(self.retention).__name__}")
        limits = tuple(check_limits(self.limits))
        for name in ("concurrency", "max_retries"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidOption(f"{name} must be an int >= 1, not {value!r}")
        for name in ("poll_interval", "heartbeat_interval", "rescue_interval"):
            seconds = getattr(self, name)
            if not isinstance(seconds, (int, float)) or seconds <= 0:
                raise InvalidOption(f"{name} must be a positive number of seconds, not {seconds!r}")
        grace = SHUTDOWN_TIMEOUT if self.shutdown_timeout is None else self.shutdown_timeout
        if isinstance(grace, bool) or not isinstance(grace, (int, float)) or not 0 <= grace < float("inf"):
            raise InvalidOption(f"shutdown_timeout must be a number of seconds >= 0, not {grace!r}")
        timeout = self.job_timeout
        if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
            raise InvalidOption(f"job_timeout must be a positive number of seconds, not {timeout!r}")
        if self.rate_limit is not None and not isinstance(self.rate_limit, RateLimit):
            raise InvalidOption(f"rate_limit must be a jobq.RateLimit, not {type(self.rate_limit).__name__}")
        if self.circuit_breaker is not None and not isinstance(self.circuit_breaker, CircuitBreaker):
            raise InvalidOption(
                f"circuit_breaker must be a jobq.CircuitBreaker, not {type(self.circuit_breaker).__name__}"
            )
        derived = {
            "limits": limits,
            "policy": self.retry_policy or FixedDelays(self.retry_delays),
            "queue_names": list(queues) if queues is not None else None,
            "queue_concurrency": per_queue,
            "claim_batch": self.batch_size or self.concurrency,
            "keep": self.retention or Retention(),
            "grace": float(grace),
        }
        for name, value in derived.items():
            object.__setattr__(self, name, value)

    def check_lease(self, lease: float) -> None:
        """Refuses a heartbeat too slow for the queue's ``lease`` (seconds)."""
        if self.heartbeat_interval >= lease:
            raise InvalidOption(
                f"heartbeat_interval ({self.heartbeat_interval:g} s) must be shorter than the queue's"
                f" lease ({lease:g} s), or leases expire under running jobs"
            )

    @property
    def default_queue(self) -> str:
        """Where ``add`` and cron schedules put jobs unless told: the first of
        ``queues``, else the default queue."""
        return self.queue_names[0] if self.queue_names else DEFAULT_QUEUE

    @property
    def add_defaults(self) -> Defaults:
        """What ``add`` and cron schedules give a job they are not told:
        priority 5 (k-msg's processor), ``max_retries`` attempts, the
        processor's first queue."""
        return Defaults(ADD_PRIORITY, self.max_retries, self.default_queue)


#: The option names ``JobProcessor`` takes.
OPTIONS = frozenset(f.name for f in fields(ProcessorConfig) if f.init)


def total_concurrency(queues: object, concurrency: int) -> int:
    """``concurrency``, or with per-queue concurrency the sum of the queues'
    slots (the mapping itself is checked by :class:`ProcessorConfig`)."""
    if isinstance(queues, Mapping):
        slots = [n for n in queues.values() if isinstance(n, int) and not isinstance(n, bool)]
        return sum(slots) or concurrency
    return concurrency
