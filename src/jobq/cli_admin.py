"""The operator commands of ``jobq``: stats, list, show, retry, cancel,
remove, prune and dashboard.

Read commands print aligned tables, or JSON with ``--json``. Errors (an
unknown id, an unreachable database, a bad URL) raise :class:`JobqError`,
which ``jobq`` prints as one line before exiting with status 1.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import secrets
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from . import admin
from .backends import DEFAULT_URL, connect
from .errors import InvalidOption, JobqError
from .job import TERMINAL_STATUSES, JobStatus

URL_ENV = "JOBQ_URL"
DASHBOARD_HOST = "127.0.0.1"
DASHBOARD_PORT = 8080
LIST_LIMIT = 50  # jobs per page of `jobq list`
STATS_MINUTES = 15  # minutes of throughput `jobq stats` reports

Command = Callable[[str, str], argparse.ArgumentParser]


class CommandError(JobqError):
    """The command cannot run as given."""


def url_of(args: argparse.Namespace) -> str:
    return str(args.url or os.environ.get(URL_ENV) or DEFAULT_URL)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[int] = ()) -> str:
    """Rows under headers, each column as wide as its widest cell; the
    ``numeric`` columns aligned right."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def emit(value: Any) -> None:
    print(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _statuses() -> list[str]:
    return [s.value for s in JobStatus]


def _count_table(title: str, grouped: dict[str, dict[str, int]]) -> str:
    statuses = _statuses()
    rows = [[name, *(counts.get(s, 0) for s in statuses), sum(counts.values())] for name, counts in grouped.items()]
    return table([title, *statuses, "total"], rows, numeric=range(1, len(statuses) + 2))


# -- commands ------------------------------------------------------------------


async def cmd_stats(args: argparse.Namespace) -> int:
    async with connect(url_of(args)) as queue:
        out = await admin.stats(queue, minutes=args.minutes)
        out["ready"] = await queue.size()
    if args.json:
        emit(out)
        return 0
    counts = out["counts"]
    rows = [[s, counts.get(s, 0)] for s in _statuses()] + [["total", out["total"]]]
    print(table(["status", "jobs"], rows, numeric=[1]))
    if out["by_queue"]:
        print()
        print(_count_table("queue", out["by_queue"]))
    if out["by_type"]:
        print()
        print(_count_table("type", out["by_type"]))
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
    async with connect(url_of(args)) as queue:
        page = await queue.list_jobs(
            status=args.status, type=args.type, queue=args.queue, limit=args.limit, offset=offset, order=args.order
        )
    jobs = [admin.job_dict(job, full=False) for job in page.jobs]
    if args.json:
        emit({"jobs": jobs, "total": page.total, "limit": page.limit, "offset": page.offset})
        return 0
    rows = [
        [j["id"], j["type"], j["queue"], j["status"], f"{j['attempts']}/{j['max_attempts']}",
         str(j["created_at"])[:19].replace("T", " "), _cut(j["data_preview"], 48)]
        for j in jobs
    ]  # fmt: skip
    print(table(["id", "type", "queue", "status", "attempts", "created (UTC)", "payload"], rows, numeric=[4]))
    shown_to = page.offset + len(jobs)
    print(f"\n{page.offset + 1 if jobs else 0}-{shown_to} of {page.total} jobs", end="")
    print(f"; next page: --offset {shown_to}" if shown_to < page.total else "")
    return 0


async def _job_or_fail(queue: Any, job_id: str) -> Any:
    job = await queue.get_job(job_id)
    if job is None:
        raise CommandError(f"no job with id {job_id!r}")
    return job


async def cmd_show(args: argparse.Namespace) -> int:
    async with connect(url_of(args)) as queue:
        job = await _job_or_fail(queue, args.id)
    data = admin.job_dict(job)
    if args.json:
        emit(data)
        return 0
    scalar = [k for k in data if k not in ("data", "result", "metadata", "error")]
    print(table(["field", "value"], [[k, data[k]] for k in scalar]))
    for name in ("data", "result", "metadata"):
        print(f"\n{'payload' if name == 'data' else name}:")
        print(json.dumps(data[name], indent=2, ensure_ascii=False, default=str))
    print("\nerror:")
    print(data["error"] if data["error"] is not None else "-")
    print("\ntimeline (UTC):")
    for name, at in admin.timeline(job):
        print(f"  {at:%Y-%m-%d %H:%M:%S.%f}"[:-3] + f"  {name}")
    return 0


async def cmd_retry(args: argparse.Namespace) -> int:
    if bool(args.id) == bool(args.all_failed):
        raise CommandError("give a job id or --all-failed, not both or neither")
    if args.type and not args.all_failed:
        raise CommandError("--type goes with --all-failed")
    async with connect(url_of(args)) as queue:
        if args.all_failed:
            count = await admin.retry_all_failed(queue, type=args.type)
            print(json.dumps({"retried": count}) if args.json else f"retried {count} failed jobs")
            return 0
        job = await _job_or_fail(queue, args.id)
        if job.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
            raise CommandError(f"job {args.id} is {job.status.value}; only failed or cancelled jobs are retried")
        job = await queue.retry(args.id)
    print(json.dumps({"id": job.id, "status": job.status.value}) if args.json else f"{job.id} {job.status.value}")
    return 0


async def cmd_cancel(args: argparse.Namespace) -> int:
    async with connect(url_of(args)) as queue:
        job = await _job_or_fail(queue, args.id)
        if not await queue.cancel(args.id):
            raise CommandError(f"job {args.id} is {job.status.value} and cannot be cancelled")
    print(json.dumps({"id": args.id, "status": "cancelled"}) if args.json else f"{args.id} cancelled")
    return 0


async def cmd_remove(args: argparse.Namespace) -> int:
    async with connect(url_of(args)) as queue:
        if not await queue.remove(args.id):
            raise CommandError(f"no job with id {args.id!r}")
    print(json.dumps({"id": args.id, "removed": True}) if args.json else f"{args.id} removed")
    return 0


def duration(text: str) -> float:
    """Seconds from ``90``, ``90s``, ``15m``, ``12h`` or ``7d``."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    text = text.strip().lower()
    scale = units.get(text[-1:])
    number = text[:-1] if scale else text
    try:
        value = float(number) * (scale or 1)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration (like 90, 15m, 12h, 7d)") from None
    if value < 0:
        raise argparse.ArgumentTypeError("a duration cannot be negative")
    return value


async def cmd_prune(args: argparse.Namespace) -> int:
    async with connect(url_of(args)) as queue:
        deleted = await queue.prune(statuses=args.status, older_than=args.older_than)
    if args.json:
        print(json.dumps({"deleted": deleted}))
    else:
        print(f"deleted {deleted} jobs")
    return 0


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _graceful_server_class() -> Any:
    import uvicorn

    class GracefulServer(uvicorn.Server):
        """Returns after a graceful stop on SIGTERM or SIGINT, so the command
        exits 0; uvicorn would raise the signal again once it has stopped."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                yield
                captured = getattr(self, "_captured_signals", None)
                if isinstance(captured, list):
                    captured.clear()

    return GracefulServer


async def cmd_dashboard(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from .web import BasicAuth, TokenAuth, auth_from_env, create_app
    except ImportError as exc:
        raise CommandError(f"the dashboard needs the web extra: pip install 'jobq[web]' ({exc})") from None
    auth: TokenAuth | BasicAuth | None = auth_from_env()
    if not is_loopback(args.host) and auth is None:
        raise CommandError(
            f"refusing to serve on {args.host} without authentication: set JOBQ_DASHBOARD_TOKEN"
            " (or JOBQ_DASHBOARD_USER and JOBQ_DASHBOARD_PASSWORD), or bind 127.0.0.1"
        )
    if args.no_auth:
        if not is_loopback(args.host):
            raise CommandError("--no-auth is allowed on a loopback address only")
        auth = None
    elif auth is None:
        auth = TokenAuth(secrets.token_urlsafe(24))
    async with connect(url_of(args)) as queue:
        await queue.counts()  # fails now, in one line, if the store is unreachable
        app = create_app(queue, auth=auth)
        host = f"[{args.host}]" if ":" in args.host else args.host
        where = f"http://{host}:{args.port}/"
        if isinstance(auth, TokenAuth):
            where += f"login?token={auth.token}"
        print(f"jobq dashboard for {queue.store.name}: {where}", flush=True)
        if isinstance(auth, BasicAuth):
            print(f"log in as {auth.username} (password from the environment)", flush=True)
        config = uvicorn.Config(
            app, host=args.host, port=args.port, log_level=args.log_level_uvicorn, access_log=False,
            lifespan="off", server_header=False,
        )  # fmt: skip
        server = _graceful_server_class()(config)
        await server.serve()
        if not server.started:
            raise CommandError(f"could not listen on {args.host}:{args.port}")
    return 0


def add_commands(command: Command) -> None:
    """Adds the operator commands through ``command(name, help)``, which
    makes a subcommand with ``--url``."""
    statuses = _statuses()

    listing = command("list", "list jobs, newest first, with filters and paging")
    listing.add_argument("--status", choices=statuses, help="only jobs in this status")
    listing.add_argument("--type", help="only jobs of this type")
    listing.add_argument("--queue", help="only jobs in this named queue")
    listing.add_argument("--limit", type=int, default=LIST_LIMIT, help=f"jobs per page (default {LIST_LIMIT})")
    listing.add_argument("--offset", type=int, default=0, help="jobs to skip (default 0)")
    listing.add_argument("--page", type=int, help="page number from 1 (instead of --offset)")
    listing.add_argument("--order", choices=["newest", "oldest"], default="newest", help="default newest")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(run=cmd_list)

    show = command("show", "every field of one job: payload, result, error, timestamps, attempts")
    show.add_argument("id", help="job id")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(run=cmd_show)

    retry = command("retry", "run a failed or cancelled job again (or every failed job)")
    retry.add_argument("id", nargs="?", help="job id")
    retry.add_argument("--all-failed", action="store_true", help="retry every failed job")
    retry.add_argument("--type", help="with --all-failed: only jobs of this type")
    retry.add_argument("--json", action="store_true", help="print JSON")
    retry.set_defaults(run=cmd_retry)

    cancel = command("cancel", "stop a waiting or running job for good")
    cancel.add_argument("id", help="job id")
    cancel.add_argument("--json", action="store_true", help="print JSON")
    cancel.set_defaults(run=cmd_cancel)

    remove = command("remove", "delete one job")
    remove.add_argument("id", help="job id")
    remove.add_argument("--json", action="store_true", help="print JSON")
    remove.set_defaults(run=cmd_remove)

    prune = command(
        "prune",
        "delete finished jobs: completed ones older than a day, failed and cancelled ones older than"
        " a week, unless --older-than or --status says otherwise",
    )
    prune.add_argument(
        "--status", action="append", choices=sorted(s.value for s in TERMINAL_STATUSES),
        help="only this finished status (repeatable; default: all three)",
    )  # fmt: skip
    prune.add_argument("--older-than", type=duration, help="only jobs finished before this long ago (90, 15m, 12h, 7d)")
    prune.add_argument("--json", action="store_true", help="print JSON")
    prune.set_defaults(run=cmd_prune)

    dashboard = command("dashboard", "serve the web dashboard (needs jobq[web])")
    dashboard.add_argument("--host", default=DASHBOARD_HOST, help=f"address to bind (default {DASHBOARD_HOST})")
    dashboard.add_argument("--port", type=int, default=DASHBOARD_PORT, help=f"port (default {DASHBOARD_PORT})")
    dashboard.add_argument(
        "--no-auth", action="store_true", help="serve without authentication (loopback addresses only)"
    )
    dashboard.add_argument("--log-level-uvicorn", default="warning", help=argparse.SUPPRESS)
    dashboard.set_defaults(run=cmd_dashboard)


__all__ = ["add_commands", "cmd_stats"]
