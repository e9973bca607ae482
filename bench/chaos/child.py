"""Child processes of the chaos scenarios: ``python -m bench.chaos.child JSON``.

``role`` is ``worker`` (jobq's real :class:`jobq.JobProcessor` in
``processor.run()``, stopping gracefully on SIGTERM) or ``producer`` (enqueues
``count`` jobs, alternating single enqueues and ``enqueue_many`` batches).
Both record what they did in their own ledger file (:mod:`bench.chaos.ledger`).

Every job has type ``chaos`` and a dict payload steering its handler:

- ``sleep``: seconds the handler sleeps (default 0); ``sleep_range``:
  ``[low, high]``, a sleep drawn uniformly, seeded by the job id;
  ``sleep_by_worker``: ``{worker name: seconds}``, overriding it on those workers;
- ``after_file``: a path; the handler waits until that file exists, then sleeps;
- ``poison``: ``"exit"`` (the handler calls ``os._exit(1)``, killing its
  worker) or ``"raise"`` (the handler raises on every attempt);
- ``block``: seconds the (async) handler blocks the worker's event loop
  with ``time.sleep``, as CPU-bound code or a synchronous client call does.

A worker's ``kill_at`` makes it SIGKILL itself at an exact point of the first
job it gets there: ``after_claim`` (the claim committed, nothing ran),
``in_handler`` (the handler started), ``before_complete`` (the handler
returned, the completion is not written) or ``after_complete`` (the completion
is written). The points are hooked from outside jobq, by wrapping the
methods of the queue's store object through which every claim and every
completion passes (see :func:`hook_queue`).
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import os
import random
import signal
import sys
import time
import traceback
from typing import Any

import jobq

from .ledger import LedgerWriter

JOB_TYPE = "chaos"
KILL_POINTS = ("after_claim", "in_handler", "before_complete", "after_complete")


def sigkill_self() -> None:
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def queue_options(cfg: dict[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {"worker_id": cfg["name"]}
    for key in ("lease", "max_lost_leases"):
        if cfg.get(key) is not None:
            options[key] = cfg[key]
    return options


def make_handler(cfg: dict[str, Any], ledger: LedgerWriter) -> Any:
    name, pid = cfg["name"], os.getpid()
    kill_in_handler = cfg.get("kill_at") == "in_handler"

    async def handle(job: jobq.Job[Any]) -> dict[str, Any]:
        data = job.data if isinstance(job.data, dict) else {}
        row = ledger.started(job.id, pid)
        if kill_in_handler:
            sigkill_self()
        poison = data.get("poison")
        if poison == "exit":
            os._exit(1)
        if "block" in data:
            time.sleep(data["block"])  # noqa: ASYNC251 - blocking the loop is the point
        if "after_file" in data:
            while not os.path.exists(data["after_file"]):  # noqa: ASYNC240 - a stat, as cheap as the sleep
                await asyncio.sleep(0.01)
        sleep = data.get("sleep", 0)
        if "sleep_range" in data:
            sleep = random.Random(job.id).uniform(*data["sleep_range"])
        sleep = data.get("sleep_by_worker", {}).get(name, sleep)
        if sleep:
            await asyncio.sleep(sleep)
        if poison == "raise":
            raise RuntimeError(f"poison job {job.id} fails on every attempt")
        ledger.ended(row)
        return {"by": name}

    return handle


def hook_queue(queue: jobq.Queue, cfg: dict[str, Any], ledger: LedgerWriter) -> None:
    """Wraps this process's store object (``queue.store``) so the ledger sees
    every claim and every completion outcome, and ``kill_at`` can strike at
    its point. Every path by which jobq claims jobs or writes completions
    (``claim``, ``settle``, and ``settle_and_claim``, which writes
    transitions and claims together) goes through these store methods; hooking the store rather than the processor keeps
    the points exact whichever of them the processor uses."""
    store = queue.store
    kill_at = cfg.get("kill_at")
    # A store may implement one hooked method with others (settle_and_claim
    # may call settle and claim): only the outermost call logs and kills, so
    # nothing is counted twice.
    inside = contextvars.ContextVar("inside_hooked_store_call", default=False)

    def outermost(method: Any) -> Any:
        def wrap(hooked: Any) -> Any:
            async def call(*args: Any, **kwargs: Any) -> Any:
                if inside.get():
                    return await method(*args, **kwargs)
                token = inside.set(True)
                try:
                    return await hooked(*args, **kwargs)
                finally:
                    inside.reset(token)

            return call

        return wrap

    def claimed(records: list[Any]) -> None:
        if records:
            ledger.claimed(record.id for record in records)
            if kill_at == "after_claim":
                sigkill_self()

    def completions(transitions: Any) -> list[Any]:
        return [t for t in transitions if t.status == "completed"]

    def before_completions(transitions: Any) -> None:
        if completions(transitions) and kill_at == "before_complete":
            sigkill_self()

    def completed(transitions: Any, outcomes: list[Any]) -> None:
        done = [
            (t.job_id, "ok" if not isinstance(outcome, jobq.JobqError) else type(outcome).__name__)
            for t, outcome in zip(transitions, outcomes, strict=True)
            if t.status == "completed"
        ]
        ledger.completions(done)
        if done and kill_at == "after_complete":
            sigkill_self()

    claim = store.claim

    @outermost(claim)
    async def claim_logged(request: Any) -> list[Any]:
        records = await claim(request)
        claimed(records)
        return list(records)

    settle = store.settle

    @outermost(settle)
    async def settle_logged(transitions: Any, **kwargs: Any) -> list[Any]:
        before_completions(transitions)
        outcomes = await settle(transitions, **kwargs)
        completed(transitions, outcomes)
        return list(outcomes)

    settle_and_claim = store.settle_and_claim

    @outermost(settle_and_claim)
    async def settle_and_claim_logged(transitions: Any, request: Any) -> tuple[Any, Any]:
        before_completions(transitions)
        outcomes, records = await settle_and_claim(transitions, request)
        if transitions:
            completed(transitions, outcomes)
        claimed(records)
        return outcomes, records

    store.claim = claim_logged
    store.settle = settle_logged
    store.settle_and_claim = settle_and_claim_logged

LOGGED_EVENTS = (
    "processor_started", "processor_stopped", "job_lost", "job_quarantined", "job_failed", "job_retry",
)  # fmt: skip


async def worker(cfg: dict[str, Any]) -> None:
    ledger = LedgerWriter(cfg["dir"], cfg["name"])
    queue = await jobq.connect(cfg["url"], **queue_options(cfg))
    hook_queue(queue, cfg, ledger)
    processor = jobq.JobProcessor(
        queue,
        concurrency=cfg.get("concurrency", 4),
        poll_interval=cfg.get("poll_interval", 0.5),
        heartbeat_interval=cfg.get("heartbeat_interval", 1.0),
        rescue_interval=cfg.get("rescue_interval", 0.5),
        shutdown_timeout=cfg.get("shutdown_timeout", 30.0),
        retry_delays=cfg.get("retry_delays", [0.05]),
        worker_id=cfg["name"],
        queues=cfg.get("queues"),
        prune_interval=None,
    )
    processor.handle(JOB_TYPE, make_handler(cfg, ledger))
    for event_name in LOGGED_EVENTS:
        processor.on(
            event_name,
            lambda event: ledger.event(event.name, event.job.id if event.job else None, event.error),
        )
    try:
        await processor.run()
    finally:
        await queue.close()


async def producer(cfg: dict[str, Any]) -> None:
    """Enqueues ``count`` jobs with payload ``data``, alternating single
    enqueues and batches of 2-40; ``rate`` (jobs/s) paces it. Each id is in
    the ledger once its enqueue call returned."""
    ledger = LedgerWriter(cfg["dir"], cfg["name"])
    rng = random.Random(cfg["name"])
    count, data, rate = int(cfg["count"]), cfg.get("data", {}), cfg.get("rate")
    loop = asyncio.get_running_loop()
    began = loop.time()
    async with jobq.connect(cfg["url"], **queue_options(cfg)) as queue:
        done = 0
        while done < count:
            if rate:
                await asyncio.sleep(max(0.0, began + done / rate - loop.time()))
            size = 1 if rate or rng.random() < 0.5 else min(count - done, rng.randint(2, 40))
            if size == 1:
                job = await queue.enqueue(JOB_TYPE, data, max_attempts=cfg.get("max_attempts", 3))
                ledger.enqueued([job.id])
            else:
                specs = [
                    jobq.NewJob(JOB_TYPE, data, max_attempts=cfg.get("max_attempts", 3)) for _ in range(size)
                ]
                ledger.enqueued(job.id for job in await queue.enqueue_many(specs))
            done += size


def main() -> None:
    cfg = json.loads(sys.argv[1])
    logging.basicConfig(
        stream=sys.stderr, level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        asyncio.run({"worker": worker, "producer": producer}[cfg["role"]](cfg))
    except BaseException:  # noqa: BLE001 - reported to the parent through stderr and the exit status
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)


if __name__ == "__main__":
    main()
