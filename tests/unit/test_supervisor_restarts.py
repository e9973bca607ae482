"""The supervisor's restart policy, on children that crash at once."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from jobq.processor.supervisor import Supervisor

CRASH = [sys.executable, "-c", "import sys; sys.exit(3)"]
RECYCLE = [sys.executable, "-c", "import sys; sys.exit(0)"]


def run_for(supervisor: Supervisor, seconds: float) -> int:
    outcome: list[int] = []
    thread = threading.Thread(target=lambda: outcome.append(supervisor.run(handle_signals=False)))
    thread.start()
    time.sleep(seconds)
    supervisor.stop()
    thread.join(30)
    assert not thread.is_alive()
    return outcome[0]


def test_a_crash_loop_backs_off() -> None:
    supervisor = Supervisor(CRASH, 1, backoff_min=0.2, backoff_max=5)
    run_for(supervisor, 1.0)
    # Restarts after 0.2, 0.4, 0.8 s: at most 4 starts in a second, not dozens.
    assert 2 <= supervisor.started <= 4


def test_a_child_exiting_zero_is_replaced_at_once() -> None:
    supervisor = Supervisor(RECYCLE, 1, backoff_min=5, backoff_max=5)
    assert run_for(supervisor, 1.0) == 0
    assert supervisor.started >= 3  # no backoff for a recycled child


def test_processes_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Supervisor(CRASH, 0)
