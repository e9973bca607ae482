"""The task API across real processes, on SQLite and PostgreSQL:

- ``jobq worker MODULE:APP --queues ...`` runs an app's tasks; every
  supported type goes from the caller to the worker process and back;
- a worker takes only its queues, and goes on past jobs it cannot run;
- a synchronous queue and ``defer_sync`` opened before ``os.fork()`` work
  in the child and in the parent (gunicorn's ``--preload``).
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

import jobq
from jobq import JobStatus

pytestmark = [pytest.mark.slow, pytest.mark.shared_store]

DEADLINE = 120.0  # seconds; generous, a pass never comes near it

TASKS = '''
import dataclasses
import datetime as dt
import decimal
import enum
import os
import uuid
from typing import NamedTuple

import pydantic

import jobq

app = jobq.App(os.environ["TASKS_URL"])


class Tier(enum.Enum):
    FREE = "free"
    PAID = "paid"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Point(NamedTuple):
    x: int
    y: int


@dataclasses.dataclass
class Line:
    start: Point
    end: Point
    label: str | None = None


class Customer(pydantic.BaseModel):
    name: str
    since: dt.date
    tags: list[str] = []


@dataclasses.dataclass
class Everything:
    at: dt.datetime
    naive: dt.datetime
    day: dt.date
    clock: dt.time
    span: dt.timedelta
    key: uuid.UUID
    cost: decimal.Decimal
    tier: Tier
    level: Level
    line: Line
    customer: Customer
    names: set[str]
    frozen: frozenset[int]
    pair: tuple[int, str]
    stamps: list[dt.datetime]
    keys: dict[str, uuid.UUID]
    blob: bytes
    nothing: int | None


@app.task(name="typed.echo", queue="typed")
async def echo(value: Everything, note: str = "") -> Everything:
    assert isinstance(value.at, dt.datetime) and isinstance(value.customer, Customer)
    assert isinstance(value.tier, Tier) and isinstance(value.key, uuid.UUID)
    return value


@app.task(name="typed.when", queue="typed")
def when(at: dt.datetime, by: dt.timedelta) -> dt.datetime:
    return at + by


@app.task(name="other.never", queue="other")
def never() -> None: ...
'''


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("tasks_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["tasks_under_test"] = module
    spec.loader.exec_module(module)
    return module


def child_env(tmp_path: Path, url: str) -> dict[str, str]:
    paths = [str(tmp_path), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "TASKS_URL": url, "PYTHONPATH": os.pathsep.join(paths)}


def everything(module: Any) -> Any:
    import datetime as dt
    import decimal
    import uuid

    return module.Everything(
        at=dt.datetime(2026, 12, 7, 9, 30, 15, 250000, tzinfo=dt.UTC),
        naive=dt.datetime(2026, 1, 2, 3, 4, 5),
        day=dt.date(2026, 2, 28),
        clock=dt.time(23, 59, 1),
        span=dt.timedelta(days=1, seconds=5, microseconds=7),
        key=uuid.uuid4(),
        cost=decimal.Decimal("12345.678901234567890"),
        tier=module.Tier.PAID,
        level=module.Level.HIGH,
        line=module.Line(module.Point(1, 2), module.Point(-3, 4), "diagonal"),
        customer=module.Customer(name="Minji", since=dt.date(2020, 5, 1), tags=["vip"]),
        names={"a", "b"},
        frozen=frozenset({1, 2, 3}),
        pair=(7, "seven"),
        stamps=[dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.datetime(2027, 6, 30, 12, tzinfo=dt.UTC)],
        keys={"one": uuid.uuid4()},
        blob=b"\x00\xffbytes",
        nothing=None,
    )


def start_worker(tmp_path: Path, url: str, *args: str) -> subprocess.Popen[bytes]:
    """``jobq worker`` in a process of its own, its stderr in ``worker.err``."""
    with open(tmp_path / "worker.err", "w") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "jobq", "worker", *args],
            cwd=tmp_path,
            env=child_env(tmp_path, url),
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


async def test_every_supported_type_round_trips_through_a_worker_process(
    queue_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TASKS_URL", queue_url)
    (tmp_path / "taskapp.py").write_text(textwrap.dedent(TASKS))
    module = load(tmp_path / "taskapp.py")
    app: jobq.App = module.app
    value = everything(module)
    echoed = await module.echo.defer(value, note="all of them")
    import datetime as dt

    later = await module.when.defer(dt.datetime(2026, 3, 29, 1, 30, tzinfo=dt.UTC), dt.timedelta(hours=2))
    elsewhere = await module.never.defer()
    queue = await app.open()
    stray = await queue.enqueue("typed.gone", {}, queue="typed")  # no such task at the worker
    mismatch = await queue.enqueue("typed.when", {"at": "not a time", "by": 1}, queue="typed")
    worker = start_worker(tmp_path, queue_url, "taskapp:app", "--queues", "typed,default", "--concurrency", "4")
    try:
        assert await echoed.result(timeout=DEADLINE) == value
        assert await later.result(timeout=DEADLINE) == dt.datetime(2026, 3, 29, 3, 30, tzinfo=dt.UTC)
        gone = await queue.wait(stray.id, timeout=DEADLINE)
        bad = await queue.wait(mismatch.id, timeout=DEADLINE)
        assert worker.poll() is None, (tmp_path / "worker.err").read_text()
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0, (tmp_path / "worker.err").read_text()
    assert gone.status is JobStatus.FAILED and gone.error == "No handler registered for job type: typed.gone"
    assert bad.status is JobStatus.FAILED and "argument 'at' does not fit datetime" in (bad.error or "")
    assert bad.error_type == "ArgumentMismatch"
    # Not in the worker's queues: never taken.
    assert (await elsewhere.refresh()).status is JobStatus.PENDING
    await app.close()


FORK_SCRIPT = '''
import os, sys
import jobq

url = sys.argv[1]
app = jobq.App(url)

@app.task(name="forked.note")
def note(who: str) -> str:
    return who

queue = jobq.connect_sync(url)
queue.enqueue("forked.plain", {"who": "parent before fork"})
note.defer_sync("parent before fork")
pid = os.fork()
if pid == 0:
    try:
        queue.enqueue("forked.plain", {"who": "child"})
        note.defer_sync("child")
        assert queue.get_job(note.defer_sync("child again").id) is not None
        queue.close()
        app.close_sync()
    except BaseException as exc:
        print(f"child failed: {exc!r}", file=sys.stderr)
        os._exit(1)
    os._exit(0)
_, status = os.waitpid(pid, 0)
queue.enqueue("forked.plain", {"who": "parent after fork"})
note.defer_sync("parent after fork")
queue.close()
app.close_sync()
sys.exit(os.waitstatus_to_exitcode(status))
'''


def test_a_synchronous_queue_and_defer_sync_work_after_fork(queue_url: str, tmp_path: Path) -> None:
    script = tmp_path / "fork_app.py"
    script.write_text(textwrap.dedent(FORK_SCRIPT))
    done = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", str(script), queue_url],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert done.returncode == 0, done.stderr
    with jobq.connect_sync(queue_url) as queue:
        jobs = queue.list_jobs(limit=100).jobs
    who = sorted((job.type, job.data["who"]) for job in jobs)
    assert who == sorted(
        [("forked.plain", w) for w in ("parent before fork", "child", "parent after fork")]
        + [("forked.note", w) for w in ("parent before fork", "child", "child again", "parent after fork")]
    )


def test_a_queue_object_given_to_sync_queue_refuses_use_after_fork(tmp_path: Path) -> None:
    script = tmp_path / "fork_given.py"
    script.write_text(
        textwrap.dedent(
            """
            import os, sys
            import jobq
            queue = jobq.SyncQueue(jobq.SQLiteQueue(sys.argv[1]))
            pid = os.fork()
            if pid == 0:
                try:
                    queue.size()
                except jobq.QueueClosed as exc:
                    print(exc)
                    os._exit(0)
                os._exit(1)
            _, status = os.waitpid(pid, 0)
            assert queue.size() == 0  # the parent's queue works as before
            queue.close()
            sys.exit(os.waitstatus_to_exitcode(status))
            """
        )
    )
    done = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", str(script), str(tmp_path / "jobs.db")],
        capture_output=True,
        text=True,
        timeout=DEADLINE,
    )
    assert done.returncode == 0, done.stderr
    assert "open it with jobq.connect_sync(url)" in done.stdout
