"""Fixtures for the multi-process acceptance tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from proc import Children


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "jobs.db"


@pytest.fixture
def children(workdir: Path) -> Iterator[Children]:
    """Child processes of one test; whatever is still running at the end is
    killed (SIGKILL) and reaped, pass or fail."""
    started = Children(workdir)
    try:
        yield started
    finally:
        started.close()
