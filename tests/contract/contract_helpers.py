"""Helpers shared by the contract tests (the ``make_processor`` fixture is in
this folder's conftest.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import jobq

DEADLINE = 10.0  # seconds any expected event may take on a slow machine
QUIET = 0.3  # seconds to watch for something that must not happen

MakeProcessor = Callable[..., jobq.JobProcessor]


class Recorder:
    """Collects events of one name and lets a test wait for the n-th."""

    def __init__(self, processor: jobq.JobProcessor, name: str) -> None:
        self.events: list[jobq.Event] = []
        self._changed = asyncio.Event()
        processor.on(name, self._record)

    def _record(self, event: jobq.Event) -> None:
        self.events.append(event)
        self._changed.set()

    async def wait_for(self, count: int = 1) -> list[jobq.Event]:
        async def reach() -> None:
            while len(self.events) < count:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(reach(), DEADLINE)
        return self.events


async def wait_until(predicate: Callable[[], Any], timeout: float = DEADLINE) -> None:
    """Waits until ``predicate()`` (plain or async) is true."""

    async def poll() -> None:
        while not await predicate() if asyncio.iscoroutinefunction(predicate) else not predicate():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


async def stored(queue: jobq.Queue, job_id: str) -> jobq.Job[Any]:
    """The job as stored now; it must exist."""
    job = await queue.get_job(job_id)
    assert job is not None
    return job
