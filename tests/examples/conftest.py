"""Fixtures of the framework and example tests: every test runs on SQLite
and on PostgreSQL (a schema of its own, see ``tests/conftest.py``)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import ROOT, Processes
from suite_parts import postgres_param

# The examples package, for tests that import an example's modules.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture(params=["sqlite", postgres_param()])
def backend(request: pytest.FixtureRequest) -> str:
    """Overrides the suite's backends: the frameworks run on SQLite and PostgreSQL."""
    return str(request.param)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    started = Processes(tmp_path)
    try:
        yield started
    finally:
        started.close()
