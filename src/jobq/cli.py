"""The ``jobq`` command (also ``python -m jobq``).

Every command takes ``--url`` (default ``$JOBQ_URL``, else
``sqlite:///jobq.db``). Errors print one line, ``jobq: error: ...``, and exit
with status 1; usage errors exit with 2. Never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import inspect
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from . import cli_admin
from .backends import DEFAULT_URL, connect
from .errors import BackendMissing, InvalidOption, JobqError
from .processor.worker import JobProcessor

URL_ENV = "JOBQ_URL"


class CommandError(JobqError):
    """The command cannot run as given."""


def _url(args: argparse.Namespace) -> str:
    return args.url or os.environ.get(URL_ENV) or DEFAULT_URL


def _json_arg(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CommandError(f"{what} is not valid JSON: {exc}") from None


def load_target(spec: str) -> Any:
    """Imports ``module:attribute`` (``module.attribute`` also works)."""
    module_name, sep, attr = spec.partition(":")
    if not sep:
        module_name, _, attr = spec.rpartition(".")
    if not module_name or not attr:
        raise CommandError(f"{spec!r} is not MODULE:PROCESSOR (for example myapp.jobs:processor)")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CommandError(f"cannot import {module_name!r}: {exc}") from None
    target: Any = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise CommandError(f"module {module_name!r} has no attribute {attr!r}") from None
    return target


async def _processor_for(target: Any, args: argparse.Namespace) -> JobProcessor:
    """A JobProcessor from what ``MODULE:PROCESSOR`` names: a processor, or a
    function (plain or async) that takes a queue and returns one."""
    if isinstance(target, JobProcessor):
        processor = target
        if args.url or os.environ.get(URL_ENV):
            processor.bind(await connect(_url(args)))
    elif callable(target):
        queue = await connect(_url(args))
        processor = target(queue)
        if inspect.isawaitable(processor):
            processor = await processor
        if not isinstance(processor, JobProcessor):
            raise CommandError(f"{args.target} returned {type(processor).__name__}, not a jobq.JobProcessor")
    else:
        raise CommandError(
            f"{args.target} is a {type(target).__name__}; expected a jobq.JobProcessor"
            " or a function taking a queue and returning one"
        )
    if args.concurrency is not None:
        if args.concurrency < 1:
            raise InvalidOption(f"--concurrency must be at least 1, not {args.concurrency}")
        processor.concurrency = args.concurrency
        processor.batch_size = args.concurrency
    return processor


def _child_command(args: argparse.Namespace) -> list[str]:
    """The argv of one supervised worker process: this command without
    ``--processes``."""
    command = [sys.executable, "-m", "jobq", "--log-level", str(args.log_level), "worker", args.target]
    if args.url:
        command += ["--url", args.url]
    if args.concurrency is not None:
        command += ["--concurrency", str(args.concurrency)]
    if args.max_jobs_per_child is not None:
        command += ["--max-jobs-per-child", str(args.max_jobs_per_child)]
    return command


async def cmd_worker(args: argparse.Namespace) -> int:
    from .processor import supervisor

    for flag, value in (("--processes", args.processes), ("--max-jobs-per-child", args.max_jobs_per_child)):
        if value is not None and value < 1:
            raise InvalidOption(f"{flag} must be at least 1, not {value}")
    log = logging.getLogger("jobq")
    if args.processes is not None and args.metrics_port is not None:
        raise InvalidOption("--metrics-port serves one worker process; it cannot be combined with --processes")
    if args.processes is not None:
        load_target(args.target)  # fail here, once, rather than in a crash loop of children
        log.info("supervisor %d running %d worker processes", os.getpid(), args.processes)
        # Blocking is fine: this event loop has nothing else to do.
        return supervisor.Supervisor(_child_command(args), args.processes).run()
    processor = await _processor_for(load_target(args.target), args)
    loop = asyncio.get_running_loop()

    def stop_self() -> None:  # the same graceful path as SIGTERM
        loop.call_soon_threadsafe(os.kill, os.getpid(), signal.SIGTERM)

    if args.max_jobs_per_child is not None:
        supervisor.recycle_after(processor, args.max_jobs_per_child, stop_self)
    if args.supervisor_pid is not None:
        supervisor.watch_supervisor(args.supervisor_pid, stop_self)
    metrics_server = None
    if args.metrics_port is not None:
        try:
            from .metrics import serve_worker_metrics
        except ImportError:
            raise BackendMissing("--metrics-port needs prometheus-client: pip install 'jobq[web]'") from None
        metrics_server = serve_worker_metrics(processor, args.metrics_port, args.metrics_host)
        log.info("metrics on http://%s:%d/metrics", args.metrics_host, args.metrics_port)
    log.info(
        "worker %s on %r, concurrency %d", processor.worker_id, processor.queue, processor.concurrency
    )
    try:
        await processor.run()
    finally:
        if metrics_server is not None:
            metrics_server.shutdown()
        await processor.queue.close()
    return 0


async def cmd_enqueue(args: argparse.Namespace) -> int:
    data = _json_arg(args.data, "the payload")
    metadata = _json_arg(args.metadata, "--metadata") if args.metadata else None
    async with connect(_url(args)) as queue:
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


async def cmd_migrate(args: argparse.Namespace) -> int:
    """Creates or upgrades the job table's schema and says which version it
    found and reached. Opening a queue migrates under a lock (SQLite's write
    lock, a PostgreSQL advisory lock), so several ``jobq migrate`` (and
    workers) may run at once: one migrates, the others find it done."""
    from .backends import open_queue
    from .store.sqlite import schema as sqlite_schema

    url = args.url_arg or _url(args)
    queue = await asyncio.to_thread(open_queue, url)
    try:
        store = queue.store
        found = getattr(store, "schema_found", None)
        if found is None:
            print(f"{store.name}: nothing to migrate (no schema)")
            return 0
        reached = getattr(store, "schema_version", sqlite_schema.LATEST_VERSION)
        table = getattr(store, "table", "?")
        where = getattr(store, "where", None) or getattr(store, "path", "")
    finally:
        await queue.close()
    if args.json:
        print(json.dumps({"backend": store.name, "table": table, "found": found, "reached": reached}))
    elif found == reached:
        print(f"{store.name} {where} table {table}: schema version {found}, up to date")
    else:
        print(f"{store.name} {where} table {table}: schema version {found} -> {reached}")
    return 0


async def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return await run_demo(
        _url(args), jobs=args.jobs, concurrency=args.concurrency, seed=args.seed, quiet=args.quiet
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jobq", description="Background jobs on SQLite (and more).")
    parser.add_argument("--log-level", default="INFO", help="logging level (default INFO)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        sub.add_argument("--url", help=f"queue URL (default ${URL_ENV}, else {DEFAULT_URL})")
        return sub

    worker = command("worker", "run a processor until SIGTERM or Ctrl-C")
    worker.add_argument("target", help="MODULE:PROCESSOR, a JobProcessor or a function(queue) returning one")
    worker.add_argument("--concurrency", type=int, help="jobs run at once (default: the processor's)")
    worker.add_argument(
        "--processes", type=int, metavar="N", help="run N worker processes under a supervisor that restarts them"
    )
    worker.add_argument(
        "--max-jobs-per-child",
        type=int,
        metavar="M",
        help="exit gracefully after M jobs (under --processes, a new process replaces it)",
    )
    worker.add_argument(
        "--metrics-port", type=int, metavar="PORT", help="serve Prometheus metrics of this worker on PORT"
    )
    worker.add_argument("--metrics-host", default="127.0.0.1", help="address for --metrics-port (127.0.0.1)")
    worker.add_argument("--supervisor-pid", type=int, help=argparse.SUPPRESS)
    worker.set_defaults(run=cmd_worker)

    enqueue = command("enqueue", "add one job and print its id")
    enqueue.add_argument("type", help="job type (picks the handler)")
    enqueue.add_argument("data", nargs="?", default="null", help="payload as JSON (default null)")
    enqueue.add_argument("--priority", type=int, default=0, help="higher runs first (default 0)")
    enqueue.add_argument("--delay", type=float, default=0, help="seconds before it may run (default 0)")
    enqueue.add_argument("--max-attempts", type=int, default=3, help="attempts before it fails for good")
    enqueue.add_argument("--metadata", help="metadata as a JSON object")
    enqueue.add_argument("--queue", default="default", help="named queue (default 'default')")
    enqueue.add_argument("--json", action="store_true", help="print JSON")
    enqueue.set_defaults(run=cmd_enqueue)

    stats = command("stats", "job counts per status, queue and type; recent throughput")
    stats.add_argument("--minutes", type=int, default=cli_admin.STATS_MINUTES, help="throughput window (default 15)")
    stats.add_argument("--json", action="store_true", help="print JSON")
    stats.set_defaults(run=cli_admin.cmd_stats)

    migrate = command("migrate", "create or upgrade the job table's schema (idempotent; safe to run at once)")
    migrate.add_argument("url_arg", nargs="?", metavar="URL", help="queue URL (or --url)")
    migrate.add_argument("--json", action="store_true", help="print JSON")
    migrate.set_defaults(run=cmd_migrate)

    demo = command("demo", "send a few thousand fake messages through a worker, with live progress")
    demo.add_argument("--jobs", type=int, default=3000, help="messages to queue (default 3000)")
    demo.add_argument("--concurrency", type=int, default=32, help="jobs run at once (default 32)")
    demo.add_argument("--seed", type=int, default=None, help="random seed, for a repeatable run")
    demo.add_argument("--quiet", action="store_true", help="no progress bar, summary only")
    demo.set_defaults(run=cmd_demo)

    # list, show, retry, cancel, remove, prune, dashboard
    cli_admin.add_commands(command)
    return parser


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
        # One line, even when a driver's message spans several.
        print("jobq: error: " + " ".join(str(exc).split()), file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
