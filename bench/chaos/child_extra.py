"""More child processes for the fault scenarios: ``python -m bench.chaos.child_extra JSON``.

Roles (each writes its ledger as :mod:`bench.chaos.child` does):

- ``worker``: :func:`bench.chaos.child.worker` itself, the same real
  ``JobProcessor``, hooks and handler; with ``cap_pages`` every SQLite
  connection this process opens to the queue's file gets ``PRAGMA
  max_page_count`` (see :func:`cap_sqlite`), so the database is "full" for
  it exactly when it is for every other capped process.
- ``producer``: enqueues ``count`` ``chaos`` jobs in batches of ``batch``
  (``enqueue`` for a batch of 1, else ``enqueue_many``), paced at ``rate``
  jobs/s if given (a pace that never bursts to catch up after a refusal). An enqueue that raises a :class:`jobq.JobqError` is
  recorded as an ``enqueue_failed`` event (``"<class>: <message>"``) and the
  same batch is tried again after ``retry_pause`` seconds, until it is
  acknowledged; only then are its ids recorded as enqueued. Any other
  exception kills the producer (exit 1), which is how a raw driver error
  escaping jobq shows. Also takes ``cap_pages``.
- ``lean_worker``: the long run's worker: a ``JobProcessor`` with a no-op
  handler and no ledger rows per job (a million of them would measure the
  ledger). It counts handler executions in memory, records the count as a
  ``progress`` event (the count in ``error``) every ``report_interval``
  seconds (0.5), and writes ``{"executions": n}`` to
  ``<dir>/<name>.count.json`` when it stops.
- ``feeder``: the long run's producer: enqueues ``count`` jobs in batches of
  ``batch`` through ``enqueue_many``, waiting while more than ``backlog``
  jobs are waiting, so the table never needs ``count`` rows up front. Writes
  ``{"enqueued": n}`` to ``<dir>/<name>.count.json`` after every batch.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sqlite3
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import jobq

from . import child
from .child import JOB_TYPE
from .ledger import LedgerWriter


def sqlite_path(url: str) -> str | None:
    """The file of a ``sqlite:///`` URL (without its query), else None."""
    if not url.startswith("sqlite:///"):
        return None
    return url[len("sqlite:///") :].split("?", 1)[0]


def cap_sqlite(path: str, pages: int) -> None:
    """Gives every SQLite connection this process opens to ``path`` a
    ``PRAGMA max_page_count`` of ``pages``. The limit is a property of each
    connection, not of the file; jobq opens its own connections, so this
    wraps :func:`sqlite3.connect` (which jobq calls by that name) for this
    process only. Other files (the ledger) are untouched."""
    target = os.path.realpath(path)
    real_connect = sqlite3.connect

    def connect(database: Any, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn: sqlite3.Connection = real_connect(database, *args, **kwargs)
        if isinstance(database, (str, os.PathLike)) and os.path.realpath(database) == target:
            conn.execute(f"PRAGMA max_page_count = {int(pages)}")
        return conn

    sqlite3.connect = connect  # type: ignore[assignment]


def apply_cap(cfg: dict[str, Any]) -> None:
    path = sqlite_path(cfg["url"])
    if cfg.get("cap_pages") and path:
        cap_sqlite(path, int(cfg["cap_pages"]))


async def worker(cfg: dict[str, Any]) -> None:
    apply_cap(cfg)
    await child.worker(cfg)


async def producer(cfg: dict[str, Any]) -> None:
    apply_cap(cfg)
    ledger = LedgerWriter(cfg["dir"], cfg["name"])
    count, batch, rate = int(cfg["count"]), int(cfg.get("batch", 10)), cfg.get("rate")
    data, pause = cfg.get("data", {}), float(cfg.get("retry_pause", 0.2))
    max_attempts = cfg.get("max_attempts", 3)
    loop = asyncio.get_running_loop()
    next_at = loop.time()
    async with jobq.connect(cfg["url"], **child.queue_options(cfg)) as queue:
        done = 0
        while done < count:
            if rate:
                await asyncio.sleep(max(0.0, next_at - loop.time()))
            size = min(batch, count - done)
            while True:
                try:
                    if size == 1:
                        ids = [(await queue.enqueue(JOB_TYPE, data, max_attempts=max_attempts)).id]
                    else:
                        specs = [jobq.NewJob(JOB_TYPE, data, max_attempts=max_attempts) for _ in range(size)]
                        ids = [job.id for job in await queue.enqueue_many(specs)]
                except jobq.JobqError as exc:
                    ledger.event("enqueue_failed", None, f"{type(exc).__name__}: {exc}")
                    await asyncio.sleep(pause)
                    continue
                break
            ledger.enqueued(ids)
            done += size
            if rate:  # no catching up after a refusal: the run keeps its pace, with jobs left for later
                next_at = max(next_at + size / rate, loop.time())


def _write_count(cfg: dict[str, Any], value: dict[str, int]) -> None:
    path = Path(cfg["dir"]) / f"{cfg['name']}.count.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value))
    os.replace(tmp, path)


async def lean_worker(cfg: dict[str, Any]) -> None:
    ledger = LedgerWriter(cfg["dir"], cfg["name"])
    executions = 0

    async def noop(job: jobq.Job[Any]) -> None:
        nonlocal executions
        executions += 1

    queue = await jobq.connect(cfg["url"], **child.queue_options(cfg))
    processor = jobq.JobProcessor(
        queue,
        concurrency=cfg.get("concurrency", 16),
        poll_interval=cfg.get("poll_interval", 0.5),
        worker_id=cfg["name"],
        prune_interval=None,
    )
    processor.handle(JOB_TYPE, noop)
    processor.on("processor_started", lambda event: ledger.event("processor_started"))

    async def report() -> None:  # through the ledger's open connection: no file opened per report
        while True:
            await asyncio.sleep(float(cfg.get("report_interval", 0.5)))
            ledger.event("progress", None, str(executions))

    reporter = asyncio.create_task(report())
    try:
        await processor.run()
    finally:
        reporter.cancel()
        await queue.close()
        _write_count(cfg, {"executions": executions})
        ledger.event("processor_stopped")


async def feeder(cfg: dict[str, Any]) -> None:
    count, batch, backlog = int(cfg["count"]), int(cfg.get("batch", 500)), int(cfg.get("backlog", 5_000))
    async with jobq.connect(cfg["url"], **child.queue_options(cfg)) as queue:
        done = 0
        while done < count:
            while await queue.size() > backlog:
                await asyncio.sleep(0.02)
            size = min(batch, count - done)
            await queue.enqueue_many([jobq.NewJob(JOB_TYPE, {}) for _ in range(size)])
            done += size
            _write_count(cfg, {"enqueued": done, "at": int(time.time())})


def spawn(fleet: Any, role: str, name: str, **config: Any) -> Any:
    """Starts a child of this module in ``fleet`` (a
    :class:`bench.chaos.harness.Fleet`), as ``Fleet.worker`` does for
    :mod:`bench.chaos.child`: same config, environment and stderr file, and
    the child joins ``fleet.children`` (so ``check_alive``, ``stop_all``,
    ``unexpected_exits`` and ``close`` cover it)."""
    import subprocess

    from .harness import ROOT, Child

    config = {"role": role, "name": name, "dir": str(fleet.workdir), "url": fleet.url, **config}
    err = fleet.workdir / f"{name}.err"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    with open(err, "wb") as err_file:
        popen = subprocess.Popen(
            [sys.executable, "-m", "bench.chaos.child_extra", json.dumps(config)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err_file,
        )
    started = Child(name, role if role != "lean_worker" else "worker", config, popen, err)
    fleet.children.append(started)
    return started


ROLES = {"worker": worker, "producer": producer, "lean_worker": lean_worker, "feeder": feeder}


def main() -> None:
    cfg = json.loads(sys.argv[1])
    logging.basicConfig(
        stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        asyncio.run(ROLES[cfg["role"]](cfg))
    except BaseException:  # noqa: BLE001 - reported to the parent through stderr and the exit status
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)


if __name__ == "__main__":
    main()
