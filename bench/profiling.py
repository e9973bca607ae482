"""``python -m bench --profile``: cProfile of the process/s workload on
SQLite, or on PostgreSQL (``--backend postgres``).

Two profiles on SQLite: the event-loop thread (claim loop, handlers,
decoding) and the store's database thread (every SQL statement runs there);
on PostgreSQL the event-loop thread alone (psycopg's async connections run
there). Stats files go to ``bench/results/`` for ``python -m pstats``.
"""

from __future__ import annotations

import io
import pstats
from collections.abc import Callable

from .report import RESULTS_DIR
from .runner import make_workdir, run_child


def top(path: str, limit: int, sort: str = "cumulative") -> str:
    out = io.StringIO()
    stats = pstats.Stats(path, stream=out)
    stats.strip_dirs().sort_stats(sort).print_stats(limit)
    text = out.getvalue()
    # Keep the summary line and the table, drop pstats' file-name preamble.
    start = text.find("function calls")
    return text[text.rfind("\n", 0, start) + 1 :] if start >= 0 else text


def run_profile(
    n: int,
    concurrency: int,
    durability: str,
    log: Callable[[str], None],
    limit: int = 10,
    postgres_url: str | None = None,
) -> dict[str, str]:
    """Profiles one processor draining ``n`` jobs: on a SQLite file at
    ``durability``, or, given ``postgres_url``, on PostgreSQL."""
    import os
    import shutil

    workdir = make_workdir(None)
    name = "postgres" if postgres_url else f"sqlite-{durability}"
    prefix = str(RESULTS_DIR / f"profile-process-{name}-c{concurrency}")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    try:
        url = postgres_url or (
            f"sqlite:///{workdir}/profile.db" + ("?durability=fast" if durability == "fast" else "")
        )
        result = run_child(
            "process",
            120 + n / 50,
            url=url,
            n=n,
            concurrency=concurrency,
            timeout=60 + n / 50,
            profile=prefix,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    log(
        f"process/s under cProfile ({name.replace('-', ' ')}, {n} jobs, concurrency {concurrency}):"
        f" {result['rate']:,.0f} jobs/s"
    )
    sections = {}
    for thread in ("main", "db"):
        path = f"{prefix}.{thread}.prof"
        if not os.path.exists(path):  # PostgreSQL has no database thread
            continue
        title = "event-loop thread" if thread == "main" else "database thread (jobq-sqlite executor)"
        for sort in ("cumulative", "tottime"):
            text = top(path, limit, sort)
            sections[f"{thread}-{sort}"] = text
            log(f"\n== {title}: top {limit} by {sort} ({path}) ==\n{text.rstrip()}")
    return sections
