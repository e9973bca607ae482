"""The ``jobq`` command (also ``python -m jobq``).

Every command takes ``--url`` (default ``$JOBQ_URL``, else
``sqlite:///jobq.db``), ``--log-level`` and ``--log-format`` (``text`` lines
or ``json`` objects, one per line: :mod:`jobq.logs`), before or after the command's
name. Errors print one line, ``jobq: error: ...``, and exit with status 1;
usage errors (an unknown command or option, with a "did you mean") print one
line too and exit with 2. Never a traceback: an error jobq did not foresee
is printed in one line too (``--log-level DEBUG`` logs its traceback).

The parser is argparse's, with three additions rather than a dependency:
usage errors raised (and printed in one line), a suggestion for a mistyped
command, option or choice (:mod:`difflib`), and the global options accepted
after the command as well (a parent parser whose defaults do not overwrite
the values given before it).

This module holds the command line's grammar and :func:`main`; the commands
live in :mod:`~jobq.cli.worker` (worker, demo), :mod:`~jobq.cli.jobs`
(enqueue, stats, migrate, list, show, workers, retry, cancel, remove, prune, clear),
:mod:`~jobq.cli.queues` (pause, resume) and :mod:`~jobq.cli.dashboard`, and what they share in :mod:`~jobq.cli.common`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from .. import __version__
from ..admin import LIST_LIMIT, THROUGHPUT_WINDOW
from ..admin.views import BREAKDOWN_LIMIT
from ..demo import DEMO_CONCURRENCY, DEMO_JOBS
from ..errors import JobqError
from ..job import DEFAULT_MAX_ATTEMPTS, DEFAULT_QUEUE, TERMINAL_STATUSES
from ..logs import LOG_FORMATS
from ..logs import configure as configure_logging
from . import dashboard, jobs, queues, worker
from .common import (
    URL_ENV,
    Command,
    UsageError,
    add_confirm_options,
    duration,
    error_line,
    status_names,
    suggestion,
)

LOG_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
LOG_LEVEL_ENV = "JOBQ_LOG_LEVEL"
DEFAULT_LOG_LEVEL = "INFO"
LOG_FORMAT_ENV = "JOBQ_LOG_FORMAT"


class Parser(argparse.ArgumentParser):
    """argparse's parser, raising :class:`UsageError` (one line, exit 2)
    instead of printing the usage, and suggesting the closest choice."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self._where()}{message.removeprefix('argument ')} (see {self.prog} --help)")

    def _where(self) -> str:
        """``"jobq enqueue: "`` in a command's message; nothing at the top."""
        return "" if " " not in self.prog else f"{self.prog}: "

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        if action.choices is None or value in action.choices:
            return
        names = [str(choice) for choice in action.choices]
        if isinstance(action, argparse._SubParsersAction):
            raise UsageError(f"unknown command {value!r}{suggestion(str(value), names)} (see jobq --help)")
        option = "/".join(action.option_strings) or action.dest
        raise UsageError(
            f"{self._where()}{option} takes one of {', '.join(names)}; not {value!r}{suggestion(str(value), names)}"
        )


def _global_options() -> Parser:
    """The options every command takes, before or after its name. Their
    defaults are SUPPRESS, so a command's parser leaves a value given before
    the command alone; :func:`main` fills in the real defaults."""
    common = Parser(add_help=False)
    common.add_argument(
        "--url", default=argparse.SUPPRESS,
        help=f"queue URL (default ${URL_ENV}, else {worker.DEFAULT_URL})",
    )  # fmt: skip
    common.add_argument(
        "--log-level", type=str.upper, choices=LOG_LEVELS, default=argparse.SUPPRESS, metavar="LEVEL",
        help=f"logging level: {', '.join(LOG_LEVELS)} (default ${LOG_LEVEL_ENV}, else {DEFAULT_LOG_LEVEL})",
    )  # fmt: skip
    common.add_argument(
        "--log-format", choices=LOG_FORMATS, default=argparse.SUPPRESS,
        help=f"log lines as text or as JSON objects, one per line (default ${LOG_FORMAT_ENV}, else text)",
    )  # fmt: skip
    common.add_argument("--version", action="version", version=f"jobq {__version__}")
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _global_options()
    parser = Parser(prog="jobq", description="Background jobs on SQLite (and more).", parents=[common])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help, description=help, parents=[common])

    run = command("worker", "run an app's tasks (or a processor) until SIGTERM or Ctrl-C")
    worker.add_worker_options(run)
    run.set_defaults(run=worker.cmd_worker, abandon_threads=True)

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
    enqueue.add_argument(
        "--delay", type=duration, default=0, metavar="DURATION",
        help="how long before it may run: seconds, or 90s, 10m, 1h30m, 7d (default 0)",
    )  # fmt: skip
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
    stats.add_argument(
        "--all", action="store_true",
        help=f"count finished jobs per queue and type too beyond {BREAKDOWN_LIMIT:,} jobs (reads every job)",
    )  # fmt: skip
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
    queues.add_queue_commands(command)
    return parser


def _add_operator_commands(command: Command) -> None:
    """list, show, retry, cancel, remove, prune, clear and dashboard."""
    listing = command("list", "list jobs, newest first, with filters and paging")
    listing.add_argument("--status", choices=status_names(), help="only jobs in this status")
    listing.add_argument("--type", help="only jobs of this type")
    listing.add_argument("--queue", help="only jobs in this named queue")
    listing.add_argument("--limit", type=int, default=LIST_LIMIT, help=f"jobs per page (default {LIST_LIMIT})")
    listing.add_argument("--offset", type=int, default=0, help="jobs to skip (default 0)")
    listing.add_argument("--page", type=int, help="page number from 1 (instead of --offset)")
    listing.add_argument(
        "--after", metavar="CURSOR",
        help="the page after the one whose next cursor this is (printed under each page; same filters and order)",
    )  # fmt: skip
    listing.add_argument("--order", choices=["newest", "oldest"], default="newest", help="default newest")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(run=jobs.cmd_list)

    show = command("show", "every field of one job: payload, result, error, timestamps, attempts")
    show.add_argument("id", help="job id")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(run=jobs.cmd_show)

    workers = command("workers", "the worker processes registered, one line each (dead ones marked)")
    workers.add_argument("--json", action="store_true", help="print JSON")
    workers.set_defaults(run=jobs.cmd_workers)

    retry = command("retry", "run a failed or cancelled job again (or every failed job)")
    retry.add_argument("id", nargs="?", help="job id")
    retry.add_argument("--all-failed", action="store_true", help="retry every failed job")
    retry.add_argument("--type", help="with --all-failed: only jobs of this type")
    retry.add_argument("--json", action="store_true", help="print JSON")
    add_confirm_options(retry)
    retry.set_defaults(run=jobs.cmd_retry)

    cancel = command("cancel", "stop a waiting or running job for good")
    cancel.add_argument("id", help="job id")
    cancel.add_argument("--json", action="store_true", help="print JSON")
    cancel.set_defaults(run=jobs.cmd_cancel)

    remove = command("remove", "delete one job")
    remove.add_argument("id", help="job id")
    remove.add_argument("--json", action="store_true", help="print JSON")
    add_confirm_options(remove)
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
        "--older-than", type=duration, metavar="DURATION",
        help="only jobs finished before this long ago: seconds, or 90s, 15m, 12h, 7d",
    )  # fmt: skip
    prune.add_argument("--json", action="store_true", help="print JSON")
    add_confirm_options(prune)
    prune.set_defaults(run=jobs.cmd_prune)

    clear = command("clear", "delete every job, whatever its status")
    clear.add_argument("--json", action="store_true", help="print JSON")
    add_confirm_options(clear)
    clear.set_defaults(run=jobs.cmd_clear)

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
    serve.add_argument(
        "--secret-file", metavar="PATH",
        help="file holding the secret that signs sessions (and derives the printed token), created if missing;"
        " with it, logins survive a restart (default $JOBQ_DASHBOARD_SECRET_FILE; $JOBQ_DASHBOARD_SECRET wins)",
    )  # fmt: skip
    serve.add_argument("--log-level-uvicorn", default="warning", help=argparse.SUPPRESS)
    serve.set_defaults(run=dashboard.cmd_dashboard)


def _parse(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line parsed, the global options' defaults filled in; an
    unknown option or a stray argument is a :class:`UsageError` naming the
    closest option of the command."""
    args, extras = parser.parse_known_args(argv)
    if extras:
        sub = _command_parsers(parser).get(args.command, parser)
        known = [o for action in sub._actions for o in action.option_strings if o.startswith("--")]
        word = extras[0]
        if word.startswith("-"):
            name = word.split("=", 1)[0]
            raise UsageError(f"{sub.prog}: unknown option {name}{suggestion(name, known)} (see {sub.prog} --help)")
        raise UsageError(f"{sub.prog}: unexpected argument {word!r} (see {sub.prog} --help)")
    args.url = getattr(args, "url", None)
    chosen = getattr(args, "log_level", None) or os.environ.get(LOG_LEVEL_ENV)
    args.log_level_chosen = bool(chosen)
    level = chosen or DEFAULT_LOG_LEVEL
    if level.upper() not in LOG_LEVELS:
        raise UsageError(f"${LOG_LEVEL_ENV}={level!r}: the logging level is one of {', '.join(LOG_LEVELS)}")
    args.log_level = level.upper()
    log_format = getattr(args, "log_format", None) or os.environ.get(LOG_FORMAT_ENV) or LOG_FORMATS[0]
    if log_format not in LOG_FORMATS:
        raise UsageError(f"${LOG_FORMAT_ENV}={log_format!r}: the log format is one of {', '.join(LOG_FORMATS)}")
    args.log_format = log_format
    if args.command == "worker":
        worker.options_from_environment(args)
    return args


def _command_parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parse(build_parser(), argv)
    except UsageError as exc:
        print(error_line(exc), file=sys.stderr)
        return exc.exit_status
    configure_logging(args.log_level, args.log_format)
    status = _run(args)
    if getattr(args, "abandon_threads", False):
        worker.exit_leaving_threads(status)
    return status


def _run(args: argparse.Namespace) -> int:
    try:
        status: int = asyncio.run(args.run(args))
        return status
    except KeyboardInterrupt:
        return 130
    except (JobqError, OSError) as exc:
        print(error_line(exc), file=sys.stderr)
        return int(getattr(exc, "exit_status", 1))
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback (it is logged at DEBUG)
        logging.getLogger("jobq").debug("unexpected error", exc_info=exc)
        print(error_line(f"unexpected {type(exc).__name__}: {exc} (--log-level DEBUG shows where)"), file=sys.stderr)
        return 1


__all__ = ["build_parser", "main"]
