"""Retry policies."""

from __future__ import annotations

import random

import pytest

import jobq
from jobq.retry import RETRY_DELAYS


def test_fixed_delays_default_is_k_msgs() -> None:
    policy = jobq.FixedDelays()
    assert RETRY_DELAYS == (1, 5, 15, 60)
    assert [policy.delay(n) for n in range(6)] == [1, 5, 15, 60, 60, 60]


def test_fixed_delays_index_is_clamped() -> None:
    policy = jobq.FixedDelays([2, 4])
    assert policy.delay(-3) == 2
    assert policy.delay(0) == 2
    assert policy.delay(1) == 4
    assert policy.delay(100) == 4
    assert isinstance(policy, jobq.RetryPolicy)


@pytest.mark.parametrize("delays", [[], [-1], [1, float("nan")], [float("inf")], ["5"], [True]])
def test_fixed_delays_validation(delays: list[object]) -> None:
    with pytest.raises(jobq.InvalidOption):
        jobq.FixedDelays(delays)  # type: ignore[arg-type]


def test_exponential_without_jitter() -> None:
    policy = jobq.ExponentialBackoff(base=1, factor=2, max_delay=100, jitter=0)
    assert [policy.delay(n) for n in range(9)] == [1, 2, 4, 8, 16, 32, 64, 100, 100]
    assert policy.delay(-1) == 1
    assert isinstance(policy, jobq.RetryPolicy)


def test_exponential_cap_holds_for_any_attempt_count() -> None:
    policy = jobq.ExponentialBackoff(base=1, factor=2, max_delay=3600, jitter=0)
    assert policy.delay(10_000) == 3600
    steep = jobq.ExponentialBackoff(base=1, factor=1e6, max_delay=60, jitter=0)
    assert steep.delay(100) == 60


@pytest.mark.parametrize("jitter", [1.0, 0.5, 0.1])
def test_exponential_jitter_bounds(jitter: float) -> None:
    policy = jobq.ExponentialBackoff(base=2, factor=3, max_delay=1000, jitter=jitter, rng=random.Random(7))
    for attempts in range(10):
        ceiling = min(1000, 2 * 3**attempts)
        delays = [policy.delay(attempts) for _ in range(200)]
        assert all((1 - jitter) * ceiling <= d <= ceiling for d in delays)
        assert len(set(delays)) > 1  # actually spread


def test_exponential_jitter_is_reproducible_with_a_seeded_rng() -> None:
    a = jobq.ExponentialBackoff(rng=random.Random(1))
    b = jobq.ExponentialBackoff(rng=random.Random(1))
    assert [a.delay(n) for n in range(8)] == [b.delay(n) for n in range(8)]


@pytest.mark.parametrize(
    "options",
    [{"base": -1}, {"factor": 0.5}, {"max_delay": -1}, {"jitter": -0.1}, {"jitter": 1.5}],
)
def test_exponential_validation(options: dict[str, float]) -> None:
    with pytest.raises(jobq.InvalidOption):
        jobq.ExponentialBackoff(**options)  # type: ignore[arg-type]
