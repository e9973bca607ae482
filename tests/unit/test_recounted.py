"""The overview's slow figures: exact while counting is fast; once slow,
the last count with its age, recounted in the background."""

from __future__ import annotations

import asyncio
import logging

import pytest

from jobq.admin.figures import FRESH_ENOUGH, RECOUNT_EVERY, Recounted


class Counter:
    """A count that takes ``takes`` seconds of a fake clock."""

    def __init__(self) -> None:
        self.now = 100.0
        self.takes = 0.0
        self.calls = 0
        self.fail = False

    def clock(self) -> float:
        return self.now

    async def count(self) -> int:
        self.calls += 1
        if self.fail:
            raise RuntimeError("database went away")
        self.now += self.takes
        return self.calls


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_fast_counts_are_counted_for_every_call() -> None:
    c = Counter()
    figures = Recounted(c.count, clock=c.clock)
    assert await figures.get() == (1, None)
    assert await figures.get() == (2, None)


async def test_slow_counts_answer_at_once_with_their_age_and_recount_behind() -> None:
    c = Counter()
    c.takes = FRESH_ENOUGH * 10
    figures = Recounted(c.count, clock=c.clock)
    value, age = await figures.get()  # the first count is waited for
    assert value == 1 and age == 0.0
    c.now += 2
    assert await figures.get() == (1, 2.0) and c.calls == 1  # too recent to recount
    c.now += RECOUNT_EVERY
    value, age = await figures.get()
    assert value == 1 and age == pytest.approx(2 + RECOUNT_EVERY)  # answered before the recount
    await settle()
    assert c.calls == 2
    value, age = await figures.get()
    assert value == 2 and age == pytest.approx(0.0)
    c.takes = 0.0  # fast again: the next recount makes it exact again
    c.now += RECOUNT_EVERY
    await figures.get()
    await settle()
    assert await figures.get() == (4, None)


async def test_a_failed_recount_is_logged_and_the_last_figures_kept(caplog: pytest.LogCaptureFixture) -> None:
    c = Counter()
    c.takes = 1.0
    figures = Recounted(c.count, clock=c.clock)
    await figures.get()
    c.fail = True
    c.now += RECOUNT_EVERY
    with caplog.at_level(logging.ERROR, logger="jobq.admin"):
        assert (await figures.get())[0] == 1
        await settle()
    assert "recounting the overview's figures failed" in caplog.text and "RuntimeError" in caplog.text
    c.now += 1
    assert (await figures.get())[0] == 1 and c.calls == 2  # backed off: no recount yet


async def test_a_first_count_outlasting_the_wait_is_answered_without(monkeypatch: pytest.MonkeyPatch) -> None:
    import jobq.admin.figures as figures_module

    monkeypatch.setattr(figures_module, "FIRST_WAIT", 0.01)
    release = asyncio.Event()

    async def slow_count() -> str:
        await release.wait()
        return "counted"

    figures = Recounted(slow_count)
    assert await figures.get() == (None, None)  # still counting: answered without
    assert await figures.get() == (None, None)  # the same count goes on, none started beside
    release.set()
    value, _ = await figures.get()
    assert value == "counted"


async def test_an_error_of_the_first_count_reaches_the_caller() -> None:
    c = Counter()
    c.fail = True
    figures = Recounted(c.count, clock=c.clock)
    with pytest.raises(RuntimeError):
        await figures.get()
    c.fail = False
    assert await figures.get() == (2, None)


async def test_an_interval_of_its_own_and_a_first_count_waited_for() -> None:
    """``every`` replaces RECOUNT_EVERY; ``first_wait=math.inf`` waits for
    the first count however long it takes."""
    import math

    now = [0.0]
    calls = [0]

    async def count() -> int:
        calls[0] += 1
        await asyncio.sleep(0.05)
        now[0] += 1.0  # every count is slow, by this clock
        return calls[0]

    figures = Recounted(count, clock=lambda: now[0], every=5.0, first_wait=math.inf)
    assert await figures.get() == (1, 0.0)
    now[0] += 4.0
    assert (await figures.get())[0] == 1  # not yet five seconds
    now[0] += 1.0
    value, age = await figures.get()
    assert value == 1 and age == 5.0  # stale, and a recount started
    await asyncio.sleep(0.1)
    assert (await figures.get())[0] == 2
