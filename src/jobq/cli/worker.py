"""``jobq worker`` and ``jobq demo``: the commands that run a processor.

``worker`` runs the application's processor, named ``MODULE:PROCESSOR``,
until SIGTERM or Ctrl-C; with ``--processes`` it supervises that many worker
processes instead. ``demo`` runs a fake messaging workload.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import logging
import os
import signal
import sys
from typing import Any

from ..backends import connect
from ..demo import run_demo
from ..errors import BackendMissing, InvalidOption, StoreUnavailable
from ..processor.processor import JobProcessor
from ..processor.supervisor import EXIT_CANNOT_START
from ..tasks import App
from .common import CommandError, load_target, raised, url_given, url_of
from .dashboard import check_port

log = logging.getLogger("jobq")


START_RETRY_MIN = 0.5  # seconds before a worker that could not reach its store at start tries again
START_RETRY_MAX = 30.0  # seconds between its tries, at most


class CannotStart(CommandError):
    """The worker's processor cannot be built: a supervisor does not restart it."""

    exit_status = EXIT_CANNOT_START


def queue_list(text: str) -> list[str]:
    """``--queues sms,default``: the named queues, in order."""
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of queue names")
    return names


async def _processor_for(target: Any, args: argparse.Namespace) -> JobProcessor:
    """A JobProcessor from what the target names: an app (its tasks, on
    ``--url`` or the app's own URL), a processor, or a function (plain or
    async) that takes a queue and returns one."""
    if isinstance(target, App):
        processor = target.processor(await connect(url_of(args) if url_given(args) else target.url))
    elif isinstance(target, JobProcessor):
        processor = target
        if url_given(args):
            processor.bind(await connect(url_of(args)))
    elif callable(target):
        queue = await connect(url_of(args))
        try:
            processor = target(queue)
            if inspect.isawaitable(processor):
                processor = await processor
        except StoreUnavailable:
            await queue.close()
            raise
        except Exception as exc:  # noqa: BLE001 - the application's code: reported in one line
            await queue.close()
            raise CommandError(raised(args.target, exc)) from None
        if not isinstance(processor, JobProcessor):
            await queue.close()
            raise CommandError(f"{args.target} returned {type(processor).__name__}, not a jobq.JobProcessor")
    else:
        raise CommandError(
            f"{args.target} is a {type(target).__name__}; expected a jobq.App, a jobq.JobProcessor"
            " or a function taking a queue and returning one"
        )
    if args.queues is not None:
        processor.queues = args.queues
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
    if args.queues is not None:
        command += ["--queues", ",".join(args.queues)]
    if args.max_jobs_per_child is not None:
        command += ["--max-jobs-per-child", str(args.max_jobs_per_child)]
    return command


async def _build(args: argparse.Namespace) -> JobProcessor:
    """The worker's processor. While its store cannot be reached (a database
    server down or restarting), it tries again with a doubling pause, saying
    so, as a running worker rides out an outage; Ctrl-C or SIGTERM ends the
    wait. Under a supervisor, a target that cannot be built is a
    :class:`CannotStart`."""
    pause = START_RETRY_MIN
    while True:
        try:
            return await _processor_for(load_target(args.target), args)
        except StoreUnavailable as exc:
            log.warning("jobq: worker cannot reach its store (%s); trying again in %.1f s", exc, pause)
        except CommandError as exc:
            if args.supervisor_pid is not None:
                raise CannotStart(str(exc)) from None
            raise
        await asyncio.sleep(pause)
        pause = min(pause * 2, START_RETRY_MAX)


async def cmd_worker(args: argparse.Namespace) -> int:
    from ..processor import supervisor

    for flag, value in (("--processes", args.processes), ("--max-jobs-per-child", args.max_jobs_per_child)):
        if value is not None and value < 1:
            raise InvalidOption(f"{flag} must be at least 1, not {value}")
    check_port(args.metrics_port, "--metrics-port")
    if args.processes is not None and args.metrics_port is not None:
        raise InvalidOption("--metrics-port serves one worker process; it cannot be combined with --processes")
    if args.processes is not None:
        try:
            load_target(args.target)  # fail here, once, rather than in a crash loop of children
        except StoreUnavailable as exc:
            log.warning("jobq: %s; the workers will wait for the store", exc)
        log.info("supervisor %d running %d worker processes", os.getpid(), args.processes)
        # Blocking is fine: this event loop has nothing else to do.
        return supervisor.Supervisor(_child_command(args), args.processes).run()
    processor = await _build(args)
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
            from ..metrics import serve_worker_metrics
        except ImportError:
            raise BackendMissing("--metrics-port needs prometheus-client: pip install 'jobq[web]'") from None
        metrics_server = serve_worker_metrics(processor, args.metrics_port, args.metrics_host)
        log.info("metrics on http://%s:%d/metrics", args.metrics_host, args.metrics_port)
    log.info(
        "worker %s on %r, concurrency %d, queues %s",
        processor.worker_id, processor.queue, processor.concurrency,
        ",".join(processor.queues) if processor.queues else "all",
    )  # fmt: skip
    try:
        await processor.run()
    finally:
        if metrics_server is not None:
            metrics_server.shutdown()
        await processor.queue.close()
    return 0


async def cmd_demo(args: argparse.Namespace) -> int:
    return await run_demo(
        url_of(args), jobs=args.jobs, concurrency=args.concurrency, seed=args.seed, quiet=args.quiet
    )
