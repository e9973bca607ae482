"""The PostgreSQL backend's edges that need no server: the optional
dependency, URL handling, an unreachable server."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

import jobq
from jobq.backends import _postgres_url


def test_core_imports_and_postgres_says_which_extra_without_psycopg() -> None:
    code = (
        "import sys\n"
        "sys.modules['psycopg'] = None\n"
        "sys.modules['psycopg_pool'] = None\n"
        "import jobq\n"
        "for make in (lambda: jobq.PostgresQueue('postgresql://localhost/x'),\n"
        "             lambda: jobq.connect_sync('postgres://localhost/x')):\n"
        "    try:\n"
        "        make()\n"
        "    except jobq.BackendMissing as exc:\n"
        "        assert isinstance(exc, ImportError) and isinstance(exc, jobq.JobqError)\n"
        "        assert 'jobq[postgres]' in str(exc), exc\n"
        "    else:\n"
        "        raise SystemExit('no BackendMissing')\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stdout + result.stderr


def test_url_options_split_from_libpq_parameters() -> None:
    dsn, options = _postgres_url(
        "postgresql://u:p%40ss@db:5433/app?sslmode=require&table=jobs&lease=12.5"
        "&options=-csearch_path%3Dq%20x&pool_size=4"
    )
    assert options == {"table": "jobs", "lease": 12.5, "pool_size": 4}
    assert dsn == "postgresql://u:p%40ss@db:5433/app?sslmode=require&options=-csearch_path%3Dq%20x"
    with pytest.raises(jobq.InvalidURL):
        _postgres_url("postgresql://db/app?lease=soon")


async def test_unreachable_server_raises_store_unavailable_without_the_password() -> None:
    pytest.importorskip("psycopg")
    started = time.monotonic()
    with pytest.raises(jobq.StoreUnavailable) as info:
        await jobq.connect("postgresql://user:s3cret@127.0.0.1:1/nowhere?connect_timeout=3")
    assert time.monotonic() - started < 10
    assert "s3cret" not in str(info.value)
    assert "127.0.0.1:1/nowhere" in str(info.value)
