"""Bulk actions of operators: retry, cancel or remove many jobs at once.

Used by the dashboard (jobs picked one by one, or every job a search
matches). Each job is acted on alone, so one that cannot be (a finished job
cannot be cancelled; a retried one's unique key is held by another job; one
removed meanwhile) is reported with why, and the others are still done. An
error of the store stops the action and is raised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import InvalidOption, JobNotFound, NotRetryable
from .verbs import MAX_LIST_LIMIT

if TYPE_CHECKING:
    from ..queue import Queue

BULK_LIMIT = 10_000  # the most jobs one bulk action takes ("every job matching")
#: What a bulk action may do, with its past tense for messages.
ACTIONS = {"retry": "retried", "cancel": "cancelled", "remove": "removed"}


@dataclass(slots=True)
class BulkReport:
    """What a bulk action did: the jobs it acted on, and those it could not, with why."""

    action: str
    done: list[str] = field(default_factory=list)
    not_done: list[tuple[str, str]] = field(default_factory=list)

    def message(self) -> str:
        """One line for the operator: ``Retried 3 jobs.``, or ``Retried 2 of
        3 jobs; 1 could not be retried.``"""
        past = ACTIONS[self.action]
        asked = len(self.done) + len(self.not_done)
        noun = "job" if asked == 1 else "jobs"
        if not self.not_done:
            return f"{past.capitalize()} {asked} {noun}."
        return (
            f"{past.capitalize()} {len(self.done)} of {asked} {noun};"
            f" {len(self.not_done)} could not be {past}."
        )


def check_action(action: object) -> str:
    if action not in ACTIONS:
        raise InvalidOption(f"a bulk action is one of {', '.join(ACTIONS)}, not {action!r}")
    return str(action)


async def matching_ids(queue: Queue, *, limit: int = BULK_LIMIT, **filters: Any) -> tuple[list[str], int]:
    """The ids of up to ``limit`` jobs that ``list_jobs(**filters)`` matches,
    oldest first, and how many match in all."""
    ids: list[str] = []
    total = 0
    while len(ids) < limit:
        page = await queue.list_jobs(
            **filters, limit=min(MAX_LIST_LIMIT, limit - len(ids)), offset=len(ids), order="oldest"
        )
        total = page.total
        ids += [job.id for job in page.jobs]
        if len(page.jobs) < page.limit:
            break
    return ids, max(total, len(ids))


async def bulk_action(queue: Queue, action: str, job_ids: Sequence[str]) -> BulkReport:
    """Does ``action`` (retry, cancel or remove) to each job, once each."""
    report = BulkReport(check_action(action))
    for job_id in dict.fromkeys(job_ids):
        try:
            if action == "retry":
                await queue.retry(job_id)
            elif action == "cancel":
                if not await queue.cancel(job_id):
                    report.not_done.append((job_id, "it has finished, so it cannot be cancelled"))
                    continue
            elif not await queue.remove(job_id):
                report.not_done.append((job_id, "no such job (removed already?)"))
                continue
        except JobNotFound:
            report.not_done.append((job_id, "no such job (removed already?)"))
            continue
        except NotRetryable as exc:
            report.not_done.append((job_id, str(exc)))
            continue
        report.done.append(job_id)
    return report
