"""Medians, the printed table, and ``bench/results/latest.json``."""

from __future__ import annotations

import json
import math
import os
import platform
import sqlite3
import statistics
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from . import pg
from .config import BACKENDS, PEERS, POSTGRES, Counts
from .peers_pgqueuer import BATCH_SIZE as PGQ_BATCH
from .peers_pgqueuer import BATCH_SIZES as PGQ_BATCHES
from .runner import TASK_CONCURRENCY, Samples

RESULTS_DIR = Path(__file__).resolve().parent / "results"
COLUMNS = tuple(BACKENDS)  # memory, sqlite, sqlite-fast; postgres joins when a server is set
PEER_LABELS = {"huey": "huey (sqlite)", "pgqueuer": "pgqueuer (postgres)"}
#: Ratio column -> (numerator backend, denominator backend).
RATIOS = {"fast/full": ("sqlite-fast", "sqlite"), "memory/full": ("memory", "sqlite")}
PG_RATIO = {"postgres/full": (POSTGRES, "sqlite")}
PEER_RATIOS = {"huey": {"sqlite/huey": ("sqlite", "huey")}, "pgqueuer": {"postgres/pgqueuer": (POSTGRES, "pgqueuer")}}
#: The peer each jobq column is compared with.
PEER_OF = {jobq: peer for peer, jobq in PEERS.items()}
#: Ratio rows: name -> (jobq metric, reference metric); each is the median of
#: per-run ratios, the two figures of a run having been taken side by side.
PAIRED = {
    "ratio_enqueue": ("enqueue", "raw_insert"),
    "ratio_batch": ("enqueue_many", "raw_insert_batch"),
    "ratio_process": ("process_best", "raw_claim_complete"),
    "ratio_process_batch": ("process_best", "raw_claim_batch"),
    # the task API against the low-level API, each pair taken side by side
    "ratio_task_enqueue": ("task_enqueue", "enqueue"),
    "ratio_task_process": ("task_process", f"process_c{TASK_CONCURRENCY}"),
    # a cost: the time per cycle with the big table over the time with an empty one
    "claim_cost": ("claim_empty", "claim_big"),
    # the same beside a backlog of jobs not yet due, of a higher priority
    "backlog_claim_cost": ("backlog_claim_empty", "backlog_claim_big"),
    "backlog_process_cost": ("backlog_process_empty", "backlog_process_big"),
    # several worker processes against one with as many jobs in flight
    "processes_ratio": ("processes_cli", "processes_cli_one"),
}


def medians(samples: Samples) -> dict[str, dict[str, float]]:
    return {
        metric: {backend: statistics.median(values) for backend, values in per_backend.items()}
        for metric, per_backend in samples.values.items()
    }


def spread(values: list[float]) -> float | None:
    """Half the range across runs, relative to the median."""
    if len(values) < 2:
        return None
    mid = statistics.median(values)
    return (max(values) - min(values)) / 2 / mid if mid else None


def _rss_points(med: dict[str, dict[str, float]]) -> list[str]:
    """The RSS checkpoints measured, as metric names, in job-count order."""
    counts = sorted(int(m.removeprefix("rss_")) for m in med if m.startswith("rss_") and m[4:].isdigit())
    return [f"rss_{c}" for c in counts]


def derive(
    samples: Samples, med: dict[str, dict[str, float]], columns: tuple[str, ...] = COLUMNS
) -> dict[str, dict[str, Any]]:
    """Figures computed from medians: the best concurrency, jobq/raw ratios,
    the claim cost at scale, the RSS growth."""
    out: dict[str, dict[str, Any]] = {"process_best": {}, **{name: {} for name in PAIRED}, "rss_ratio": {}}
    process = {m: v for m, v in med.items() if m.startswith("process_c")}
    best_runs: dict[str, list[float]] = {}
    for backend in columns:
        candidates = [(v[backend], m) for m, v in process.items() if backend in v]
        if candidates:
            rate, metric = max(candidates)
            out["process_best"][backend] = {
                "value": rate, "concurrency": int(metric.removeprefix("process_c")),
                "spread": spread(samples.values[metric][backend]),
            }  # fmt: skip
            best_runs[backend] = samples.values[metric][backend]
        elif backend in med.get("process_peer", {}):  # a peer: its one configuration
            runs = samples.values["process_peer"][backend]
            out["process_best"][backend] = {"value": med["process_peer"][backend], "spread": spread(runs)}
        for name, (top, bottom) in PAIRED.items():
            top_runs = best_runs.get(backend) if top == "process_best" else samples.values.get(top, {}).get(backend)
            bottom_runs = samples.values.get(bottom, {}).get(backend)
            if top_runs and bottom_runs:
                # A failed run leaves one list shorter; the pairing stops at its end.
                ratios = [a / b for a, b in zip(top_runs, bottom_runs, strict=False)]
                out[name][backend] = {"value": statistics.median(ratios), "spread": spread(ratios)}
        peer = PEER_OF.get(backend)
        for metric in ("enqueue_tasks", "enqueue_processes"):
            # Concurrent producers against the peer's one producer, the
            # target of issue 17; medians of each, as their runs are apart.
            mine, theirs = med.get(metric, {}).get(backend), med.get("enqueue", {}).get(peer or "")
            if mine and theirs:
                out.setdefault(f"peer_{metric}", {})[backend] = {"value": mine / theirs, "spread": None}
        points = [m for m in _rss_points(med) if backend in med[m]]
        if len(points) >= 2:
            first, last = med[points[0]][backend], med[points[-1]][backend]
            out["rss_ratio"][backend] = {"value": last / first, "spread": None}
    return out


def _jobs(count: int) -> str:
    if count >= 1_000_000 and count % 1_000_000 == 0:
        return f"{count // 1_000_000}M"
    if count >= 1_000 and count % 1_000 == 0:
        return f"{count // 1_000}k"
    return f"{count:,}"


def _cores_rows(metric: str) -> list[tuple[str, str, str]]:
    """The CPU a worker command's run used (see :class:`bench.cli_workers.Cores`)."""
    return [
        (f"{metric}_cores_workers", "  CPU used by the worker processes", "cores"),
        (f"{metric}_cores_server", "  CPU used by the database server", "cores"),
        (f"{metric}_cores_machine", "  CPU used on the machine, in all", "cores"),
    ]


def _rows(
    counts: Counts, concurrencies: tuple[int, ...], med: dict[str, dict[str, float]]
) -> list[tuple[str, str, str]]:
    size = counts.batch_size
    backlog, ready = _jobs(counts.backlog_rows), _jobs(counts.backlog_process_jobs)
    rows = [
        ("enqueue", "enqueue, one call per job", "jobs/s"),
        ("enqueue_tasks", f"enqueue, {counts.producer_tasks} tasks in one process, one job per call", "jobs/s"),
        ("peer_enqueue_tasks", "  / the peer's single enqueue (huey; pgqueuer)", "ratio"),
        ("enqueue_processes", f"enqueue, {counts.producer_processes} processes, one job per call", "jobs/s"),
        ("peer_enqueue_processes", "  / the peer's single enqueue (huey; pgqueuer)", "ratio"),
        ("enqueue_many", f"enqueue_many, batches of {size}", "jobs/s"),
    ]
    rows += [(f"process_c{c}", f"process, 1 worker, concurrency {c}", "jobs/s") for c in concurrencies]
    rows += [
        ("process_best", "process, 1 worker, best (peers: see notes)", "jobs/s"),
        *((f"process_peer_b{b}", f"  pgqueuer on asyncpg, batch_size={b}", "jobs/s") for b in PGQ_BATCHES),
        ("task_enqueue", "task defer, one call per job", "jobs/s"),
        ("ratio_task_enqueue", "  task defer / enqueue", "ratio"),
        ("task_process", f"task process, 1 worker, concurrency {TASK_CONCURRENCY}", "jobs/s"),
        ("ratio_task_process", f"  task process / process, concurrency {TASK_CONCURRENCY}", "ratio"),
        ("processes_cli", f"process, jobq worker --processes {counts.processes}", "jobs/s"),
        *_cores_rows("processes_cli"),
        ("processes_cli_one", "process, jobq worker, one process", "jobs/s"),
        *_cores_rows("processes_cli_one"),
        ("processes_ratio", f"  --processes {counts.processes} / one process", "ratio"),
        ("latency_p50", f"enqueue->start p50 @ {counts.latency_rate:g}/s", "ms"),
        ("latency_p99", f"enqueue->start p99 @ {counts.latency_rate:g}/s", "ms"),
        ("raw_insert", "raw INSERT, 1 per txn", "rows/s"),
        ("ratio_enqueue", "  jobq enqueue / raw INSERT", "ratio"),
        ("raw_insert_batch", f"raw INSERT, {size} per txn", "rows/s"),
        ("ratio_batch", f"  jobq enqueue_many / raw INSERT x{size}", "ratio"),
        ("raw_claim_complete", "raw claim+complete, 1 per txn", "jobs/s"),
        ("ratio_process", "  jobq process (best) / raw, 1 per txn", "ratio"),
        ("raw_claim_batch", f"raw claim+complete, {size} per txn", "jobs/s"),
        ("ratio_process_batch", f"  jobq process (best) / raw, {size} per txn", "ratio"),
        ("claim_empty", "dequeue+complete, empty table", "jobs/s"),
        ("claim_big", f"dequeue+complete, {_jobs(counts.scale_rows)} finished rows", "jobs/s"),
        ("claim_cost", f"  claim cost at {_jobs(counts.scale_rows)} finished / empty", "ratio"),
        ("backlog_claim_empty", "dequeue+complete, no delayed jobs", "jobs/s"),
        ("backlog_claim_big", f"dequeue+complete beside {backlog} delayed jobs (higher priority)", "jobs/s"),
        ("backlog_claim_cost", f"  claim cost beside {backlog} delayed / none", "ratio"),
        ("backlog_process_empty", f"process {ready} ready jobs (c={TASK_CONCURRENCY}), no delayed jobs", "jobs/s"),
        ("backlog_process_big", f"process {ready} ready jobs (c={TASK_CONCURRENCY}) beside {backlog} delayed", "jobs/s"),
        ("backlog_process_cost", f"  process cost beside {backlog} delayed / none", "ratio"),
        ("latency_delayed_p50", f"delayed job due->start p50, beside {backlog} delayed", "ms"),
        ("latency_delayed_p99", f"delayed job due->start p99, beside {backlog} delayed", "ms"),
        ("rss_start", "worker RSS at start", "MiB"),
    ]
    points = _rss_points(med)
    rows += [(m, f"worker RSS after {_jobs(int(m[4:]))} jobs", "MiB") for m in points]
    if len(points) >= 2:
        first, last = (_jobs(int(m[4:])) for m in (points[0], points[-1]))
        rows.append(("rss_ratio", f"  RSS after {last} / after {first}", "ratio"))
    rows.append(("rss_rate", f"process, 1 CLI worker fed {_jobs(counts.rss_jobs)} jobs", "jobs/s"))
    return rows


def _num(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value:.2f}" if value < 100 else f"{value:,.0f}"
    if unit == "ratio":
        return f"{value:.2f}x"
    if unit in ("MiB", "cores"):
        return f"{value:.1f}" if unit == "MiB" else f"{value:.2f}"
    return f"{value:,.0f}"


def build_table(
    samples: Samples,
    counts: Counts,
    concurrencies: tuple[int, ...],
    postgres: dict[str, Any] | None = None,
    peers: list[str] | None = None,
    peers_missing: dict[str, str] | None = None,
) -> tuple[list[str], list[dict[str, Any]]]:
    """Printed lines, and the same rows as data for the JSON file. ``postgres``
    (the server's description, see :meth:`bench.pg.Server.describe`) adds the
    postgres column and its ratio to sqlite (full); ``peers`` add a column
    each and a jobq/peer ratio column."""
    med = medians(samples)
    peers = [p for p in (peers or []) if any(p in per for per in med.values())]
    columns = COLUMNS + ((POSTGRES,) if postgres is not None else ()) + tuple(peers)
    ratio_columns = {**RATIOS, **(PG_RATIO if postgres is not None else {})}
    for peer in peers:
        ratio_columns.update(PEER_RATIOS[peer])
    derived = derive(samples, med, columns)
    header = ["figure", "unit", *(PEER_LABELS.get(c, c) for c in columns), *ratio_columns]
    lines: list[list[str]] = []
    data: list[dict[str, Any]] = []
    notes: list[str] = []
    for metric, label, unit in _rows(counts, concurrencies, med):
        cells: dict[str, str] = {}
        values: dict[str, float] = {}
        for backend in columns:
            if metric in derived:
                entry = derived[metric].get(backend)
                if entry is None:
                    continue
                value, sp = entry["value"], entry.get("spread")
                suffix = f" c={entry['concurrency']}" if "concurrency" in entry else ""
            elif backend in med.get(metric, {}):
                value = med[metric][backend]
                sp, suffix = spread(samples.values[metric][backend]), ""
            else:
                continue
            values[backend] = value
            text = _num(value, unit)
            if sp is not None:
                text += f" ±{sp * 100:.0f}%"
            if metric.startswith("latency") and backend == "memory":
                text += " *"
            cells[backend] = text + suffix
        if not values:
            continue
        ratios: dict[str, float] = {}
        if unit != "ratio":
            for name, (top, bottom) in ratio_columns.items():
                if top in values and values.get(bottom):
                    ratios[name] = values[top] / values[bottom]
        lines.append(
            [label, unit, *(cells.get(b, "-") for b in columns),
             *(f"{ratios[k]:.2f}x" if k in ratios else "-" for k in ratio_columns)]
        )  # fmt: skip
        data.append(
            {"figure": metric, "label": label.strip(), "unit": unit, "values": values, "ratios": ratios}
        )
    notes += _notes(med, counts, concurrencies, postgres, peers, peers_missing or {})
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
    rule = "  ".join("-" * w for w in widths)

    def fmt(row: list[str]) -> str:
        return "  ".join(
            cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )

    return [fmt(header), rule, *map(fmt, lines), rule, *notes], data


def _notes(
    med: dict[str, dict[str, float]],
    counts: Counts,
    concurrencies: tuple[int, ...],
    postgres: dict[str, Any] | None,
    peers: list[str],
    peers_missing: dict[str, str],
) -> list[str]:
    notes: list[str] = []
    if "latency_p50" in med:
        notes.append("* memory: producer and processor in one process and event loop (in-process latency);")
        notes.append("  other columns: the parent enqueues, a separate worker process runs the jobs")
        notes.append(
            "  (sqlite: woken through the wake file jobq touches, inotify; postgres: by LISTEN/NOTIFY)."
        )
    notes.append("Cells are medians over runs; ±x% is half the range across runs relative to the median.")
    notes.append(
        "raw rows: jobq's own statements run bare; sqlite column = plain sqlite3 at synchronous FULL,"
        " sqlite-fast = NORMAL"
    )
    notes.append(
        "  (WAL, same table), postgres = plain psycopg; ratio rows are medians of per-run ratios"
        " (each pair taken side by side)."
    )
    if "processes_cli" in med:
        notes.append(
            f"--processes {counts.processes}: the CLI and its supervisor, concurrency {concurrencies[0]} per"
            " process; rate over first claim -> last completion as stored (start-up excluded);"
        )
        notes.append(
            f"  one process: the same command at concurrency {concurrencies[0] * counts.processes}"
            " (as many jobs in flight)."
        )
    if "claim_big" in med:
        notes.append(
            f"claim cost: jobq dequeue+complete one job at a time beside {_jobs(counts.scale_rows)} completed"
            " rows vs an empty table;"
        )
        notes.append("  sqlite at durability fast (a sync per commit would hide the statements); above 1x is slower.")
    if "backlog_claim_big" in med:
        notes.append(
            f"backlog: {_jobs(counts.backlog_rows)} waiting jobs of priority 10 due a day later, beside ready"
            " jobs of priority 0 (claims must pass over them);"
        )
        notes.append(
            "  cost rows: the time per job beside the backlog over the time with none, each pair side by side;"
            f" delayed jobs: due {counts.delayed_by:g} s after"
        )
        notes.append(
            f"  their enqueue, {counts.delayed_rate:g}/s, a worker process idling; sqlite at durability fast."
        )
    if any(m.startswith("rss_") for m in med):
        notes.append(
            f"RSS: one `jobq worker` process (concurrency {concurrencies[0]}) fed {_jobs(counts.rss_jobs)} no-op"
            " jobs in batches while it drains; psutil, sampled as the completed count passes each point."
        )
    if "huey" in peers:
        notes.append(
            "huey (sqlite): SqliteHuey, WAL, fsync=True (synchronous FULL, as sqlite); a huey Consumer with 1"
            " worker thread, default polling (0.1 s, backoff 1.15x); no batch enqueue API."
        )
    if "pgqueuer" in peers:
        notes.append(
            "pgqueuer (postgres): its schema installed per measurement (durable); processing on asyncpg"
            f" (AsyncpgDriver), QueueManager.run(batch_size=) {' and '.join(map(str, PGQ_BATCHES))}, the best"
            f" is its figure; enqueue and latency (batch_size={PGQ_BATCH}) on psycopg; enqueue with lists"
            " for the batch figure."
        )
    for peer, why in peers_missing.items():
        notes.append(f"No {PEER_LABELS[peer]} column: {why}.")
    if peers:
        notes.append("jobq/peer ratio columns: above 1x jobq is faster for rates, slower for latencies.")
    if postgres is not None:
        version = str(postgres["server_version"]).split()[0]
        notes.append(f"postgres: PostgreSQL {version} at {postgres['url']}, a fresh schema per measurement;")
        notes.append(
            f"  server fsync={postgres['fsync']}, synchronous_commit={postgres['synchronous_commit']},"
            f" full_page_writes={postgres['full_page_writes']}."
        )
        if postgres["fsync"] != "on" or postgres["synchronous_commit"] == "off":
            notes.append(
                "  Its commits do not wait for the disk, unlike sqlite (full): postgres/full compares"
                " unequal durability."
            )
    else:
        notes.append(
            f"No postgres column: set {pg.ENV_VARS[0]} (or {pg.ENV_VARS[1]}) to a postgresql:// URL"
            " to add one"
        )
        notes.append("  (bash .ci/postgres.sh start prints a URL for a throwaway local server).")
    return notes


def table_from_json(paths: list[Path]) -> list[str]:
    """The printed table of earlier runs, rebuilt from their JSON files. The
    first file gives the counts and the columns; a later one adds the cells
    the earlier ones lack (a separate ``--only rss`` run, say)."""
    documents = [json.loads(path.read_text()) for path in paths]
    first = documents[0]
    fields = dict(first["counts"])
    for name in ("concurrencies", "rss_checkpoints"):
        if name in fields:
            fields[name] = tuple(fields[name])
    counts = Counts(**fields)
    values: dict[str, dict[str, list[float]]] = {}
    for document in documents:
        for metric, per_backend in document["runs"].items():
            for backend, runs in per_backend.items():
                values.setdefault(metric, {}).setdefault(backend, runs)
    peers = first.get("peers") or {}
    lines, _ = build_table(
        Samples(values=values), counts, counts.concurrencies, first["environment"].get("postgres"),
        peers.get("measured", []), peers.get("missing", {}),
    )  # fmt: skip
    heading = [
        f"jobq bench of {document['started']}: {document['args'].get('only') or 'all'},"
        f" median of {document['counts']['runs']} run(s), {document['seconds']:.0f} s"
        for document in documents
    ]
    return [*heading, *lines]


def environment(postgres: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "postgres": postgres,
        "packages": {name: _version(name) for name in ("jobq", "huey", "pgqueuer", "psycopg")},
    }


def _version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def write_json(
    path: Path,
    *,
    samples: Samples,
    counts: Counts,
    args: dict[str, Any],
    table: list[dict[str, Any]],
    started: str,
    seconds: float,
    postgres: dict[str, Any] | None = None,
    peers: dict[str, Any] | None = None,
) -> None:
    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    document = {
        "started": started,
        "seconds": round(seconds, 1),
        "environment": environment(postgres),
        "peers": peers,
        "args": args,
        "counts": asdict(counts),
        "table": table,
        "medians": medians(samples),
        "runs": samples.values,
        "details": samples.details,
        "errors": samples.errors,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(clean(document), indent=2) + "\n")
    tmp.replace(path)
