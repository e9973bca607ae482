"""The rate limit and the circuit breaker state machine."""

from __future__ import annotations

import pytest

import jobq
from jobq.processor.limits import Circuit


def test_rate_limit_sliding_window() -> None:
    limit = jobq.RateLimit(max_requests=3, window_seconds=10)
    assert limit.available(100) == 3
    assert limit.wait_time(100) == 0
    limit.record(100, 2)
    assert limit.available(101) == 1
    limit.record(105)
    assert limit.available(105) == 0
    assert limit.wait_time(105) == pytest.approx(5)
    assert limit.available(109.9) == 0
    assert limit.available(110) == 2  # the two starts at 100 left the window
    assert limit.wait_time(110) == 0
    assert limit.available(115) == 3


def test_rate_limit_window_is_sliding_not_fixed() -> None:
    limit = jobq.RateLimit(max_requests=2, window_seconds=10)
    limit.record(9)
    limit.record(11)
    assert limit.available(12) == 0  # a fixed window starting at 10 would allow one
    assert limit.wait_time(12) == pytest.approx(7)
    assert limit.available(19) == 1


@pytest.mark.parametrize(
    "args",
    [(0, 1), (-1, 1), (1.5, 1), (True, 1), (1, 0), (1, -5), (1, float("nan")), (1, float("inf")), ("2", 1)],
)
def test_rate_limit_validation(args: tuple[object, object]) -> None:
    with pytest.raises(jobq.InvalidOption):
        jobq.RateLimit(*args)  # type: ignore[arg-type]


def test_circuit_breaker_defaults_and_validation() -> None:
    breaker = jobq.CircuitBreaker()
    assert (breaker.failure_threshold, breaker.timeout, breaker.reset_timeout) == (5, 30.0, 60.0)
    for options in ({"failure_threshold": 0}, {"failure_threshold": 1.5}, {"timeout": 0}, {"reset_timeout": -1}):
        with pytest.raises(jobq.InvalidOption):
            jobq.CircuitBreaker(**options)  # type: ignore[arg-type]


def test_circuit_opens_after_threshold_failures_in_a_row() -> None:
    circuit = Circuit(jobq.CircuitBreaker(failure_threshold=3, reset_timeout=60))
    assert circuit.state is jobq.CircuitState.CLOSED
    assert circuit.allows_claim(0) and circuit.start()
    circuit.failure(1)
    circuit.failure(2)
    assert circuit.state is jobq.CircuitState.CLOSED and circuit.allows_claim(2)
    circuit.success()  # a success resets the count
    circuit.failure(3)
    circuit.failure(4)
    assert circuit.state is jobq.CircuitState.CLOSED
    circuit.failure(5)
    assert circuit.state is jobq.CircuitState.OPEN
    assert not circuit.allows_claim(5)
    assert not circuit.start()
    assert not circuit.allows_claim(64.9)


def test_circuit_half_opens_and_lets_one_trial_through() -> None:
    circuit = Circuit(jobq.CircuitBreaker(failure_threshold=1, reset_timeout=60))
    circuit.failure(100)
    assert circuit.state is jobq.CircuitState.OPEN
    assert not circuit.allows_claim(159)
    assert circuit.allows_claim(160)
    assert circuit.state is jobq.CircuitState.HALF_OPEN
    assert circuit.start() is True
    assert circuit.start() is False  # only one trial at a time
    assert not circuit.allows_claim(161)
    circuit.success()
    assert circuit.state is jobq.CircuitState.CLOSED
    assert circuit.failures == 0
    assert circuit.allows_claim(161) and circuit.start() and circuit.start()


def test_failed_trial_reopens_the_circuit() -> None:
    circuit = Circuit(jobq.CircuitBreaker(failure_threshold=5, reset_timeout=10))
    for t in range(5):
        circuit.failure(t)
    assert circuit.state is jobq.CircuitState.OPEN
    assert circuit.allows_claim(14)
    assert circuit.start()
    circuit.failure(15)  # one failure in half-open is enough
    assert circuit.state is jobq.CircuitState.OPEN
    assert circuit.opened_at == 15
    assert not circuit.allows_claim(24)
    assert circuit.allows_claim(25)
