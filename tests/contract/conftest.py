"""Fixtures for the contract tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from contract_helpers import MakeProcessor

import jobq


@pytest.fixture
async def make_processor(queue: jobq.Queue) -> AsyncIterator[MakeProcessor]:
    """Builds processors on the test's queue and stops them at the end."""
    made: list[jobq.JobProcessor] = []

    def make(**options: Any) -> jobq.JobProcessor:
        options.setdefault("poll_interval", 0.05)
        processor = jobq.JobProcessor(queue, **options)
        made.append(processor)
        return processor

    yield make
    for processor in made:
        await processor.stop(timeout=1)
