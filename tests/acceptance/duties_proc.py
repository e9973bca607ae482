"""Child processes for the worker-duty tests (``test_worker_duties.py``).

``sys.executable -c BOOT <json config>`` runs a :class:`jobq.JobProcessor`
in ``processor.run()`` on the SQLite file ``db`` (or the queue ``url`` names) until SIGTERM, as
``proc.worker`` does, with handlers chosen by each job's ``data["do"]``:

- ``"record"`` (the default): sleeps ``data.get("sleep", 0)`` seconds (awaiting), then
  logs the execution;
- ``"block_loop"``: an ``async`` handler that blocks the event loop with
  ``time.sleep(data["seconds"])`` (a synchronous client call, CPU-bound
  code), then logs the execution;
- ``"crash"``: kills its worker (``os._exit(1)``);
- ``"wait_go"``: waits for the file ``go`` in the work directory, then logs.

Every handler start is logged in ``start-<name>.jsonl`` and every execution
that finished in ``exec-<name>.jsonl`` (see :mod:`proc`). Options:
``break_rescue`` makes every rescue sweep raise an error jobq does not know;
``give_up_after`` lowers how many failures in a row a duty survives.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from proc import HERE, Appender, _die, touch

BOOT = f"import sys; sys.path.insert(0, {str(HERE)!r}); import duties_proc; duties_proc.main()"


async def worker(cfg: dict[str, Any]) -> None:
    import jobq
    from jobq.processor import maintenance

    workdir, name = Path(cfg["dir"]), cfg["name"]
    exec_log = Appender(workdir / f"exec-{name}.jsonl")
    start_log = Appender(workdir / f"start-{name}.jsonl")
    if cfg.get("give_up_after"):
        maintenance.GIVE_UP_AFTER = int(cfg["give_up_after"])
    if cfg.get("url"):  # any backend (PostgreSQL)
        queue = await jobq.connect(cfg["url"], lease=cfg.get("lease", 30.0), worker_id=name)
    else:
        queue = jobq.SQLiteQueue(
            cfg["db"], lease=cfg.get("lease", 30.0), worker_id=name, busy_timeout=cfg.get("busy_timeout", 30.0)
        )
    if cfg.get("break_rescue"):

        async def broken(**_: Any) -> Any:
            raise RuntimeError("a rescue sweep that always fails")

        queue.store.expired = broken  # type: ignore[method-assign]
    processor = jobq.JobProcessor(
        queue,
        concurrency=cfg.get("concurrency", 4),
        poll_interval=cfg.get("poll_interval", 0.2),
        heartbeat_interval=cfg.get("heartbeat_interval", 1.0),
        rescue_interval=cfg.get("rescue_interval", 0.5),
        shutdown_timeout=cfg.get("shutdown_timeout", 30.0),
        retry_delays=[0.05],
        worker_id=name,
    )

    def entry(job: Any) -> dict[str, Any]:
        return {
            "id": job.id,
            "worker": name,
            "pid": os.getpid(),
            "attempts": job.attempts,
            "lost": job.lost_count,
        }

    @processor.handler("t")
    async def handle(job: Any) -> dict[str, Any]:
        start_log.write(entry(job))
        data = job.data if isinstance(job.data, dict) else {}
        do = data.get("do", "record")
        if do == "crash":
            os._exit(1)
        if do == "block_loop":
            time.sleep(data["seconds"])  # noqa: ASYNC251 - blocking the loop is the point
        elif do == "wait_go":
            while not (workdir / "go").exists():
                await asyncio.sleep(0.01)
        elif data.get("sleep"):
            await asyncio.sleep(data["sleep"])
        exec_log.write(entry(job))
        return {"by": name}

    processor.on("processor_started", lambda _: touch(workdir / f"ready-{name}"))
    try:
        await processor.run()
    finally:
        await queue.close()
    touch(workdir / f"stopped-{name}")


def main() -> None:
    cfg = json.loads(sys.argv[1])
    logging.basicConfig(
        stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        asyncio.run(worker(cfg))
    except BaseException:  # noqa: BLE001 - reported on stderr, exit 1 (as jobq worker exits)
        _die(1)
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(0)
