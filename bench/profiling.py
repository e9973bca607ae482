"""``python -m bench --profile``: cProfile of the process/s workload on
SQLite, or on PostgreSQL (``--backend postgres``); with
``--profile-processes N``, of N processes draining one queue side by side,
with where each thread's time went (:func:`shares`).

Two profiles on SQLite: the event-loop thread (claim loop, handlers,
decoding) and the store's database thread (every SQL statement runs there);
on PostgreSQL the event-loop thread alone (psycopg's async connections run
there). Stats files go to ``bench/results/`` for ``python -m pstats``.
"""

from __future__ import annotations

import asyncio
import io
import os
import pstats
import shutil
import subprocess
import time
from collections.abc import Callable
from typing import Any

import jobq

from .report import RESULTS_DIR
from .runner import ROOT, _child_cmd, _child_env, _parse, make_workdir, run_child
from .workloads import _preload

#: Where a thread's time goes, by the built-ins that spend it. A thread's
#: total is the sum of every function's own time in its profile.
SHARE_KINDS = {
    "waiting for events (idle loop)": ("select.epoll",),
    "SQL statements": ("sqlite3.Connection", "sqlite3.Cursor"),
    "sleeping for the write lock": ("time.sleep",),
    "waiting for a statement (idle thread)": ("_queue.SimpleQueue",),
    "waking the loop": ("_socket.socket",),
}


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


def shares(path: str) -> tuple[float, dict[str, float]]:
    """A profile's total time and the share of it each :data:`SHARE_KINDS`
    entry took; the rest is Python code (jobq's, asyncio's)."""
    stats: Any = pstats.Stats(path)
    total = sum(row[2] for row in stats.stats.values())
    found: dict[str, float] = {}
    for (_file, _line, name), row in stats.stats.items():
        for kind, marks in SHARE_KINDS.items():
            if any(mark in name for mark in marks):
                found[kind] = found.get(kind, 0.0) + row[2]
    return total, {kind: spent / total for kind, spent in found.items() if total}


def run_profile_processes(
    n: int,
    concurrency: int,
    processes: int,
    durability: str,
    log: Callable[[str], None],
    postgres_url: str | None = None,
) -> list[dict[str, Any]]:
    """Profiles ``processes`` processes, each one processor at
    ``concurrency``, draining the same ``n`` jobs together."""
    workdir = make_workdir(None)
    name = "postgres" if postgres_url else f"sqlite-{durability}"
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, Any]] = []
    try:
        url = postgres_url or (
            f"sqlite:///{workdir}/profile.db" + ("?durability=fast" if durability == "fast" else "")
        )

        async def fill() -> None:
            async with jobq.connect(url) as queue:
                await _preload(queue, n)

        asyncio.run(fill())
        start_at = time.time() + 2.0  # every child imported and connected by then
        prefixes = [str(RESULTS_DIR / f"profile-processes-{name}-{k + 1}of{processes}") for k in range(processes)]
        children = [
            subprocess.Popen(
                _child_cmd(
                    "process_shared", url=url, n=n, concurrency=concurrency,
                    timeout=60 + n / 50, start_at=start_at, profile=prefix,
                ),
                cwd=ROOT, env=_child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            for prefix in prefixes
        ]
        for k, child in enumerate(children):
            out, err = child.communicate(timeout=120 + n / 25)
            results.append({**_parse(out, err, f"process_shared #{k + 1}"), "prefix": prefixes[k]})
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    rate = n / max(r["seconds"] for r in results)
    log(
        f"{processes} processes under cProfile ({name.replace('-', ' ')}, {n} jobs, concurrency"
        f" {concurrency} each): {rate:,.0f} jobs/s together"
    )
    for k, result in enumerate(results):
        log(f"\nprocess {k + 1}: ran {result['mine']:,} jobs in {result['seconds']:.2f} s")
        for thread in ("main", "db"):
            path = f"{result['prefix']}.{thread}.prof"
            if not os.path.exists(path):
                continue
            total, found = shares(path)
            title = "event-loop thread" if thread == "main" else "database thread"
            parts = ", ".join(f"{kind} {share:.0%}" for kind, share in sorted(found.items(), key=lambda x: -x[1]))
            log(f"  {title}: {total:.2f} s profiled: {parts}; the rest Python ({path})")
    return results
