"""One wrapper times every store verb (jobq.store.instrumented), on a fake store."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from jobq.errors import StoreUnavailable
from jobq.store.base import AdminStore, WorkerStore
from jobq.store.instrumented import UNTIMED, VERBS, instrument, timings
from jobq.store.memory import MemoryStore


class FakeStore:
    """A few verbs: one slow, one failing, one made of another."""

    name = "fake"

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def get(self, job_id: str) -> None:
        self.calls.append("get")
        await asyncio.sleep(0.02)

    async def remove(self, job_id: str) -> bool:
        self.calls.append("remove")
        raise StoreUnavailable("down")

    async def claim(self, request: Any) -> list[Any]:
        self.calls.append("claim")
        return []

    async def settle_and_claim(self, transitions: Sequence[Any], request: Any) -> tuple[list[Any], list[Any]]:
        self.calls.append("settle_and_claim")
        return [], await self.claim(request)

    async def wait_for_change(self, timeout: float) -> bool:
        return False

    def helper(self) -> str:
        return "not a verb"


def test_every_protocol_verb_is_timed_except_the_waits() -> None:
    verbs = {
        name
        for protocol in (WorkerStore, AdminStore)
        for name in vars(protocol)
        if not name.startswith("_") and callable(vars(protocol)[name])
    }
    assert set(VERBS) == verbs - UNTIMED | {"insert_on"}
    assert "wait_for_change" not in VERBS and "close" not in VERBS


async def test_calls_and_seconds_are_counted_per_verb() -> None:
    store = FakeStore()
    assert instrument(store) is store
    await store.get("a")
    await store.get("b")
    await store.claim(None)
    figures = timings(store)
    assert figures is not None and figures.backend == "fake"
    got = figures.snapshot()
    assert set(got) == {"get", "claim"}  # verbs never called are left out
    assert got["get"].calls == 2 and got["get"].errors == 0
    assert 0.04 <= got["get"].seconds < 5
    assert 0.02 <= got["get"].max_seconds <= got["get"].seconds
    assert got["claim"].calls == 1
    assert store.calls == ["get", "get", "claim"]


async def test_a_verb_that_raises_is_counted_and_the_error_goes_on() -> None:
    store = instrument(FakeStore())
    with pytest.raises(StoreUnavailable, match="down"):
        await store.remove("a")
    figures = timings(store)
    assert figures is not None
    got = figures.snapshot()["remove"]
    assert (got.calls, got.errors) == (1, 1)


async def test_a_verb_made_of_other_verbs_counts_once() -> None:
    store = instrument(FakeStore())
    await store.settle_and_claim([], None)
    figures = timings(store)
    assert figures is not None
    assert set(figures.snapshot()) == {"settle_and_claim"}
    assert store.calls == ["settle_and_claim", "claim"]
    await store.claim(None)  # called on its own, it counts
    assert figures.snapshot()["claim"].calls == 1


async def test_concurrent_calls_are_each_counted() -> None:
    store = instrument(FakeStore())
    await asyncio.gather(*(store.get(str(n)) for n in range(5)))
    figures = timings(store)
    assert figures is not None and figures.snapshot()["get"].calls == 5


async def test_the_store_stays_what_it_was() -> None:
    store = MemoryStore()
    assert instrument(instrument(store)) is store  # twice: wrapped once
    assert isinstance(store, MemoryStore) and isinstance(store, WorkerStore)
    assert store.get.__name__ == "get" and store.get.__doc__ == MemoryStore.get.__doc__
    assert await store.get("missing") is None
    await store.wait_for_change(0)
    figures = timings(store)
    assert figures is not None and set(figures.snapshot()) == {"get"}
    assert figures.snapshot()["get"].calls == 1
    plain = FakeStore()
    assert timings(plain) is None
    instrument(plain)
    assert plain.helper() == "not a verb"


async def test_hooks_set_on_the_instance_later_compose() -> None:
    """A later wrapper on the instance (as bench/chaos/child.py sets) calls
    through the timing one."""
    store = instrument(FakeStore())
    timed = store.get
    seen: list[str] = []

    async def hooked(job_id: str) -> None:
        seen.append(job_id)
        await timed(job_id)

    store.get = hooked  # type: ignore[method-assign]
    await store.get("x")
    figures = timings(store)
    assert seen == ["x"] and figures is not None and figures.snapshot()["get"].calls == 1
