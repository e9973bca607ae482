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
import sys
from collections.abc import Sequence
from typing import Any

from .backends import DEFAULT_URL, connect
from .errors import InvalidOption, JobqError
from .job import JobStatus
from .processor.worker import JobProcessor
from .queue import Queue

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


async def cmd_worker(args: argparse.Namespace) -> int:
    processor = await _processor_for(load_target(args.target), args)
    log = logging.getLogger("jobq")
    log.info(
        "worker %s on %r, concurrency %d", processor.worker_id, processor.queue, processor.concurrency
    )
    try:
        await processor.run()
    finally:
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


async def cmd_stats(args: argparse.Namespace) -> int:
    async with connect(_url(args)) as queue:
        counts = await queue.counts()
        ready = await queue.size()
    if args.json:
        print(json.dumps({"counts": {s.value: n for s, n in counts.items()}, "ready": ready}))
        return 0
    rows = [(status.value, str(counts[status])) for status in JobStatus]
    rows.append(("total", str(sum(counts.values()))))
    width = max(len(name) for name, _ in rows)
    number = max(len(n) for _, n in rows)
    print(f"{'status':<{width}}  {'jobs':>{number}}")
    for name, n in rows:
        print(f"{name:<{width}}  {n:>{number}}")
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

    stats = command("stats", "job counts per status")
    stats.add_argument("--json", action="store_true", help="print JSON")
    stats.set_defaults(run=cmd_stats)

    demo = command("demo", "send a few thousand fake messages through a worker, with live progress")
    demo.add_argument("--jobs", type=int, default=3000, help="messages to queue (default 3000)")
    demo.add_argument("--concurrency", type=int, default=32, help="jobs run at once (default 32)")
    demo.add_argument("--seed", type=int, default=None, help="random seed, for a repeatable run")
    demo.add_argument("--quiet", action="store_true", help="no progress bar, summary only")
    demo.set_defaults(run=cmd_demo)
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
        print(f"jobq: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
