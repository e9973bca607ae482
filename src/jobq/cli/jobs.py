"""The ``jobq`` commands on jobs and their store: enqueue, stats, list, show,
retry, cancel, remove, prune, clear and migrate.

Read commands print aligned tables, or JSON with ``--json``; stats, list and
show never change a SQLite file (no schema upgrade: they say when one is
needed). The commands that delete or reset many jobs (``prune``,
``remove``, ``clear``, ``retry --all-failed``) say what they will do and ask
first (see :func:`~jobq.cli.common.confirm`). Errors (an unknown id, an
unreachable database, a bad URL) raise :class:`JobqError`, which ``jobq``
prints as one line before exiting with status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from .. import admin
from ..admin.verbs import check_offset
from ..errors import InvalidOption
from ..job import Job, JobStatus
from ..tasks import App, Task
from .common import (
    CommandError,
    confirm,
    cut,
    emit,
    json_arg,
    load_target,
    one_line,
    opened,
    say_seconds,
    status_names,
    table,
    url_given,
    url_of,
)


def _count_table(title: str, grouped: dict[str, dict[str, int]]) -> str:
    statuses = status_names()
    rows = [[name, *(counts.get(s, 0) for s in statuses), sum(counts.values())] for name, counts in grouped.items()]
    return table([title, *statuses, "total"], rows, numeric=range(1, len(statuses) + 2))


async def _job_or_fail(queue: Any, job_id: str) -> Any:
    job = await queue.get_job(job_id)
    if job is None:
        raise CommandError(f"no job with id {job_id!r}")
    return job


async def cmd_enqueue(args: argparse.Namespace) -> int:
    metadata = json_arg(args.metadata, "--metadata") if args.metadata else None
    if args.app is not None:
        job = await _defer_task(args, metadata)
    else:
        if args.arg:
            raise CommandError("--arg names a task's argument; it needs --app")
        data = json_arg(args.data or "null", "the payload")
        async with opened(args) as queue:
            job = await queue.enqueue(
                args.type,
                data,
                priority=args.priority,
                delay=args.delay,
                max_attempts=args.max_attempts,
                metadata=metadata,
                queue=args.queue,
            )
    if args.json:
        print(json.dumps({"id": job.id, "status": job.status.value, "process_at": job.process_at.isoformat()}))
    else:
        print(job.id)
    return 0


async def _defer_task(args: argparse.Namespace, metadata: dict[str, Any] | None) -> Job[Any]:
    """Defers the task ``args.type`` of the app ``args.app`` with the
    arguments given (a JSON object and ``--arg`` pairs), on ``--url`` or
    the app's own queue."""
    app = load_target(args.app)
    if not isinstance(app, App):
        raise CommandError(f"{args.app} is a {type(app).__name__}, not a jobq.App")
    task = find_task(app, args.type)
    named = json_arg(args.data, "the arguments") if args.data is not None else {}
    if not isinstance(named, dict):
        raise CommandError(f"the arguments of task {task.name!r} are a JSON object, not {type(named).__name__}")
    hints = task.signature.hints
    for pair in args.arg:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise CommandError(f"--arg takes NAME=VALUE, not {pair!r}")
        if hints.get(name) is str:
            named[name] = text
        else:
            try:
                named[name] = json.loads(text)
            except ValueError:
                named[name] = text
    call = task.options(
        delay=args.delay, priority=args.priority, queue=args.queue, max_attempts=args.max_attempts, metadata=metadata
    )
    try:
        spec = call.job(**named)
    except TypeError as exc:
        raise CommandError(str(exc)) from None
    target = App(url_of(args)) if url_given(args) else app
    try:
        (job,) = await (await target.open()).enqueue_many([spec])
    finally:
        await target.close()
    return job


def find_task(app: App, name: str) -> Task[Any, Any]:
    """The app's task named ``name``; else the one task whose name ends with
    ``.name`` or whose function is called ``name``."""
    task = app.tasks.get(name)
    if task is not None:
        return task
    matches = [
        t for t in app.tasks.values() if name in (t.name.rsplit(".", 1)[-1], getattr(t.fn, "__name__", None))
    ]
    if len(matches) == 1:
        return matches[0]
    known = ", ".join(sorted(app.tasks)) or "none"
    if matches:
        raise CommandError(f"{name!r} names several tasks ({', '.join(t.name for t in matches)}); give the full name")
    raise CommandError(f"the app has no task {name!r} (its tasks: {known})")


async def cmd_stats(args: argparse.Namespace) -> int:
    async with opened(args, read_only=True) as queue:
        out = await admin.stats(queue, minutes=args.minutes, finished=True if args.all else None)
        out["ready"] = await queue.size()
    if args.json:
        emit(out)
        return 0
    counts = out["counts"]
    rows = [[s, counts.get(s, 0)] for s in status_names()] + [["total", out["total"]]]
    print(table(["status", "jobs"], rows, numeric=[1]))
    if out["by_queue"]:
        print()
        print(_count_table("queue", out["by_queue"]))
    if out["paused"]:
        print()
        print("paused: " + ", ".join(f"{name} (since {at[:19].replace('T', ' ')})" for name, at in out["paused"].items()))
    if out["by_type"]:
        print()
        print(_count_table("type", out["by_type"]))
    if out["breakdown"] == "unfinished":
        print()
        print(
            f"per queue and type: waiting and running jobs only, at {out['total']} jobs"
            " (--all counts finished ones too, reading every job)"
        )
    tp = out["throughput"]
    print()
    print(
        f"last {tp['minutes']} min: {tp['completed']} completed, {tp['failed']} failed,"
        f" {tp['per_minute']} jobs/min, failure rate {tp['failure_rate'] * 100:.1f}%"
    )
    return 0


async def cmd_list(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise InvalidOption(f"--limit must be at least 1, not {args.limit}")
    offset = args.offset if args.page is None else (max(args.page, 1) - 1) * args.limit
    check_offset(offset)  # before the file is opened: a bad argument is the first thing said
    async with opened(args, read_only=True) as queue:
        page = await queue.list_jobs(
            status=args.status, type=args.type, queue=args.queue, limit=args.limit, offset=offset, order=args.order,
            after=args.after,
        )  # fmt: skip
    jobs = [admin.job_dict(job, full=False) for job in page.jobs]
    if args.json:
        emit(
            {"jobs": jobs, "total": page.total, "limit": page.limit, "offset": page.offset,
             "next_cursor": page.next_cursor}
        )  # fmt: skip
        return 0
    rows = [
        [j["id"], j["type"], j["queue"], j["status"], f"{j['attempts']}/{j['max_attempts']}",
         str(j["created_at"])[:19].replace("T", " "), cut(j["data_preview"], 48)]
        for j in jobs
    ]  # fmt: skip
    print(table(["id", "type", "queue", "status", "attempts", "created (UTC)", "payload"], rows, numeric=[4]))
    # The cursor finds the next page through an index; an offset counts
    # every job before it (slow deep into a million).
    follow = f" (or --after {page.next_cursor}, faster deep in a big table)" if page.next_cursor else ""
    if args.after is not None:
        print(f"\n{len(jobs)} jobs past the cursor, of {page.total}", end="")
        print(f"; next page: --after {page.next_cursor}" if page.next_cursor else "")
        return 0
    shown_to = page.offset + len(jobs)
    print(f"\n{page.offset + 1 if jobs else 0}-{shown_to} of {page.total} jobs", end="")
    print(f"; next page: --offset {shown_to}{follow}" if shown_to < page.total else "")
    return 0


async def cmd_show(args: argparse.Namespace) -> int:
    async with opened(args, read_only=True) as queue:
        job = await _job_or_fail(queue, args.id)
        data = await admin.job_detail(queue, job)
    if args.json:
        emit(data)
        return 0
    scalar = [k for k in data if k not in ("data", "result", "metadata", "error", "history")]
    print(table(["field", "value"], [[k, data[k]] for k in scalar]))
    for name in ("data", "result", "metadata"):
        print(f"\n{'payload' if name == 'data' else name}:")
        print(json.dumps(data[name], indent=2, ensure_ascii=False, default=str))
    print("\nerror:")
    print(data["error"] if data["error"] is not None else "-")
    print("\ntimeline (UTC):")
    for name, at in admin.timeline(job):
        print(f"  {at:%Y-%m-%d %H:%M:%S.%f}"[:-3] + f"  {name}")
    print(f"\nattempt history ({len(data['history'])}):")
    for attempt in data["history"]:
        _print_attempt(attempt)
    return 0


def _print_attempt(a: dict[str, Any]) -> None:
    """One attempt of ``jobq show``: a line, then its error and traceback indented."""
    took = "" if a["duration"] is None else f" in {a['duration']:.3f} s"
    print(f"  #{a['attempt']} {a['outcome']} on {a['worker'] or '-'}, ended {a['ended_at']}{took}")
    if a["error_type"] is not None or a["error"] is not None:
        print(f"    {a['error_type'] or 'error'}: {a['error'] if a['error'] is not None else ''}".rstrip())
    if a["traceback"]:
        for line in a["traceback"].rstrip("\n").split("\n"):
            print(f"    | {line}")


async def cmd_workers(args: argparse.Namespace) -> int:
    async with opened(args, read_only=True) as queue:
        rows = await admin.workers(queue)
    if args.json:
        emit(rows)
        return 0
    if not rows:
        print("no workers registered")
        return 0
    print(
        table(
            ["worker", "state", "host", "pid", "queues", "concurrency", "running", "done", "started", "heartbeat"],
            [
                [
                    w["owner"], "alive" if w.get("alive", True) else "DEAD", w.get("host"), w.get("pid"),
                    "all" if w.get("queues") is None else ",".join(w["queues"]), w.get("concurrency"), w["jobs"],
                    w.get("done"), w.get("started_at"), w.get("heartbeat_at"),
                ]
                for w in rows
            ],
            numeric=(3, 5, 6, 7),
        )  # fmt: skip
    )
    return 0


async def cmd_retry(args: argparse.Namespace) -> int:
    if bool(args.id) == bool(args.all_failed):
        raise CommandError("give a job id or --all-failed, not both or neither")
    if args.type and not args.all_failed:
        raise CommandError("--type goes with --all-failed")
    async with opened(args) as queue:
        if args.all_failed:
            failed = (await queue.list_jobs(status=JobStatus.FAILED, type=args.type, limit=1)).total
            of_type = f" of type {args.type!r}" if args.type else ""
            if failed == 0:
                return _report_retried(admin.RetryReport(0, []), args.json)
            plan = f"retry: {failed} failed jobs{of_type} to run again"
            if not confirm(args, plan, "Retry them?", would_retry=failed):
                return 0
            return _report_retried(await admin.retry_all_failed(queue, type=args.type), args.json)
        if args.yes or args.dry_run:
            raise CommandError("--yes and --dry-run go with --all-failed")
        job = await _job_or_fail(queue, args.id)
        if job.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
            raise CommandError(f"job {args.id} is {job.status.value}; only failed or cancelled jobs are retried")
        job = await queue.retry(args.id)
    print(json.dumps({"id": job.id, "status": job.status.value}) if args.json else f"{job.id} {job.status.value}")
    return 0


def _report_retried(report: admin.RetryReport, as_json: bool) -> int:
    """Prints what ``retry --all-failed`` did; 1 (the exit status) if some
    failed job could not be retried, each named on a line of stderr with why."""
    if as_json:
        skipped = [{"id": job_id, "error": error} for job_id, error in report.not_retried]
        print(json.dumps({"retried": report.retried, "not_retried": skipped}))
    else:
        rest = f"; {len(report.not_retried)} could not be retried" if report.not_retried else ""
        print(f"retried {report.retried} failed jobs{rest}")
        for _, error in report.not_retried:
            print(f"jobq: error: {one_line(error)}", file=sys.stderr)
    return 1 if report.not_retried else 0


async def cmd_cancel(args: argparse.Namespace) -> int:
    async with opened(args) as queue:
        job = await _job_or_fail(queue, args.id)
        if not await queue.cancel(args.id):
            raise CommandError(f"job {args.id} is {job.status.value} and cannot be cancelled")
    print(json.dumps({"id": args.id, "status": "cancelled"}) if args.json else f"{args.id} cancelled")
    return 0


async def cmd_remove(args: argparse.Namespace) -> int:
    async with opened(args) as queue:
        job = await _job_or_fail(queue, args.id)
        running = ""
        if job.status is JobStatus.PROCESSING:
            running = " (running now: its worker's outcome will find it gone)"
        plan = f"remove: job {job.id} ({job.type}, {job.status.value}) to delete{running}"
        if not confirm(args, plan, "Delete it?", would_delete=1):
            return 0
        if not await queue.remove(args.id):
            raise CommandError(f"no job with id {args.id!r}")
    print(json.dumps({"id": args.id, "removed": True}) if args.json else f"{args.id} removed")
    return 0


def _prune_rule(args: argparse.Namespace) -> str:
    """Which jobs ``prune`` deletes, in words."""
    statuses = args.status or ["completed", "failed", "cancelled"]
    if args.older_than is not None:
        return f"{' or '.join(statuses)}, finished more than {say_seconds(args.older_than)} ago"
    ages = {"completed": admin.COMPLETED_RETENTION, "failed": admin.FAILED_RETENTION,
            "cancelled": admin.CANCELLED_RETENTION}  # fmt: skip
    return "; ".join(f"{s} more than {say_seconds(ages[s])} ago" for s in statuses)


async def cmd_prune(args: argparse.Namespace) -> int:
    async with opened(args) as queue:
        doomed = await queue.prune(statuses=args.status, older_than=args.older_than, dry_run=True)
        plan = f"prune: {doomed} finished jobs to delete ({_prune_rule(args)})"
        if doomed and confirm(args, plan, "Delete them?", would_delete=doomed):
            deleted = await queue.prune(statuses=args.status, older_than=args.older_than)
        elif doomed:
            return 0  # a dry run, which said what it would do
        else:
            deleted = 0
    if args.json:
        print(json.dumps({"deleted": deleted}))
    else:
        print(f"deleted {deleted} jobs")
    return 0


async def cmd_clear(args: argparse.Namespace) -> int:
    async with opened(args) as queue:
        counts = {status.value: n for status, n in (await queue.counts()).items() if n}
        total = sum(counts.values())
        if total:
            each = ", ".join(f"{n} {status}" for status, n in counts.items())
            plan = f"clear: every job to delete, {total} in all ({each})"
            if not confirm(args, plan, "Delete them all?", would_delete=total):
                return 0
            await queue.clear()
    print(json.dumps({"deleted": total}) if args.json else f"deleted {total} jobs")
    return 0


async def cmd_migrate(args: argparse.Namespace) -> int:
    """Creates or upgrades the job table's schema and says which version it
    found and reached. Opening a queue migrates under a lock (SQLite's write
    lock, a PostgreSQL advisory lock), so several ``jobq migrate`` (and
    workers) may run at once: one migrates, the others find it done."""
    from ..backends import open_queue
    from ..store.sqlite import schema as sqlite_schema

    url = args.url_arg or url_of(args)
    queue = await asyncio.to_thread(open_queue, url)
    try:
        store = queue.store
        found = getattr(store, "schema_found", None)
        if found is None:
            print(f"{store.name}: nothing to migrate (no schema)")
            return 0
        reached = getattr(store, "schema_version", sqlite_schema.LATEST_VERSION)
        table_name = getattr(store, "table", "?")
        where = getattr(store, "where", None) or getattr(store, "path", "")
    finally:
        await queue.close()
    if args.json:
        print(json.dumps({"backend": store.name, "table": table_name, "found": found, "reached": reached}))
    elif found == reached:
        print(f"{store.name} {where} table {table_name}: schema version {found}, up to date")
    else:
        print(f"{store.name} {where} table {table_name}: schema version {found} -> {reached}")
    return 0
