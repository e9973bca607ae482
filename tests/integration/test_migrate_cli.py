"""``jobq migrate URL``: two at once both succeed, one creates the schema and
the other finds it done; run again, it changes nothing. On SQLite always, on
PostgreSQL when ``JOBQ_TEST_POSTGRES_URL`` is set."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import pytest
from suite_parts import NO_POSTGRES, POSTGRES_URL

SRC = str(Path(__file__).resolve().parents[2] / "src")


def migrate(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(
        [sys.executable, "-m", "jobq", "migrate", *args, "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def outcome(proc: subprocess.Popen[str]) -> dict[str, object]:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    result: dict[str, object] = json.loads(out)
    return result


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'jobs.db'}"
        return
    if not POSTGRES_URL:
        pytest.skip(NO_POSTGRES)
    import psycopg
    from psycopg import sql

    schema = f"jobq_mig_{secrets.token_hex(6)}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    parts = urlsplit(POSTGRES_URL)
    option = "options=" + quote(f"-csearch_path={schema}", safe="")
    yield urlunsplit(parts._replace(query=f"{parts.query}&{option}" if parts.query else option))
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def test_two_migrations_at_once_succeed(url: str) -> None:
    first, second = migrate(url), migrate("--url", url)
    results = [outcome(first), outcome(second)]
    latest = results[0]["reached"]
    assert isinstance(latest, int) and latest >= 1
    assert all(r["reached"] == latest for r in results)
    assert sorted(r["found"] for r in results) == [0, latest]  # type: ignore[type-var]
    again = outcome(migrate(url))
    assert again["found"] == again["reached"] == latest
