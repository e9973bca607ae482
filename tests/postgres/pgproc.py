"""Worker processes on PostgreSQL for the multi-process tests.

A child is started with ``sys.executable -c BOOT <json config>``. It runs a
:class:`jobq.JobProcessor` on ``config["url"]`` until SIGTERM and records, with
unbuffered ``O_APPEND`` writes (nothing written is lost if it dies):

- ``exec-<name>.log``: one job id per handler run that finished;
- ``runs-<name>.jsonl``: the same runs, each with the job's attempts and
  lost_count as claimed and the time (``at``);
- ``done-<name>.log``: one job id per ``job_completed`` event, that is per
  completion the store confirmed;
- ``ready-<name>``: touched once the processor runs.

With ``config["command"]`` ``"produce"`` or ``"work"``, the child is
instead k-msg's producer or worker on the same table (see
``tests/kmsg_sql.py``).

jobq's warnings and any traceback go to the child's stderr.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BOOT = f"import sys; sys.path.insert(0, {str(HERE)!r}); import pgproc; pgproc.main()"
if str(HERE.parent) not in sys.path:  # tests/, for kmsg_sql in a child process
    sys.path.insert(0, str(HERE.parent))

import kmsg_sql  # noqa: E402


class Worker:
    def __init__(self, name: str, popen: subprocess.Popen[bytes], err: Path) -> None:
        self.name, self.popen, self.err = name, popen, err

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stderr(self) -> str:
        return self.err.read_text(errors="replace") if self.err.exists() else ""


def spawn(workdir: Path, name: str, config: dict[str, Any]) -> Worker:
    config = {"dir": str(workdir), "name": name, **config}
    err = workdir / f"{name}.err"
    with open(err, "wb") as err_file:
        popen = subprocess.Popen(
            [sys.executable, "-c", BOOT, json.dumps(config)],
            stdout=subprocess.DEVNULL,
            stderr=err_file,
            stdin=subprocess.DEVNULL,
        )
    return Worker(name, popen, err)


def counts(workdir: Path, prefix: str) -> collections.Counter[str]:
    """How many times each job id appears in ``<prefix>-*.log``."""
    found: collections.Counter[str] = collections.Counter()
    for path in workdir.glob(f"{prefix}-*.log"):
        found.update(line for line in path.read_text().split("\n") if line)
    return found


def kill_all(workers: list[Worker]) -> None:
    for worker in workers:
        if worker.alive():
            with contextlib.suppress(ProcessLookupError):
                worker.popen.kill()
    for worker in workers:
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.popen.wait(30)


class _Appender:
    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(self, line: str) -> None:
        os.write(self.fd, (line + "\n").encode())


async def _run(cfg: dict[str, Any]) -> None:
    import jobq

    workdir, name = Path(cfg["dir"]), cfg["name"]
    executed = _Appender(workdir / f"exec-{name}.log")
    runs = kmsg_sql.Log(workdir / f"runs-{name}.jsonl")
    done = _Appender(workdir / f"done-{name}.log")
    options = {k: cfg[k] for k in ("foreign_claim_timeout",) if k in cfg}
    queue = jobq.PostgresQueue(
        cfg["url"], lease=cfg.get("lease", 30.0), pool_size=cfg.get("pool_size", 10), worker_id=name, **options
    )
    processor = jobq.JobProcessor(
        queue,
        concurrency=cfg.get("concurrency", 16),
        poll_interval=cfg.get("poll_interval", 1.0),
        heartbeat_interval=cfg.get("heartbeat_interval", 10.0),
        rescue_interval=cfg.get("rescue_interval", 1.0),
        retry_delays=[0.1],
        worker_id=name,
    )

    async def record(job: Any) -> None:
        executed.write(job.id)
        runs.write({"id": job.id, "worker": name, "attempts": job.attempts, "lost_count": job.lost_count,
                    "at": time.time()})  # fmt: skip

    processor.handle("t", record)
    processor.on("job_completed", lambda event: done.write(event.job.id if event.job else "?"))
    processor.on("processor_started", lambda _: (workdir / f"ready-{name}").touch())
    try:
        await processor.run()
    finally:
        await queue.close()


def main() -> None:
    cfg = json.loads(sys.argv[1])
    logging.basicConfig(
        stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        command = cfg.get("command", "worker")
        if command == "worker":
            asyncio.run(_run(cfg))
        else:  # k-msg's side: "produce" or "work" (see tests/kmsg_sql.py)
            getattr(kmsg_sql, command)(cfg)
    except BaseException:  # noqa: BLE001 - reported to the parent through stderr and the exit status
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(3)
    sys.exit(0)
