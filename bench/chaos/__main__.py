"""``python -m bench.chaos``: every chaos scenario, one table.

Runs each scenario at full size (``--scale ci`` for the test suite's size)
on SQLite and, when JOBQ_BENCH_POSTGRES_URL (or else JOBQ_TEST_POSTGRES_URL)
is set, on PostgreSQL; prints the table and writes
``bench/results/chaos.json``; each run's work directory (store, ledger
files, children's stderr) is kept under ``bench/results/chaos-work/``.
Exits 1 if any promise was broken.

    python -m bench.chaos [--only kills] [--backend sqlite] [--scale ci|full]
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import shutil
import sqlite3
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from .harness import ROOT, Result, backends_from_env, format_table

SCENARIOS = (
    "contention",
    "kill_points",
    "kills",
    "shutdown",
    "paused",
    "poison",
    "blocked_loop",
    "neighbours",
    "pg_outage",
    "disk_full",
    "long_run",
)  # in the order of priority


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only", choices=SCENARIOS, action="append", help="run only this scenario (repeatable)"
    )
    parser.add_argument("--backend", choices=("sqlite", "postgres"), action="append", help="default: both")
    parser.add_argument("--scale", choices=("ci", "full"), default="full")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "chaos.json")
    args = parser.parse_args(argv)

    backends = backends_from_env(args.backend or ("sqlite", "postgres"))
    if args.backend and "postgres" in args.backend and not any(b.name == "postgres" for b in backends):
        parser.error("--backend postgres needs JOBQ_BENCH_POSTGRES_URL or JOBQ_TEST_POSTGRES_URL")
    results: list[Result] = []
    began = time.monotonic()
    for name in args.only or SCENARIOS:
        module = importlib.import_module(f"bench.chaos.{name}")
        for backend in backends:
            # Kept after the run (git-ignored), so a failure can be looked into.
            workdir = args.output.parent / "chaos-work" / f"{name}-{backend.name}"
            shutil.rmtree(workdir, ignore_errors=True)
            workdir.mkdir(parents=True)
            with backend:
                started = time.monotonic()
                try:
                    rows = module.run(backend, workdir, module.SIZES[args.scale])
                except Exception as exc:  # a wait that timed out, a child that died, a server gone
                    traceback.print_exc()
                    message = str(exc)
                    rows = [
                        Result(name, backend.name, 0, 0, 0, 0, None, failures=[message.splitlines()[0][:160]])
                    ]
                    rows[0].details["error"] = message
                for row in rows:
                    row.details["seconds"] = round(time.monotonic() - started, 1)
                    print(
                        f"  {row.scenario} on {row.backend}: {'ok' if row.ok else 'FAILED'}", file=sys.stderr
                    )
                results.extend(rows)

    print(format_table(results))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(
        json.dumps(
            {
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "scale": args.scale,
                "python": platform.python_version(),
                "sqlite": sqlite3.sqlite_version,
                "machine": f"{platform.system()} {platform.machine()}",
                "seconds": round(time.monotonic() - began, 1),
                "results": [r.as_dict() for r in results],
            },
            indent=2,
        )
    )
    print(f"written to {args.output}", file=sys.stderr)
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
