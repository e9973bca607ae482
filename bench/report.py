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
from .config import BACKENDS, POSTGRES, Counts
from .runner import Samples

RESULTS_DIR = Path(__file__).resolve().parent / "results"
COLUMNS = tuple(BACKENDS)  # memory, sqlite, sqlite-fast; postgres joins when a server is set
#: Ratio column -> (numerator backend, denominator backend).
RATIOS = {"fast/full": ("sqlite-fast", "sqlite"), "memory/full": ("memory", "sqlite")}
PG_RATIO = {"postgres/full": (POSTGRES, "sqlite")}


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


def derive(
    samples: Samples, med: dict[str, dict[str, float]], columns: tuple[str, ...] = COLUMNS
) -> dict[str, dict[str, Any]]:
    """Figures computed from medians: the best concurrency, jobq/raw ratios."""
    out: dict[str, dict[str, Any]] = {"process_best": {}, "ratio_enqueue": {}, "ratio_process": {}}
    process = {m: v for m, v in med.items() if m.startswith("process_c")}
    for backend in columns:
        candidates = [(v[backend], m) for m, v in process.items() if backend in v]
        if candidates:
            rate, metric = max(candidates)
            out["process_best"][backend] = {
                "value": rate, "concurrency": int(metric.removeprefix("process_c")),
                "spread": spread(samples.values[metric][backend]),
            }  # fmt: skip
        pairs = [("ratio_enqueue", "enqueue", "raw_insert")]
        if backend in out["process_best"]:
            best = f"process_c{out['process_best'][backend]['concurrency']}"
            pairs.append(("ratio_process", best, "raw_claim_complete"))
        for name, jobq_metric, raw_metric in pairs:
            jobq_runs = samples.values.get(jobq_metric, {}).get(backend)
            raw_runs = samples.values.get(raw_metric, {}).get(backend)
            if jobq_runs and raw_runs:
                # Paired run by run: each raw figure was taken right beside its jobq figure.
                ratios = [a / b for a, b in zip(jobq_runs, raw_runs)]
                out[name][backend] = {"value": statistics.median(ratios), "spread": spread(ratios)}
    return out


def _rows(counts: Counts, concurrencies: tuple[int, ...]) -> list[tuple[str, str, str]]:
    rows = [
        ("enqueue", "enqueue, one await per job", "jobs/s"),
        ("enqueue_many", f"enqueue_many, batches of {counts.batch_size}", "jobs/s"),
    ]
    rows += [(f"process_c{c}", f"process, 1 worker, concurrency {c}", "jobs/s") for c in concurrencies]
    if len(concurrencies) > 1:
        rows.append(("process_best", "process, best concurrency", "jobs/s"))
    rows += [
        ("latency_p50", f"enqueue->start p50 @ {counts.latency_rate:g}/s", "ms"),
        ("latency_p99", f"enqueue->start p99 @ {counts.latency_rate:g}/s", "ms"),
        ("raw_insert", "raw sqlite3 INSERT, 1 per txn", "rows/s"),
        ("ratio_enqueue", "  jobq enqueue / raw INSERT", "ratio"),
        ("raw_claim_complete", "raw sqlite3 claim+complete, 1 per txn", "jobs/s"),
        ("ratio_process", "  jobq process (best) / raw claim+complete", "ratio"),
    ]
    return rows


def _num(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value:.2f}" if value < 100 else f"{value:,.0f}"
    if unit == "ratio":
        return f"{value:.2f}x"
    return f"{value:,.0f}"


def build_table(
    samples: Samples,
    counts: Counts,
    concurrencies: tuple[int, ...],
    postgres: dict[str, Any] | None = None,
) -> tuple[list[str], list[dict[str, Any]]]:
    """Printed lines, and the same rows as data for the JSON file. ``postgres``
    (the server's description, see :meth:`bench.pg.Server.describe`) adds the
    postgres column and its ratio to sqlite (full)."""
    med = medians(samples)
    columns = COLUMNS + ((POSTGRES,) if postgres is not None else ())
    ratio_columns = {**RATIOS, **(PG_RATIO if postgres is not None else {})}
    derived = derive(samples, med, columns)
    header = ["figure", "unit", *columns, *ratio_columns]
    lines: list[list[str]] = []
    data: list[dict[str, Any]] = []
    notes: list[str] = []
    for metric, label, unit in _rows(counts, concurrencies):
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
    if any(m.startswith("latency") for m in med):
        notes.append("* memory: producer and processor in one process and event loop (in-process latency);")
        if postgres is not None:
            notes.append("  sqlite, postgres: the parent enqueues, a separate worker process runs the jobs")
            notes.append(
                "  (sqlite: the worker polls PRAGMA data_version; postgres: woken by LISTEN/NOTIFY)."
            )
        else:
            notes.append("  sqlite: the parent enqueues, a separate worker process runs the jobs.")
    notes.append("Cells are medians over runs; ±x% is half the range across runs relative to the median.")
    notes.append("raw rows: sqlite column = synchronous FULL, sqlite-fast column = NORMAL (WAL, same table);")
    notes.append(
        "  ratio rows are medians of per-run ratios (each raw figure is taken beside its jobq figure)."
    )
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
    widths = [max(len(row[i]) for row in [header, *lines]) for i in range(len(header))]
    rule = "  ".join("-" * w for w in widths)

    def fmt(row: list[str]) -> str:
        return "  ".join(
            cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))
        )

    return [fmt(header), rule, *map(fmt, lines), rule, *notes], data


def environment(postgres: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "postgres": postgres,
    }


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
