"""A job that runs past its lease, with real worker processes, on SQLite and
PostgreSQL: the worker running it renews the lease from its keeper thread, so
another worker sweeping for expired leases every 0.05 s never takes it, and
the job runs exactly once. And the other side: a worker frozen past its lease
(SIGSTOP) has its job rescued and run elsewhere; when it wakes, its renewal
finds the lease gone, says so, and its late outcome is not recorded.

Workers are ``duties_proc`` children on the queue ``url`` (see there).
"""

from __future__ import annotations

import asyncio
import collections
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from duties_proc import BOOT
from proc import Child, Children, read_jsonl, touch, wait_until
from suite_parts import postgres_param

import jobq

pytestmark = pytest.mark.slow

LEASE = 1.0  # seconds
SWEEP = 0.05  # seconds between the other worker's rescue sweeps


@pytest.fixture(params=["sqlite", postgres_param()])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def spawn(children: Children, url: str, name: str, **cfg: Any) -> Child:
    cfg = {"dir": str(children.workdir), "url": url, "name": name, **cfg}
    out, err = children.workdir / f"{name}.out", children.workdir / f"{name}.err"
    with open(out, "wb") as out_file, open(err, "wb") as err_file:
        popen = subprocess.Popen(
            [sys.executable, "-c", BOOT, json.dumps(cfg)], stdout=out_file, stderr=err_file, stdin=subprocess.DEVNULL
        )
    child = Child(name, popen, out, err)
    children.all.append(child)
    return child


def call(url: str, verb: str, *args: Any) -> Any:
    async def go() -> Any:
        async with jobq.connect(url) as queue:
            return await getattr(queue, verb)(*args)

    return asyncio.run(go())


def started(workdir: Path) -> collections.Counter[str]:
    return collections.Counter(f"{e['id']}@{e['worker']}" for e in read_jsonl(workdir, "start"))


def ready(children: Children, *workers: Child) -> None:
    wait_until(
        lambda: all((children.workdir / f"ready-{w.name}").exists() for w in workers),
        "the workers to start",
        children=children,
        alive=workers,
    )


def stop(*workers: Child) -> None:
    for worker in workers:
        worker.signal(signal.SIGTERM)
    for worker in workers:
        assert worker.wait(60) == 0, worker.describe()


def test_a_job_running_past_its_lease_runs_once_while_another_worker_sweeps(
    children: Children, workdir: Path, queue_url: str
) -> None:
    """A 1 s lease, a 3 s job, a second worker sweeping every 0.05 s: the
    keeper's renewals hold the job, so it runs once, never rescued."""
    call(queue_url, "size")  # creates the schema before two workers race to
    runner = spawn(children, queue_url, "runner", lease=LEASE, heartbeat_interval=0.25, rescue_interval=60)
    ready(children, runner)
    job = call(queue_url, "enqueue", "t", {"sleep": 3 * LEASE})
    wait_until(lambda: started(workdir), "the runner to start the job", children=children, alive=[runner])
    sweeper = spawn(
        children, queue_url, "sweeper", lease=LEASE, heartbeat_interval=0.25, rescue_interval=SWEEP, poll_interval=SWEEP
    )
    ready(children, sweeper)

    def done() -> bool:
        found = call(queue_url, "get_job", job.id)
        return found is not None and found.status is jobq.JobStatus.COMPLETED

    wait_until(done, "the job to complete", children=children, alive=[runner, sweeper])
    stop(runner, sweeper)
    final = call(queue_url, "get_job", job.id)
    assert final.result == {"by": "runner"}
    assert (final.attempts, final.lost_count) == (0, 0), final
    assert started(workdir) == {f"{job.id}@runner": 1}  # never started again elsewhere
    assert [e["id"] for e in read_jsonl(workdir, "exec")] == [job.id]
    assert "lost the lease" not in runner.stderr(), runner.describe()


def test_a_renewal_that_finds_the_lease_lost_says_so_and_records_nothing(
    children: Children, workdir: Path, queue_url: str
) -> None:
    """The runner is frozen past its lease; the sweeper rescues the job and
    runs it. Woken, the runner's next renewal finds the lease gone (a
    warning), and its handler's late outcome changes nothing."""
    call(queue_url, "size")
    runner = spawn(children, queue_url, "runner", lease=LEASE, heartbeat_interval=0.25, rescue_interval=60)
    ready(children, runner)
    job = call(queue_url, "enqueue", "t", {"do": "wait_go"})
    wait_until(lambda: started(workdir), "the runner to start the job", children=children, alive=[runner])
    runner.signal(signal.SIGSTOP)
    try:
        sweeper = spawn(children, queue_url, "sweeper", lease=30.0, rescue_interval=SWEEP, poll_interval=SWEEP)
        wait_until(
            lambda: started(workdir)[f"{job.id}@sweeper"] == 1,
            "the sweeper to rescue and start the job",
            children=children,
            alive=[sweeper],
        )
    finally:
        runner.signal(signal.SIGCONT)
    wait_until(
        lambda: f"lost the lease on job {job.id}" in runner.stderr(),
        "the runner's renewal to find its lease lost",
        children=children,
        alive=[runner, sweeper],
    )
    touch(workdir / "go")

    def done() -> bool:
        ran = [e["worker"] for e in read_jsonl(workdir, "exec")]
        return sorted(ran) == ["runner", "sweeper"]

    wait_until(done, "both handlers to finish", children=children, alive=[runner, sweeper])
    stop(runner, sweeper)
    final = call(queue_url, "get_job", job.id)
    assert final.status is jobq.JobStatus.COMPLETED and final.result == {"by": "sweeper"}, final
    assert (final.attempts, final.lost_count) == (1, 1), final
