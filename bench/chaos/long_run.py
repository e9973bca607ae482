"""Scenario 13, long run: ``jobs`` jobs through one worker process, resources flat.

One worker process (:mod:`bench.chaos.child_extra`'s ``lean_worker``: jobq's
``JobProcessor``, concurrency 16, a no-op handler) runs every job; a feeder
process enqueues them in ``enqueue_many`` batches of 500, keeping at most
5,000 waiting, so the table never needs every row up front (finished rows
stay, as they do under the default retention of a day). The parent samples
the worker from outside (psutil) every ``sample_interval`` seconds: resident
memory (RSS), open file descriptors, threads, and the jobs it has run so
far (its ``progress`` events).

Promises, comparing the warm-up window (samples between ``warm`` and twice
``warm`` of the jobs run; the largest value in it) with the end (the
largest value over the last 10% of the jobs): RSS at the end no more than
the warm-up's plus 20% or 10 MiB, whichever is larger; file descriptors and
threads no more than the warm-up's plus ``slack`` (2: a connection pool may
open one more connection, and with it a resolver thread, later than the
warm-up; a leak of one per thousand jobs would still be many times that);
every job completed once (0 lost, 0 duplicated); the worker never exited.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from .child_extra import spawn
from .harness import DEADLINE, Backend, Fleet, Result, status_counts, wait_until

MIB = 1024 * 1024


@dataclass(frozen=True)
class Size:
    jobs: int
    warm: float = 0.10  # the fraction of the jobs after which the worker counts as warm
    sample_interval: float = 0.5
    concurrency: int = 16
    batch: int = 500
    backlog: int = 5_000
    slack: int = 2  # file descriptors or threads allowed beyond the warm-up's


SIZES = {
    "ci": Size(jobs=30_000),
    "full": Size(jobs=1_000_000, sample_interval=2.0),
}


@dataclass(frozen=True)
class Sample:
    at: float
    jobs: int  # jobs the worker had run
    rss: int  # bytes
    fds: int
    threads: int


def sample(process: psutil.Process, jobs: int) -> Sample:
    with process.oneshot():
        return Sample(time.time(), jobs, process.memory_info().rss, process.num_fds(), process.num_threads())


def run(backend: Backend, workdir: Path, size: Size) -> list[Result]:
    url = backend.fresh_url(workdir, "long_run")
    samples: list[Sample] = []
    with Fleet(workdir, url) as fleet:
        worker = spawn(fleet, "lean_worker", "w0", concurrency=size.concurrency)
        fleet.wait_ready(worker)
        process = psutil.Process(worker.pid)
        samples.append(sample(process, 0))
        began = time.monotonic()
        feeder = spawn(fleet, "feeder", "feeder", count=size.jobs, batch=size.batch, backlog=size.backlog)

        def progress() -> int:
            events = fleet.ledger.events("progress")
            return int(events[-1].error or 0) if events else 0

        deadline = max(DEADLINE, size.jobs / 100)  # seconds; generous: 100 jobs/s
        while True:
            done = progress()
            samples.append(sample(process, done))
            if done >= size.jobs:
                break
            fleet.check_alive()
            if time.monotonic() - began > deadline:
                raise AssertionError(
                    f"timed out after {deadline:g} s: the worker ran {done} of {size.jobs} jobs"
                )
            time.sleep(size.sample_interval)
        seconds = time.monotonic() - began
        wait_until(lambda: feeder.popen.poll() is not None, "the feeder to finish", fleet=fleet)
        alive = worker.alive()
        codes = fleet.stop_all()
        counts = status_counts(url)
        executions = json.loads((workdir / "w0.count.json").read_text())["executions"]
        unexpected = fleet.unexpected_exits()

    warm_from, warm_to = size.jobs * size.warm, size.jobs * 2 * size.warm
    window = [s for s in samples if warm_from <= s.jobs <= warm_to]
    if not window:  # the warm-up passed between two samples: the first sample after it
        window = [next(s for s in samples if s.jobs >= warm_from)]
    end = [s for s in samples if s.jobs >= size.jobs * 0.9]

    def peak(rows: list[Sample], attr: str) -> int:
        return max(int(getattr(s, attr)) for s in rows)

    warm = {a: peak(window, a) for a in ("rss", "fds", "threads")}
    final = {a: peak(end, a) for a in ("rss", "fds", "threads")}
    start = {a: int(getattr(samples[0], a)) for a in ("rss", "fds", "threads")}
    rss_bound = warm["rss"] + max(warm["rss"] // 5, 10 * MIB)
    completed = counts.get("completed", 0)
    lost = size.jobs - completed
    result = Result(
        "13 long run",
        backend.name,
        size.jobs,
        0,
        max(lost, 0),
        max(executions - size.jobs, 0),
        None,
        f"RSS {start['rss'] / MIB:.1f} -> {warm['rss'] / MIB:.1f} (warm) -> {final['rss'] / MIB:.1f} MiB;"
        f" fds {start['fds']}/{warm['fds']}/{final['fds']}; threads {start['threads']}/{warm['threads']}/"
        f"{final['threads']}; {size.jobs / seconds:,.0f} jobs/s",
        details={
            "start": start,
            "warm": warm,
            "end": final,
            "seconds": round(seconds, 1),
            "executions": executions,
            "counts": counts,
            "samples": [(round(s.at, 2), s.jobs, s.rss, s.fds, s.threads) for s in samples],
            "exit_codes": codes,
        },
    )
    result.check(completed == size.jobs, f"{completed} of {size.jobs} jobs completed")
    result.check(executions == size.jobs, f"{executions} handler executions for {size.jobs} jobs")
    result.check(
        final["rss"] <= rss_bound, f"RSS grew to {final['rss'] / MIB:.1f} MiB > {rss_bound / MIB:.1f} MiB"
    )
    result.check(
        final["fds"] <= warm["fds"] + size.slack, f"open files grew from {warm['fds']} to {final['fds']}"
    )
    result.check(
        final["threads"] <= warm["threads"] + size.slack,
        f"threads grew from {warm['threads']} to {final['threads']}",
    )
    result.check(alive and codes.get("w0") == 0, f"the worker exited (exit code {codes.get('w0')})")
    result.check(not unexpected, "a child exited with an error")
    return [result]
