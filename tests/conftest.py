"""Shared fixtures. ``queue`` is parametrised over every backend, so each
test in ``tests/contract`` runs against all of them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import jobq

BACKENDS = ["memory", "sqlite"]

MakeQueue = Callable[..., Awaitable[jobq.Queue]]


def backend_url(backend: str, tmp_path: Path) -> str:
    if backend == "memory":
        return "memory://"
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'jobs.db'}"
    raise ValueError(backend)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clock() -> jobq.FakeClock:
    return jobq.FakeClock()


@pytest.fixture
async def make_queue(backend: str, tmp_path: Path) -> AsyncIterator[MakeQueue]:
    """Opens queues on the test's backend (one shared file for SQLite) and
    closes them at the end."""
    opened: list[jobq.Queue] = []

    async def make(**options: Any) -> jobq.Queue:
        queue = await jobq.connect(backend_url(backend, tmp_path), **options)
        opened.append(queue)
        return queue

    yield make
    for queue in opened:
        await queue.close()


@pytest.fixture
async def queue(make_queue: MakeQueue, clock: jobq.FakeClock) -> jobq.Queue:
    """A fresh queue on each backend, on a fake clock."""
    return await make_queue(clock=clock)
