"""``python -m bench``: jobq's throughput and latency figures.

python -m bench                 # default run, ~15-20 minutes on 2 busy cores
python -m bench --quick         # small counts, one run, about a minute
python -m bench --only process --runs 5
python -m bench --profile       # cProfile of process/s on SQLite (--backend postgres: on PostgreSQL)
python -m bench --long          # also the worker RSS over 1,000,000 jobs (--only rss: that alone)

With JOBQ_BENCH_POSTGRES_URL (or JOBQ_TEST_POSTGRES_URL) set to a
postgresql:// URL, a postgres column joins the table. huey and pgqueuer
(the ``bench`` extra) join as peer columns when installed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from . import pg
from .child import LOG_LEVEL_ENV
from .config import DEFAULT, POSTGRES, QUICK
from .report import RESULTS_DIR, build_table, table_from_json, write_json
from .runner import DEFAULT_WORKLOADS, WORKLOADS, Bench, BenchError, make_workdir


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts, one run: a smoke test, about a minute")
    parser.add_argument(
        "--runs", type=int, default=None, help="runs per figure; the median is reported (default 3; 1 with --quick)"
    )
    parser.add_argument(
        "--only", action="append", choices=WORKLOADS, metavar="NAME",
        help=f"run only this workload (repeatable): {', '.join(WORKLOADS)}",
    )  # fmt: skip
    parser.add_argument(
        "--concurrency", type=int, action="append", default=None,
        help="processor concurrency for process/s (repeatable; default 16 and 32)",
    )  # fmt: skip
    parser.add_argument(
        "--dir", default=None, help="where the temporary database files go (default: the system temp dir)"
    )
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "latest.json", help="JSON results file")
    parser.add_argument(
        "--profile", action="store_true",
        help="instead of the benchmark: cProfile the process/s workload on sqlite (or the --backend given:"
        " sqlite-fast, postgres) and print the top entries",
    )  # fmt: skip
    parser.add_argument(
        "--profile-processes", type=int, default=None, metavar="N",
        help="with --profile: N processes draining one queue together, each profiled, with where each"
        " thread's time went (idle, SQL, waiting for the write lock, Python)",
    )  # fmt: skip
    parser.add_argument(
        "--no-postgres", action="store_true",
        help=f"leave out the postgres column even when {' or '.join(pg.ENV_VARS)} is set",
    )  # fmt: skip
    parser.add_argument(
        "--long", action="store_true",
        help="add the rss workload: one worker process through 1,000,000 jobs (several minutes)",
    )  # fmt: skip
    parser.add_argument(
        "--backend", action="append", metavar="NAME", default=None,
        help="measure only this jobq column (repeatable): memory, sqlite, sqlite-fast, postgres;"
        " a peer joins only beside the column it is compared with",
    )  # fmt: skip
    parser.add_argument(
        "--no-peers", action="store_true", help="leave out huey and pgqueuer even when they are installed"
    )
    parser.add_argument("--quiet", action="store_true", help="print only the table")
    parser.add_argument(
        "--log-level", metavar="LEVEL", default=None, choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="configure logging in each measuring process at this level, to a real handler writing to"
        " /dev/null (as `jobq worker` logs, without the terminal's cost); default: no logging configured",
    )  # fmt: skip
    parser.add_argument(
        "--table", type=Path, nargs="+", metavar="JSON", default=None,
        help="measure nothing: print the table of earlier runs' JSON files (e.g. bench/results/latest.json);"
        " a later file adds the cells the earlier ones lack (e.g. a separate --only rss run)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.runs is not None and args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    counts = QUICK if args.quick else DEFAULT
    runs = args.runs or counts.runs
    concurrencies = tuple(args.concurrency) if args.concurrency else counts.concurrencies

    def log(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    if args.log_level is not None:
        os.environ[LOG_LEVEL_ENV] = args.log_level  # read by each child (bench.child)

    if args.table is not None:
        print("\n".join(table_from_json(args.table)))
        return 0

    if args.profile:
        from .profiling import run_profile, run_profile_processes

        def say(line: str) -> None:
            print(line, flush=True)

        if args.backend and POSTGRES in args.backend:
            found = pg.server_url()
            if found is None:
                print(f"bench failed: --profile --backend postgres needs {pg.ENV_VARS[0]}", file=sys.stderr)
                return 1
            server = pg.Server(*found)
            schema, url = server.fresh()
            try:
                if args.profile_processes:
                    run_profile_processes(
                        counts.process_jobs, concurrencies[0], args.profile_processes, "full", say, postgres_url=url
                    )
                else:
                    run_profile(counts.process_jobs, concurrencies[0], "full", say, postgres_url=url)
            finally:
                server.drop(schema)
                server.close()
            return 0
        durability = "fast" if args.backend and "sqlite-fast" in args.backend else "full"
        if args.profile_processes:
            run_profile_processes(counts.process_jobs, concurrencies[0], args.profile_processes, durability, say)
        else:
            run_profile(counts.process_jobs, concurrencies[0], durability, say)
        return 0

    postgres: pg.Server | None = None
    found = None if args.no_postgres else pg.server_url()
    if found is not None:
        url, source = found
        try:
            postgres = pg.Server(url, source)
        except Exception as exc:  # noqa: BLE001 - asked for a postgres column: say why there is none
            print(f"bench failed: cannot use {source}={pg.redacted(url)}: {exc}", file=sys.stderr)
            return 1

    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    started = time.perf_counter()
    workdir = make_workdir(args.dir)
    log(f"jobq bench ({'quick' if args.quick else 'default'}), {runs} run(s), databases in {workdir}")
    if postgres is not None:
        info = postgres.describe()
        log(
            f"postgres: {info['url']} (from {info['from']}), server {info['server_version']},"
            f" fsync={info['fsync']}, synchronous_commit={info['synchronous_commit']}; a schema per measurement"
        )
    only = list(args.only or DEFAULT_WORKLOADS)
    if args.long and "rss" not in only:
        only.append("rss")
    try:
        bench = Bench(
            replace(counts, runs=runs), runs, only, workdir, log, concurrencies, postgres,
            peers=not args.no_peers, only_backends=args.backend,
        )  # fmt: skip
        for peer, why in bench.peers_missing.items():
            log(f"no {peer} column: {why}")
        samples = bench.run()
    except BenchError as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if postgres is not None:
            postgres.close()
    seconds = time.perf_counter() - started
    pg_info = postgres.describe() if postgres is not None else None
    lines, table = build_table(samples, counts, concurrencies, pg_info, bench.peers, bench.peers_missing)
    print()
    print(
        f"jobq bench: {'quick' if args.quick else 'default'} counts, median of {runs} run(s), {seconds:.0f} s"
    )
    print("\n".join(lines))
    write_json(
        args.output, samples=samples, counts=replace(counts, runs=runs),
        args={k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        table=table, started=started_at, seconds=seconds, postgres=pg_info,
        peers={"measured": bench.peers, "missing": bench.peers_missing},
    )  # fmt: skip
    print(f"\nwrote {args.output}")
    if samples.errors:
        print(f"{len(samples.errors)} measurement(s) failed (see 'errors' in the JSON):", file=sys.stderr)
        for error in samples.errors:
            first = error["error"].splitlines()[0]
            print(f"  run {error['run'] + 1} {error['metric']} {error['backend']}: {first}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
