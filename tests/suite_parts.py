"""The parts of the suite that are not Python packages: a PostgreSQL server
and Chromium. ``make test`` installs both, starts a throwaway server and sets
``JOBQ_TEST_POSTGRES_URL``. A plain ``pytest`` without them skips the tests
that need them, with a reason that says so (never leaving them out unseen),
and under ``make test`` any skip fails the run (see ``conftest.py``).
"""

from __future__ import annotations

import os
from typing import Any

import pytest

POSTGRES_URL = os.environ.get("JOBQ_TEST_POSTGRES_URL", "")
NO_POSTGRES = "no PostgreSQL server: JOBQ_TEST_POSTGRES_URL is not set (make test starts one and sets it)"

CHROMIUM = os.environ.get("JOBQ_TEST_CHROMIUM", "/usr/bin/chromium")
NO_CHROMIUM = f"no Chromium at {CHROMIUM} (make test installs it: apt-get install chromium)"

NO_POSTGRES_BINARIES = "no PostgreSQL server binaries (initdb) (make test installs them: apt-get install postgresql)"


def postgres_param() -> Any:
    """The ``postgres`` backend as a test parameter, skipped with
    :data:`NO_POSTGRES` when no server is set."""
    return pytest.param("postgres", marks=pytest.mark.skipif(not POSTGRES_URL, reason=NO_POSTGRES))
