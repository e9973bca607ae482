"""The in-process scenarios' harness: a queue on the backend under test
(``backend`` and ``queue_url`` come from ``tests/conftest.py``), on an event
loop the test owns, so Hypothesis can drive it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from inproc_harness import Harness


@pytest.fixture
def harness(backend: str, queue_url: str, tmp_path: Path) -> Iterator[Harness]:
    h = Harness(backend, queue_url, tmp_path)
    try:
        yield h
    finally:
        h.close()
