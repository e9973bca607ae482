"""What operators use, shared by :class:`~jobq.Queue`, the command line and
the dashboard.

- :mod:`jobq.admin.verbs`: the queue's operator verbs (``list_jobs``,
  ``summary``, ``throughput``, ``counts``, ``cleanup_terminal``, ``prune``),
  which ``Queue`` inherits, with the rows they return and the retention
  defaults.
- :mod:`jobq.admin.views`: views and actions built from the public verbs
  (statistics, the dashboard's overview, a job as JSON-ready values, the
  workers seen, retrying every failed job).

Nothing here imports an optional dependency.
"""

from .figures import STATUS_RECOUNT_EVERY, Recounted
from .verbs import (
    CANCELLED_RETENTION,
    COMPLETED_RETENTION,
    FAILED_RETENTION,
    LIST_LIMIT,
    MAX_LIST_LIMIT,
    THROUGHPUT_WINDOW,
    AdminVerbs,
    CountRow,
    JobPage,
    Retention,
    ThroughputRow,
)
from .views import (
    BREAKDOWN_LIMIT,
    THROUGHPUT_MINUTES,
    RetryReport,
    WorkerSeen,
    breakdown,
    counts,
    iso,
    job_detail,
    job_dict,
    overview,
    preview,
    ready_since,
    retry_all_failed,
    slow_figures,
    stats,
    status_text,
    timeline,
    waited,
    workers,
    workers_alive,
)

__all__ = [
    "BREAKDOWN_LIMIT",
    "CANCELLED_RETENTION",
    "COMPLETED_RETENTION",
    "FAILED_RETENTION",
    "LIST_LIMIT",
    "MAX_LIST_LIMIT",
    "STATUS_RECOUNT_EVERY",
    "THROUGHPUT_MINUTES",
    "THROUGHPUT_WINDOW",
    "AdminVerbs",
    "CountRow",
    "JobPage",
    "Recounted",
    "Retention",
    "RetryReport",
    "ThroughputRow",
    "WorkerSeen",
    "breakdown",
    "counts",
    "iso",
    "job_detail",
    "job_dict",
    "overview",
    "preview",
    "ready_since",
    "retry_all_failed",
    "slow_figures",
    "stats",
    "status_text",
    "timeline",
    "waited",
    "workers",
    "workers_alive",
]
