"""The supervisor's restart policy, on children that crash at once."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from jobq.processor.supervisor import Supervisor

CRASH = [sys.executable, "-c", "import sys; sys.exit(3)"]
RECYCLE = [sys.executable, "-c", "import sys; sys.exit(0)"]


DEADLINE = 60.0  # seconds; generous: a slow machine only makes the starts come later


def start_times(supervisor: Supervisor, starts: int) -> tuple[list[float], int]:
    """Runs ``supervisor`` until it has started ``starts`` children; returns
    when each start was first seen (monotonic seconds) and run()'s result."""
    outcome: list[int] = []
    thread = threading.Thread(target=lambda: outcome.append(supervisor.run(handle_signals=False)))
    seen: list[float] = []
    thread.start()
    try:
        deadline = time.monotonic() + DEADLINE
        while len(seen) < starts:
            assert time.monotonic() < deadline, f"only {supervisor.started} starts in {DEADLINE:g} s"
            while len(seen) < min(supervisor.started, starts):
                seen.append(time.monotonic())
            time.sleep(0.005)
    finally:
        supervisor.stop()
        thread.join(30)
    assert not thread.is_alive()
    return seen, outcome[0]


def test_a_crash_loop_backs_off() -> None:
    supervisor = Supervisor(CRASH, 1, backoff_min=0.2, backoff_max=5)
    seen, _ = start_times(supervisor, 3)
    # Restarts wait 0.2 s, then 0.4 s, however fast the children crash
    # (a lower bound on time: a slow machine cannot break it).
    assert seen[2] - seen[0] >= 0.2 + 0.4 - 0.01


def test_a_child_exiting_zero_is_replaced_at_once() -> None:
    supervisor = Supervisor(RECYCLE, 1, backoff_min=30, backoff_max=30)
    seen, code = start_times(supervisor, 3)
    assert code == 0
    assert seen[2] - seen[0] < 30  # no 30 s backoff for a recycled child


def test_processes_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Supervisor(CRASH, 0)
