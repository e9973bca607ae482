"""The ``jobq`` command (also ``python -m jobq``).

Every command takes ``--url`` (default ``$JOBQ_URL``, else
``sqlite:///jobq.db``). Errors print one line, ``jobq: error: ...``, and exit
with status 1; usage errors exit with 2. Never a traceback: an error jobq
did not foresee is printed in one line too (``--log-level DEBUG`` logs its
traceback).

This module holds the command line's grammar and :func:`main`; the commands
live in :mod:`~jobq.cli.worker` (worker, demo), :mod:`~jobq.cli.jobs`
(enqueue, stats, migrate, list, show, retry, cancel, remove, prune) and
:mod:`~jobq.cli.dashboard`, and what they share in :mod:`~jobq.cli.common`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from ..admin import LIST_LIMIT, THROUGHPUT_WINDOW
from ..demo import DEMO_CONCURRENCY, DEMO_JOBS
from ..errors import JobqError
from ..job import DEFAULT_MAX_ATTEMPTS, DEFAULT_QUEUE, TERMINAL_STATUSES
from . import dashboard, jobs, worker
from .common import Command, add_url_option, error_line, status_names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jobq", description="Background jobs on SQLite (and more).")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        add_url_option(sub)
        return sub

    run = command("worker", "run an app's tasks (or a processor) until SIGTERM or Ctrl-C")
    run.add_argument(
        "target",
        help="MODULE:APP (a jobq.App), or MODULE:PROCESSOR (a JobProcessor or a function(queue) returning one)",
    )
    run.add_argument("--concurrency", type=int, help="jobs run at once (default: the processor's)")
    run.add_argument(
        "--queues", type=worker.queue_list, metavar="Q1,Q2", help="take jobs from these named queues only"
    )
    run.add_argument(
        "--processes", type=int, metavar="N", help="run N worker processes under a supervisor that restarts them"
    )
    run.add_argument(
        "--max-jobs-per-child",
        type=int,
        metavar="M",
        help="exit gracefully after M jobs (under --processes, a new process replaces it)",
    )
    run.add_argument(
        "--metrics-port", type=int, metavar="PORT", help="serve Prometheus metrics of this worker on PORT"
    )
    run.add_argument("--metrics-host", default="127.0.0.1", help="address for --metrics-port (127.0.0.1)")
    run.add_argument("--supervisor-pid", type=int, help=argparse.SUPPRESS)
    run.set_defaults(run=worker.cmd_worker)

    enqueue = command("enqueue", "add one job (or defer one task of an app) and print its id")
    enqueue.add_argument("type", help="job type (picks the handler), or with --app a task's name")
    enqueue.add_argument(
        "data", nargs="?", default=None, help="payload as JSON (default null); with --app, the arguments as a JSON object"
    )
    enqueue.add_argument("--app", metavar="MODULE:APP", help="defer a task of this jobq.App, checked against its signature")
    enqueue.add_argument(
        "--arg", action="append", default=[], metavar="NAME=VALUE",
        help="with --app: one argument (VALUE as JSON, or as text where it is not JSON or the parameter is a str)",
    )  # fmt: skip
    enqueue.add_argument("--priority", type=int, help="higher runs first (default 0, or the task's)")
    enqueue.add_argument("--delay", type=float, default=0, help="seconds before it may run (default 0)")
    enqueue.add_argument(
        "--max-attempts", type=int, help=f"attempts before it fails for good (default {DEFAULT_MAX_ATTEMPTS}, or the task's)"
    )
    enqueue.add_argument("--metadata", help="metadata as a JSON object")
    enqueue.add_argument("--queue", help=f"named queue (default {DEFAULT_QUEUE!r}, or the task's)")
    enqueue.add_argument("--json", action="store_true", help="print JSON")
    enqueue.set_defaults(run=jobs.cmd_enqueue)

    stats = command("stats", "job counts per status, queue and type; recent throughput")
    stats.add_argument(
        "--minutes", type=int, default=THROUGHPUT_WINDOW, help=f"throughput window (default {THROUGHPUT_WINDOW})"
    )
    stats.add_argument("--json", action="store_true", help="print JSON")
    stats.set_defaults(run=jobs.cmd_stats)

    migrate = command("migrate", "create or upgrade the job table's schema (idempotent; safe to run at once)")
    migrate.add_argument("url_arg", nargs="?", metavar="URL", help="queue URL (or --url)")
    migrate.add_argument("--json", action="store_true", help="print JSON")
    migrate.set_defaults(run=jobs.cmd_migrate)

    demo = command("demo", "send a few thousand fake messages through a worker, with live progress")
    demo.add_argument("--jobs", type=int, default=DEMO_JOBS, help=f"messages to queue (default {DEMO_JOBS})")
    demo.add_argument(
        "--concurrency", type=int, default=DEMO_CONCURRENCY, help=f"jobs run at once (default {DEMO_CONCURRENCY})"
    )
    demo.add_argument("--seed", type=int, default=None, help="random seed, for a repeatable run")
    demo.add_argument("--quiet", action="store_true", help="no progress bar, summary only")
    demo.set_defaults(run=worker.cmd_demo)

    _add_operator_commands(command)
    return parser


def _add_operator_commands(command: Command) -> None:
    """list, show, retry, cancel, remove, prune and dashboard."""
    listing = command("list", "list jobs, newest first, with filters and paging")
    listing.add_argument("--status", choices=status_names(), help="only jobs in this status")
    listing.add_argument("--type", help="only jobs of this type")
    listing.add_argument("--queue", help="only jobs in this named queue")
    listing.add_argument("--limit", type=int, default=LIST_LIMIT, help=f"jobs per page (default {LIST_LIMIT})")
    listing.add_argument("--offset", type=int, default=0, help="jobs to skip (default 0)")
    listing.add_argument("--page", type=int, help="page number from 1 (instead of --offset)")
    listing.add_argument("--order", choices=["newest", "oldest"], default="newest", help="default newest")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(run=jobs.cmd_list)

    show = command("show", "every field of one job: payload, result, error, timestamps, attempts")
    show.add_argument("id", help="job id")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(run=jobs.cmd_show)

    retry = command("retry", "run a failed or cancelled job again (or every failed job)")
    retry.add_argument("id", nargs="?", help="job id")
    retry.add_argument("--all-failed", action="store_true", help="retry every failed job")
    retry.add_argument("--type", help="with --all-failed: only jobs of this type")
    retry.add_argument("--json", action="store_true", help="print JSON")
    retry.set_defaults(run=jobs.cmd_retry)

    cancel = command("cancel", "stop a waiting or running job for good")
    cancel.add_argument("id", help="job id")
    cancel.add_argument("--json", action="store_true", help="print JSON")
    cancel.set_defaults(run=jobs.cmd_cancel)

    remove = command("remove", "delete one job")
    remove.add_argument("id", help="job id")
    remove.add_argument("--json", action="store_true", help="print JSON")
    remove.set_defaults(run=jobs.cmd_remove)

    prune = command(
        "prune",
        "delete finished jobs: completed ones older than a day, failed and cancelled ones older than"
        " a week, unless --older-than or --status says otherwise",
    )
    prune.add_argument(
        "--status", action="append", choices=sorted(s.value for s in TERMINAL_STATUSES),
        help="only this finished status (repeatable; default: all three)",
    )  # fmt: skip
    prune.add_argument(
        "--older-than", type=jobs.duration, help="only jobs finished before this long ago (90, 15m, 12h, 7d)"
    )
    prune.add_argument("--json", action="store_true", help="print JSON")
    prune.set_defaults(run=jobs.cmd_prune)

    serve = command("dashboard", "serve the web dashboard (needs jobq[web])")
    serve.add_argument(
        "--host", default=dashboard.DASHBOARD_HOST, help=f"address to bind (default {dashboard.DASHBOARD_HOST})"
    )
    serve.add_argument(
        "--port", type=int, default=dashboard.DASHBOARD_PORT, help=f"port (default {dashboard.DASHBOARD_PORT})"
    )
    serve.add_argument(
        "--no-auth", action="store_true", help="serve without authentication (loopback addresses only)"
    )
    serve.add_argument(
        "--allowed-host", action="append", metavar="HOST",
        help="a host name the dashboard answers to besides loopback ones (repeatable; for a proxy or a"
        " DNS name in front of it)",
    )  # fmt: skip
    serve.add_argument("--log-level-uvicorn", default="warning", help=argparse.SUPPRESS)
    serve.set_defaults(run=dashboard.cmd_dashboard)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        status: int = asyncio.run(args.run(args))
        return status
    except KeyboardInterrupt:
        return 130
    except (JobqError, OSError) as exc:
        print(error_line(exc), file=sys.stderr)
        return int(getattr(exc, "exit_status", 1))
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback (it is logged at DEBUG)
        logging.getLogger("jobq").debug("jobq: unexpected error", exc_info=exc)
        print(error_line(f"unexpected {type(exc).__name__}: {exc} (--log-level DEBUG shows where)"), file=sys.stderr)
        return 1


__all__ = ["build_parser", "main"]
