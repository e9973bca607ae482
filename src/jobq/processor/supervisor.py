"""Many worker processes under one supervisor (``jobq worker --processes N``).

The supervisor starts N children, each a plain ``jobq worker`` process, and:

- restarts a child that dies, after a pause that doubles while children keep
  dying young (so a crash loop does not spin), and at once when a child
  exits 0 on its own (recycled after ``--max-jobs-per-child`` jobs);
- stops every child and exits 1 when one cannot start at all (its
  processor cannot be built: status :data:`EXIT_CANNOT_START`);
- on SIGTERM or SIGINT forwards the signal to every child, which stops
  gracefully (jobs in flight finish, or are released after its
  ``shutdown_timeout``), and exits once they all have: 0 if every child
  exited 0, else 1. A second signal is forwarded too, so each child
  releases its running jobs and exits at once.

Children run in their own session, so a Ctrl-C in a terminal reaches only the
supervisor, which forwards it once. A child watches its supervisor and stops
gracefully if the supervisor disappears (killed with SIGKILL).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("jobq")

RESTART_BACKOFF_MIN = 0.5  # seconds before restarting a child that died young
RESTART_BACKOFF_MAX = 10.0  # seconds; the longest pause between restarts of one slot
HEALTHY_AFTER = 10.0  # seconds a child must live for its slot's backoff to reset
SUPERVISE_INTERVAL = 0.05  # seconds between checks on the children
PARENT_CHECK_INTERVAL = 0.5  # seconds between a child's checks that its supervisor lives
#: The exit status of a child that cannot start: its processor cannot be
#: built (the module does not import, the factory raised). Restarting it
#: would fail the same way, so the supervisor stops every child and exits 1
#: (EX_CONFIG of sysexits.h).
EXIT_CANNOT_START = 78


@dataclass
class _Slot:
    index: int
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    backoff: float = 0.0
    restart_at: float = 0.0
    pids: list[int] = field(default_factory=list)


class Supervisor:
    """Keeps ``processes`` copies of ``command`` running until stopped.

    ``command`` is the argv of one child; ``--supervisor-pid <pid>`` is added
    so the child stops if the supervisor dies.
    """

    def __init__(
        self,
        command: Sequence[str],
        processes: int,
        *,
        backoff_min: float = RESTART_BACKOFF_MIN,
        backoff_max: float = RESTART_BACKOFF_MAX,
        env: dict[str, str] | None = None,
        on_stopping: Callable[[], Any] | None = None,
    ) -> None:
        if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
            raise ValueError(f"processes must be an int >= 1, not {processes!r}")
        self.command = list(command)
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.env = env
        self.slots = [_Slot(i) for i in range(processes)]
        self.on_stopping = on_stopping  # called once, when the stop begins
        self._stop_signal: int | None = None
        self._stops = 0  # stop requests so far
        self._forwarded = 0  # of which forwarded to the children
        self._lock = threading.Lock()

    @property
    def started(self) -> int:
        """How many children were started so far."""
        return sum(len(slot.pids) for slot in self.slots)

    def pids(self) -> list[int]:
        """The pids of the children running now."""
        return [s.process.pid for s in self.slots if s.process is not None and s.process.poll() is None]

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Asks every child to stop (as a forwarded ``sig``); :meth:`run`
        returns once they have. Safe from a signal handler or another thread.
        A second call forwards ``sig`` again: the children stop at once."""
        self._stop_signal = sig
        self._stops += 1

    def _spawn(self, slot: _Slot) -> None:
        argv = [*self.command, "--supervisor-pid", str(os.getpid())]
        slot.process = subprocess.Popen(argv, env=self.env, start_new_session=True, stdin=subprocess.DEVNULL)
        slot.started_at = time.monotonic()
        slot.pids.append(slot.process.pid)
        log.info("supervisor started worker %d (pid %d)", slot.index, slot.process.pid)

    def _reap(self, slot: _Slot, now: float) -> None:
        assert slot.process is not None
        code = slot.process.returncode
        lived = now - slot.started_at
        slot.process = None
        if code == 0:
            slot.backoff, slot.restart_at = 0.0, now  # recycled: replace it at once
            log.info("worker %d exited after %.1f s; starting a new one", slot.index, lived)
            return
        if lived >= HEALTHY_AFTER:
            slot.backoff = self.backoff_min
        else:
            slot.backoff = min(self.backoff_max, max(self.backoff_min, slot.backoff * 2))
        slot.restart_at = now + slot.backoff
        log.warning(
            "worker %d died (exit %s) after %.1f s; restarting it in %.1f s",
            slot.index,
            code,
            lived,
            slot.backoff,
        )

    def _forward(self, sig: int) -> None:
        for slot in self.slots:
            if slot.process is not None and slot.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):  # exited meanwhile
                    slot.process.send_signal(sig)

    def run(self, *, handle_signals: bool = True) -> int:
        """Runs until SIGTERM/SIGINT (or :meth:`stop`); returns the exit status."""
        previous: dict[signal.Signals, Any] = {}
        if handle_signals:
            for signum in (signal.SIGTERM, signal.SIGINT):
                previous[signum] = signal.signal(signum, lambda number, _frame: self.stop(number))
        failed = False
        try:
            for slot in self.slots:
                self._spawn(slot)
            while True:
                now = time.monotonic()
                stopping = self._stop_signal is not None
                if stopping and self._forwarded < min(self._stops, 2):
                    if not self._forwarded:
                        log.info("supervisor stopping %d workers", len(self.pids()))
                        if self.on_stopping is not None:
                            self.on_stopping()
                    self._forwarded += 1
                    assert self._stop_signal is not None
                    self._forward(self._stop_signal)
                for slot in self.slots:
                    if slot.process is not None and slot.process.poll() is not None:
                        if stopping:
                            # A child signalled before it set up its handlers had claimed nothing.
                            code = slot.process.returncode
                            failed = failed or code not in (0, -(self._stop_signal or 0))
                            slot.process = None
                        elif slot.process.returncode == EXIT_CANNOT_START:
                            log.error(
                                "worker %d cannot start (its processor cannot be built);"
                                " stopping every worker", slot.index,
                            )  # fmt: skip
                            slot.process = None
                            failed = stopping = True
                            self.stop()
                        else:
                            self._reap(slot, now)
                    if not stopping and slot.process is None and now >= slot.restart_at:
                        self._spawn(slot)
                if stopping and all(slot.process is None for slot in self.slots):
                    return 1 if failed else 0
                time.sleep(SUPERVISE_INTERVAL)
        finally:
            for slot in self.slots:  # only if run() itself failed: leave no child behind
                if slot.process is not None and slot.process.poll() is None:
                    slot.process.kill()
                    slot.process.wait()
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def watch_supervisor(pid: int, on_lost: Callable[[], None]) -> threading.Thread:
    """In a child: calls ``on_lost`` once if the supervisor ``pid`` goes away
    (the child is re-parented)."""

    def watch() -> None:
        while os.getppid() == pid:
            time.sleep(PARENT_CHECK_INTERVAL)
        log.warning("supervisor %d is gone; stopping this worker", pid)
        on_lost()

    thread = threading.Thread(target=watch, name="jobq-supervisor-watch", daemon=True)
    thread.start()
    return thread


def recycle_after(processor: Any, max_jobs: int, on_limit: Callable[[], None]) -> None:
    """Calls ``on_limit`` once when ``processor`` has started ``max_jobs``
    jobs, or reported as many outcomes (a job with no handler fails without
    starting): the stop it makes lets those running finish. Starts are
    counted because an outcome is reported once its write is synced, by
    which time the claim loop may have taken more jobs."""
    seen = {"started": 0, "finished": 0}

    def counter(kind: str) -> Callable[[Any], None]:
        def count(_event: Any) -> None:
            seen[kind] += 1
            if seen[kind] == max_jobs and seen["started" if kind == "finished" else "finished"] < max_jobs:
                on_limit()  # the first of the two counts to get there

        return count

    processor.on("job_started", counter("started"))
    for name in ("job_completed", "job_failed", "job_retry", "job_snoozed", "job_cancelled"):
        processor.on(name, counter("finished"))
