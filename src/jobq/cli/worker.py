"""``jobq worker`` and ``jobq demo``: the commands that run a processor.

``worker`` runs the application's app or processor, named ``MODULE:NAME``,
until SIGTERM or Ctrl-C; with ``--processes`` it supervises that many worker
processes instead. ``demo`` runs a fake messaging workload.

A worker always exits within its grace period (``--shutdown-timeout``,
default :data:`WORKER_SHUTDOWN_TIMEOUT`): jobs still running when it ends
are released to run again elsewhere at once, and the process exits without
waiting for the threads of synchronous handlers it abandoned. A second
SIGTERM or SIGINT releases the running jobs and exits at once. Under systemd
(``$NOTIFY_SOCKET`` set) it reports ``READY=1`` once it claims jobs and
``STOPPING=1`` when it begins to stop. Every option can come from a
``JOBQ_*`` environment variable (:data:`WORKER_ENV`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from types import FrameType
from typing import Any

from ..backends import DEFAULT_URL, connect
from ..codec import check_delay
from ..demo import run_demo
from ..errors import BackendMissing, InvalidOption, StoreUnavailable
from ..job import Job
from ..processor.processor import JobProcessor
from ..processor.supervisor import EXIT_CANNOT_START
from ..tasks import App, Task
from .common import (
    URL_ENV,
    CommandError,
    UsageError,
    duration,
    load_target,
    raised,
    say_seconds,
    url_given,
    url_of,
)
from .dashboard import check_port

log = logging.getLogger("jobq")

__all__ = ["DEFAULT_URL", "WORKER_ENV", "WORKER_SHUTDOWN_TIMEOUT", "cmd_demo", "cmd_worker"]

START_RETRY_MIN = 0.5  # seconds before a worker that could not reach its store at start tries again
START_RETRY_MAX = 30.0  # seconds between its tries, at most
#: Seconds ``jobq worker`` lets jobs in flight finish after SIGTERM, unless
#: ``--shutdown-timeout`` or the processor says otherwise: with
#: :data:`STOP_MARGIN`, within the 10 s that ``docker stop`` (and Kubernetes'
#: default 30 s) allow before SIGKILL. A processor whose application set a
#: ``shutdown_timeout`` keeps it.
WORKER_SHUTDOWN_TIMEOUT = 8.0
#: Seconds past its grace that a stopping worker gives the release of its
#: jobs and its store's closing before it exits anyway (a store that does
#: not answer); the jobs then run again once their leases expire.
STOP_MARGIN = 1.5
#: Seconds a second signal gives the release of the running jobs before the
#: worker exits anyway.
FORCED_STOP_WAIT = 1.0
IDLE_THREADS_WAIT = 0.1  # seconds the threads left at exit get to end before the worker leaves them
METRICS_HOST = "127.0.0.1"

#: The environment variable of each worker option: a value on the command
#: line wins over the environment (and ``$JOBQ_URL`` serves every command).
WORKER_ENV = {
    "target": "JOBQ_APP",
    "url": URL_ENV,
    "concurrency": "JOBQ_CONCURRENCY",
    "queues": "JOBQ_QUEUES",
    "shutdown_timeout": "JOBQ_SHUTDOWN_TIMEOUT",
    "processes": "JOBQ_PROCESSES",
    "max_jobs_per_child": "JOBQ_MAX_JOBS_PER_CHILD",
    "metrics_port": "JOBQ_METRICS_PORT",
    "metrics_host": "JOBQ_METRICS_HOST",
}


class CannotStart(CommandError):
    """The worker's processor cannot be built: a supervisor does not restart it."""

    exit_status = EXIT_CANNOT_START


def queue_list(text: str) -> list[str]:
    """``--queues sms,default``: the named queues, in order."""
    names = [name.strip() for name in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of queue names")
    return names


def add_worker_options(run: argparse.ArgumentParser) -> None:
    """The options of ``jobq worker``, each with its environment variable."""

    def env(dest: str) -> str:
        return f" [${WORKER_ENV[dest]}]"

    run.add_argument(
        "target", nargs="?", metavar="MODULE:NAME",
        help="a jobq.App, a JobProcessor, or a function taking a queue and returning one" + env("target"),
    )  # fmt: skip
    run.add_argument("--concurrency", type=int, help="jobs run at once (default: the processor's)" + env("concurrency"))
    run.add_argument(
        "--queues", type=queue_list, metavar="Q1,Q2",
        help="take jobs from these named queues only" + env("queues"),
    )  # fmt: skip
    run.add_argument(
        "--shutdown-timeout", type=duration, metavar="DURATION",
        help="after SIGTERM, how long jobs in flight may finish before they are released to run"
        f" elsewhere (default {WORKER_SHUTDOWN_TIMEOUT:g} s, or the processor's own when it sets one)"
        + env("shutdown_timeout"),
    )  # fmt: skip
    run.add_argument(
        "--processes", type=int, metavar="N",
        help="run N worker processes under a supervisor that restarts them" + env("processes"),
    )  # fmt: skip
    run.add_argument(
        "--max-jobs-per-child", type=int, metavar="M",
        help="exit gracefully once M jobs have started (under --processes, a new process replaces it)"
        + env("max_jobs_per_child"),
    )  # fmt: skip
    run.add_argument(
        "--metrics-port", type=int, metavar="PORT",
        help="serve Prometheus metrics of this worker (with --processes, of all its workers) on PORT"
        + env("metrics_port"),
    )  # fmt: skip
    run.add_argument(
        "--metrics-host", metavar="HOST",
        help=f"address for --metrics-port (default {METRICS_HOST})" + env("metrics_host"),
    )  # fmt: skip
    run.add_argument("--supervisor-pid", type=int, help=argparse.SUPPRESS)
    # A supervised worker whose supervisor serves --metrics-port for all:
    # it counts into the files of $PROMETHEUS_MULTIPROC_DIR.
    run.add_argument("--metrics-shared", action="store_true", help=argparse.SUPPRESS)


def options_from_environment(args: argparse.Namespace) -> None:
    """Fills the worker options not given on the command line from their
    ``JOBQ_*`` variables, converted as the option would be; a value that
    does not convert is a :class:`UsageError` naming the variable."""
    converters: dict[str, Any] = {
        "concurrency": int, "queues": queue_list, "shutdown_timeout": duration, "processes": int,
        "max_jobs_per_child": int, "metrics_port": int,
    }  # fmt: skip
    for dest, variable in WORKER_ENV.items():
        raw = os.environ.get(variable)
        if getattr(args, dest, None) is not None or raw is None or dest == "url":
            continue  # $JOBQ_URL is read where the queue is opened, as for every command
        convert = converters.get(dest, str)
        try:
            setattr(args, dest, convert(raw))
        except (ValueError, argparse.ArgumentTypeError) as exc:
            raise UsageError(f"${variable}={raw!r}: {exc}") from None
    if args.target is None:
        raise UsageError(
            f"jobq worker: name what to run, MODULE:NAME (for example myapp.tasks:app), or set ${WORKER_ENV['target']}"
        )
    if args.metrics_host is None:
        args.metrics_host = METRICS_HOST


# -- what MODULE:NAME names ------------------------------------------------------------


def _takes_a_job(fn: Any) -> bool:
    """Whether ``fn`` looks like a job handler: its first parameter is
    called ``job`` or annotated as a :class:`jobq.Job`."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    if not params:
        return False
    first = params[0]
    note = first.annotation
    if isinstance(note, str):
        return first.name == "job" or note.split("[")[0].rsplit(".", 1)[-1] == "Job"
    return first.name == "job" or note is Job or getattr(note, "__origin__", None) is Job


def _wrong_kind(spec: str, target: Any) -> str | None:
    """Why ``target`` cannot be run by a worker, when that is clear before
    calling it; ``None`` for an app, a processor or a possible factory."""
    expected = "name a jobq.App, a jobq.JobProcessor, or a function taking a queue and returning one"
    if isinstance(target, App | JobProcessor):
        return None
    if isinstance(target, Task):
        return f"{spec} is the task {target.name!r} of an app; name the app itself (MODULE:APP), which runs all its tasks"
    if inspect.ismodule(target):
        return f"{spec} is a module; {expected}"
    if isinstance(target, type):
        if issubclass(target, JobProcessor):
            return None  # a subclass that registers its handlers may be built from a queue
        return f"{spec} is the class {target.__name__}; {expected}"
    if callable(target) and _takes_a_job(target):
        return (
            f"{spec} is a job handler (it takes a job), not a worker; register it on a JobProcessor"
            f" (processor.handle(TYPE, fn)) or declare it with @app.task, and name that"
        )
    if not callable(target):
        return f"{spec} is a {type(target).__name__}; {expected}"
    return None


def _check_runnable(spec: str, processor: JobProcessor, made: bool) -> None:
    """A processor with neither handlers nor cron schedules has nothing to run."""
    if processor.job_types or processor.cron_schedules:
        return
    what = f"{spec} made a JobProcessor" if made else f"{spec} is a JobProcessor"
    raise CommandError(
        f"{what} with no handlers: nothing to run; register them with processor.handle(TYPE, fn)"
        " or @processor.handler(TYPE) before it is returned"
    )


async def _processor_for(target: Any, args: argparse.Namespace) -> JobProcessor:
    """A JobProcessor from what the target names: an app (its tasks, on
    ``--url`` or the app's own URL), a processor, or a function (plain or
    async) that takes a queue and returns one."""
    spec = args.target
    wrong = _wrong_kind(spec, target)
    if wrong is not None:
        raise CommandError(wrong)
    if isinstance(target, App):
        if not target.tasks:
            raise CommandError(
                f"{spec} is a jobq.App with no tasks: nothing to run (does importing {spec.partition(':')[0]}"
                " import the modules that declare its @app.task functions?)"
            )
        processor = target.processor(await connect(url_of(args) if url_given(args) else target.url))
    elif isinstance(target, JobProcessor):
        _check_runnable(spec, target, made=False)
        processor = target
        if url_given(args):
            processor.bind(await connect(url_of(args)))
    else:
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
            raise CommandError(
                raised(spec, exc) + " (jobq worker called it with a queue, to get a JobProcessor)"
            ) from None
        if not isinstance(processor, JobProcessor):
            await queue.close()
            raise CommandError(
                f"{spec} returned {type(processor).__name__}, not a jobq.JobProcessor"
                " (jobq worker calls a function it is given with a queue, to get one)"
            )
        try:
            _check_runnable(spec, processor, made=True)
        except CommandError:
            await queue.close()
            raise
    _apply_options(processor, args)
    return processor


def _apply_options(processor: JobProcessor, args: argparse.Namespace) -> None:
    if args.queues is not None:
        processor.queues = args.queues
    if args.concurrency is not None:
        if args.concurrency < 1:
            raise InvalidOption(f"--concurrency must be at least 1, not {args.concurrency}")
        processor.concurrency = args.concurrency
        processor.batch_size = args.concurrency
    if args.shutdown_timeout is not None:
        processor.shutdown_timeout = check_delay(args.shutdown_timeout, "--shutdown-timeout", InvalidOption)
    elif processor.config.shutdown_timeout is None:
        # The application chose none: the worker's own, which fits docker stop.
        processor.shutdown_timeout = WORKER_SHUTDOWN_TIMEOUT


def _child_command(args: argparse.Namespace) -> list[str]:
    """The argv of one supervised worker process: this command without
    ``--processes``."""
    command = [sys.executable, "-m", "jobq", "--log-level", str(args.log_level)]
    command += ["--log-format", str(getattr(args, "log_format", "text")), "worker", args.target]
    if args.url:
        command += ["--url", args.url]
    if args.concurrency is not None:
        command += ["--concurrency", str(args.concurrency)]
    if args.queues is not None:
        command += ["--queues", ",".join(args.queues)]
    if args.shutdown_timeout is not None:
        command += ["--shutdown-timeout", repr(args.shutdown_timeout)]
    if args.max_jobs_per_child is not None:
        command += ["--max-jobs-per-child", str(args.max_jobs_per_child)]
    return command


def _child_env() -> dict[str, str]:
    """The children's environment: this one, less what the command line
    already says for them, and less ``$NOTIFY_SOCKET`` (the supervisor
    speaks to systemd for all of them)."""
    skip = {"NOTIFY_SOCKET", *(v for k, v in WORKER_ENV.items() if k != "url")}
    return {k: v for k, v in os.environ.items() if k not in skip}


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
            log.warning("worker cannot reach its store (%s); trying again in %.1f s", exc, pause)
        except CommandError as exc:
            if args.supervisor_pid is not None:
                raise CannotStart(str(exc)) from None
            raise
        await asyncio.sleep(pause)
        pause = min(pause * 2, START_RETRY_MAX)


# -- systemd and signals --------------------------------------------------------------


def sd_notify(state: str) -> bool:
    """Sends ``state`` (``"READY=1"``, ``"STOPPING=1"``, ...) to systemd's
    notification socket, ``$NOTIFY_SOCKET`` (a path, or ``@name`` in the
    abstract namespace); False when there is none or it cannot be reached.
    The protocol of sd_notify(3): one datagram on a Unix socket."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address or not hasattr(socket, "AF_UNIX"):
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as exc:
        log.debug("cannot notify systemd at %s: %s", address, exc)
        return False
    return True


def _exit_now(status: int, message: str) -> None:
    """Leaves the process at once, from any thread: ``message`` on stderr
    (unbuffered, so a write in progress elsewhere cannot block it)."""
    with contextlib.suppress(OSError):
        os.write(2, f"jobq: error: {message}\n".encode())
    os._exit(status)


class _Signals:
    """The worker's SIGTERM and SIGINT handlers. The first asks the
    processor to stop gracefully and arms a deadline (grace plus
    :data:`STOP_MARGIN`); a second asks it to stop now, releasing the jobs
    still running, and arms a shorter one. A deadline that passes exits the
    process whatever it is doing."""

    def __init__(self, processor: JobProcessor, loop: asyncio.AbstractEventLoop) -> None:
        self.processor = processor
        self.loop = loop
        self.count = 0
        self.forced_by: int | None = None
        self.previous: dict[int, Any] = {}

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.previous[sig] = signal.signal(sig, self.on_signal)

    def restore(self) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Runs in the main thread between two bytecodes: nothing here may
        # write to a buffered stream (logging is done on the loop).
        self.count += 1
        name = signal.Signals(signum).name
        grace = self.processor.shutdown_timeout
        if self.count == 1:
            sd_notify("STOPPING=1")
            self.processor.request_stop()  # claims nothing more, from now
            # Again from the loop: a signal that came before run() set up its
            # stop is not lost.
            self.loop.call_soon_threadsafe(self.processor.request_stop)
            self._deadline(grace + STOP_MARGIN, 1, f"the worker did not stop within {grace + STOP_MARGIN:g} s")
            self.loop.call_soon_threadsafe(
                log.info, "%s: stopping; jobs in flight have %s to finish (a second signal stops at once)",
                name, say_seconds(grace),
            )  # fmt: skip
        elif self.forced_by is None:
            self.forced_by = signum
            self.processor.request_stop(now=True)
            self.loop.call_soon_threadsafe(lambda: self.processor.request_stop(now=True))
            self._deadline(FORCED_STOP_WAIT, 128 + signum, f"second {name}: the running jobs could not be released")
            self.loop.call_soon_threadsafe(
                log.warning, "second %s: releasing the jobs still running and exiting", name
            )

    @staticmethod
    def _deadline(seconds: float, status: int, message: str) -> None:
        if not seconds <= threading.TIMEOUT_MAX:  # no deadline for a grace without end (or NaN)
            return
        timer = threading.Timer(
            seconds, _exit_now, (status, message + "; exiting (its jobs run again when their leases expire)")
        )
        timer.daemon = True
        timer.start()


def exit_leaving_threads(status: int) -> None:
    """Exits with ``status`` at once if threads are still running (those of
    synchronous handlers abandoned when the worker stopped: their jobs were
    released), rather than let Python wait for them at exit; else returns."""
    deadline = time.monotonic() + IDLE_THREADS_WAIT
    lingering = []
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join(max(0.0, deadline - time.monotonic()))  # an idle pool thread ends at once
            if thread.is_alive():
                lingering.append(thread)
    if not lingering:
        return
    log.warning(
        "leaving %d handler thread(s) still running; their jobs were released to run again", len(lingering)
    )
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)


async def cmd_worker(args: argparse.Namespace) -> int:
    from ..processor import supervisor

    for flag, value in (("--processes", args.processes), ("--max-jobs-per-child", args.max_jobs_per_child)):
        if value is not None and value < 1:
            raise InvalidOption(f"{flag} must be at least 1, not {value}")
    check_port(args.metrics_port, "--metrics-port")
    if args.processes is not None:
        try:
            load_target(args.target)  # fail here, once, rather than in a crash loop of children
        except StoreUnavailable as exc:
            log.warning("%s; the workers will wait for the store", exc)
        return _supervise(args)
    processor = await _build(args)
    loop = asyncio.get_running_loop()

    def stop_self() -> None:  # the same graceful path as SIGTERM
        loop.call_soon_threadsafe(os.kill, os.getpid(), signal.SIGTERM)

    if args.max_jobs_per_child is not None:
        supervisor.recycle_after(processor, args.max_jobs_per_child, stop_self)
    if args.supervisor_pid is not None:
        supervisor.watch_supervisor(args.supervisor_pid, stop_self)
    metrics_server = None
    if args.metrics_shared:
        from ..metrics import count_into_shared_files

        count_into_shared_files(processor)
    elif args.metrics_port is not None:
        try:
            from ..metrics import serve_worker_metrics
        except ImportError:
            raise BackendMissing("--metrics-port needs prometheus-client: pip install 'jobq[web]'") from None
        metrics_server = serve_worker_metrics(processor, args.metrics_port, args.metrics_host)
        log.info("metrics on http://%s:%d/metrics", args.metrics_host, args.metrics_port)
    queues = ",".join(processor.queues) if processor.queues else "all"
    processor.on(
        "processor_started",
        lambda _event: sd_notify(f"READY=1\nSTATUS=worker {processor.worker_id}: claiming jobs from queues {queues}"),
    )
    signals = _Signals(processor, loop)
    signals.install()
    try:
        await processor.run(handle_signals=False)
    finally:
        signals.restore()
        if metrics_server is not None:
            metrics_server.shutdown()
        await processor.queue.close()
    return 0 if signals.forced_by is None else 128 + signals.forced_by


def _supervise(args: argparse.Namespace) -> int:
    """Runs ``--processes`` workers under a supervisor until it stops. With
    ``--metrics-port``, the supervisor serves one endpoint for all of them:
    they count into a temporary ``PROMETHEUS_MULTIPROC_DIR`` it creates,
    and removes at the end."""
    from ..processor import supervisor

    command, env = _child_command(args), _child_env()
    metrics_dir = server = None
    if args.metrics_port is not None:
        try:
            from ..metrics import serve_supervisor_metrics
        except ImportError:
            raise BackendMissing("--metrics-port needs prometheus-client: pip install 'jobq[web]'") from None
        metrics_dir = tempfile.mkdtemp(prefix="jobq-metrics-")
        try:
            server = serve_supervisor_metrics(metrics_dir, args.metrics_port, args.metrics_host)
        except BaseException:
            shutil.rmtree(metrics_dir, ignore_errors=True)
            raise
        env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        command.append("--metrics-shared")
        log.info("metrics of all workers on http://%s:%d/metrics", args.metrics_host, args.metrics_port)
    try:
        log.info("supervisor %d running %d worker processes", os.getpid(), args.processes)
        sup = supervisor.Supervisor(command, args.processes, env=env, on_stopping=lambda: sd_notify("STOPPING=1"))
        sd_notify(f"READY=1\nSTATUS=supervising {args.processes} worker processes")
        # Blocking is fine: this event loop has nothing else to do.
        return sup.run()
    finally:
        if server is not None:
            server.shutdown()
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


async def cmd_demo(args: argparse.Namespace) -> int:
    if not getattr(args, "log_level_chosen", False):
        # The demo's failures are deliberate and its summary counts them: a
        # line per retry and a traceback per final failure would bury the
        # progress bar. `jobq --log-level INFO demo` shows them.
        logging.getLogger("jobq.job").setLevel(logging.CRITICAL)
    for flag, value in (("--jobs", args.jobs), ("--concurrency", args.concurrency)):
        if value < 1:
            raise InvalidOption(f"{flag} must be at least 1, not {value}")
    return await run_demo(
        url_of(args), jobs=args.jobs, concurrency=args.concurrency, seed=args.seed, quiet=args.quiet
    )
