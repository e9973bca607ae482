"""Times to the stores' epoch milliseconds: "now" floored, as k-msg's
``Date.now()`` floors it; spans (delays, leases) rounded."""

from __future__ import annotations

import jobq
from jobq.clock import now_ms, to_ms


def test_now_is_floored_to_the_millisecond() -> None:
    assert now_ms(jobq.FakeClock(1_700_000_000.0009)) == 1_700_000_000_000
    assert now_ms(jobq.FakeClock(1_700_000_000.9999)) == 1_700_000_000_999
    assert now_ms(jobq.FakeClock(1_700_000_001.0)) == 1_700_000_001_000


def test_fake_clock_steps_land_on_the_millisecond_they_name() -> None:
    clock = jobq.FakeClock(1_700_000_000.0)
    for n in range(1, 2_000):
        clock.advance(0.001)
        assert now_ms(clock) == 1_700_000_000_000 + n


def test_set_lands_on_the_time_given() -> None:
    clock = jobq.FakeClock(1_700_000_000.0)
    clock.set(1_700_000_000.9995)
    assert clock.now() == 1_700_000_000.9995 and now_ms(clock) == 1_700_000_000_999
    clock.set(1_600_000_000.0)  # behind: stays put
    assert clock.now() == 1_700_000_000.9995


def test_spans_are_rounded() -> None:
    assert to_ms(1.9996) == 2000
    assert to_ms(30) == 30_000
