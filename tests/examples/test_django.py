"""jobq as Django's task backend, end to end: the example shop project
(``examples/django_project``) served by ``manage.py runserver``, a worker
process (``manage.py jobq_worker``, or ``jobq worker``), and Django's task
API over real HTTP, on SQLite (a jobq file of its own) and on PostgreSQL
(the project's own database, so a task joins the request's transaction)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from servers import DEADLINE, ROOT, Processes, environment, free_port, wait_http, wait_until

import jobq

PROJECT = ROOT / "examples" / "django_project"

pytestmark = pytest.mark.slow


@dataclass
class Shop:
    base: str
    backend: str
    store_url: str
    processes: Processes

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(self.base + path, json=body, timeout=30.0)

    def get(self, path: str) -> httpx.Response:
        return httpx.get(self.base + path, timeout=30.0)

    def finished(self, result_id: str, path: str = "/results/") -> dict[str, Any]:
        """The task result once it is SUCCESSFUL or FAILED, read through Django's API."""

        def read() -> dict[str, Any] | None:
            response = self.get(f"{path}{result_id}/")
            assert response.status_code == 200, response.text
            found: dict[str, Any] = response.json()
            return found if found["status"] in ("SUCCESSFUL", "FAILED") else None

        done: dict[str, Any] = wait_until(read, f"task {result_id} to finish", processes=self.processes)
        return done

    def jobs(self, job_type: str) -> list[jobq.Job[Any]]:
        with jobq.connect_sync(self.store_url) as queue:
            return [job for job in queue.list_jobs(limit=500).jobs if job.type == job_type]


def start_shop(backend: str, queue_url: str, tmp_path: Path, processes: Processes, worker: list[str]) -> Shop:
    env = environment({"DJANGO_SETTINGS_MODULE": "shop.settings", "SHOP_DATA_DIR": str(tmp_path)}, PROJECT)
    if backend == "postgres":
        env["SHOP_DATABASE_URL"] = queue_url
        store_url = queue_url
    else:
        store_url = f"sqlite:///{tmp_path / 'jobq.db'}"
    migrate = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"], cwd=PROJECT, env=env,
        capture_output=True, text=True, timeout=DEADLINE,
    )  # fmt: skip
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    port = free_port()
    processes.python("runserver", "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}", env=env, cwd=PROJECT)
    processes.start("worker", worker, env=env, cwd=PROJECT)
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/", processes)
    return Shop(base, backend, store_url, processes)


@pytest.fixture
def shop(backend: str, queue_url: str, tmp_path: Path, processes: Processes) -> Shop:
    return start_shop(backend, queue_url, tmp_path, processes, [sys.executable, "manage.py", "jobq_worker"])


def test_a_view_enqueues_in_its_transaction_and_the_worker_runs_it(shop: Shop) -> None:
    # On PostgreSQL the enqueue joins the view's transaction; with a SQLite
    # file of jobq's own, the view defers it to the commit (on_commit).
    view = "/orders/" if shop.backend == "postgres" else "/orders/on-commit/"
    placed = shop.post(view, {"email": "ana@example.com"})
    assert placed.status_code == 201, placed.text
    order, task_id = placed.json()["order"], placed.json()["task"]
    result = shop.finished(task_id)
    assert result["status"] == "SUCCESSFUL", result
    assert result["return_value"] == {"order": order, "to": "ana@example.com"}
    assert (result["task"], result["queue"], result["priority"]) == ("orders.tasks.send_receipt", "emails", 10)
    assert result["args"] == [order] and result["attempts"] == 1 and result["finished_at"]
    assert shop.get(f"/orders/{order}/").json()["receipt_sent"] is True

    if shop.backend == "postgres":
        # The enqueue deferred to the commit works there too.
        later = shop.post("/orders/on-commit/", {"email": "bo@example.com"})
        assert later.status_code == 201, later.text
        assert shop.finished(later.json()["task"])["status"] == "SUCCESSFUL"


def test_a_rollback_leaves_no_job(shop: Shop) -> None:
    before = len(shop.jobs("orders.tasks.send_receipt"))
    undone = shop.post("/orders/on-commit/", {"email": "cy@example.com", "rollback": True})
    assert undone.status_code == 409, undone.text
    rolled = shop.post("/orders/", {"email": "di@example.com", "rollback": True})
    assert rolled.status_code == 409, rolled.text
    task_id = rolled.json()["task"]
    if shop.backend == "postgres":
        # The job was inserted on the request's own connection: it went with the rollback.
        assert shop.get(f"/results/{task_id}/").status_code == 404
        assert len(shop.jobs("orders.tasks.send_receipt")) == before
    else:
        # A SQLite file of jobq's own is outside Django's transaction: the job
        # stays (as documented), and fails, its order being gone.
        assert len(shop.jobs("orders.tasks.send_receipt")) == before + 1
        failed = shop.finished(task_id)
        assert failed["errors"][0]["exception_class_path"] == "orders.models.Order.DoesNotExist"


def test_results_failures_priorities_queues_and_run_after(shop: Shop) -> None:
    refused = shop.post("/orders/on-commit/", {"email": "eve@refused.example"}).json()
    failed = shop.finished(refused["task"])
    assert failed["status"] == "FAILED"
    (error,) = failed["errors"]
    assert error["exception_class_path"] == "orders.tasks.ReceiptRefused"
    assert "Traceback (most recent call last)" in error["traceback"]
    assert "cannot mail eve@refused.example" in error["traceback"]
    assert "return_value" not in failed

    # The async twins: aenqueue and aget_result, an async task taking its context.
    greeted = shop.post("/atasks/greet/", {"kwargs": {"name": "Mia"}})
    assert greeted.status_code == 201, greeted.text
    done = shop.finished(greeted.json()["id"], "/aresults/")
    assert done["return_value"] == {"hello": "Mia", "attempt": 1, "id": greeted.json()["id"]}

    # Priority, queue name and run_after reach the job as stored.
    asked = datetime.now(UTC)
    later = shop.post("/tasks/add/", {"args": [2, 3], "priority": 50, "queue": "emails", "run_after": 3600})
    assert later.status_code == 201, later.text
    described = later.json()
    assert (described["status"], described["priority"], described["queue"]) == ("READY", 50, "emails")
    (job,) = [j for j in shop.jobs("orders.tasks.add") if j.id == described["id"]]
    assert (job.priority, job.queue, job.status) == (50, "emails", jobq.JobStatus.DELAYED)
    assert asked + timedelta(seconds=3500) < job.process_at < asked + timedelta(seconds=3700)
    assert job.data == {"args": [2, 3], "kwargs": {}}
    reread = shop.get(f"/results/{described['id']}/").json()
    assert reread["status"] == "READY" and reread["run_after"] is not None and reread["priority"] == 50

    assert shop.get("/results/no-such-id/").status_code == 404


def test_jobq_worker_runs_a_django_project(backend: str, queue_url: str, tmp_path: Path, processes: Processes) -> None:
    worker = [sys.executable, "-m", "jobq", "worker", "jobq.contrib.django.worker:processor", "--concurrency", "2"]
    shop = start_shop(backend, queue_url, tmp_path, processes, worker)
    added = shop.post("/tasks/add/", {"args": [20, 22]})
    assert added.status_code == 201, added.text
    assert shop.finished(added.json()["id"])["return_value"] == 42


BAD_OPTIONS = """
import django
from django.conf import settings
settings.configure(
    INSTALLED_APPS=[], DATABASES={{"default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}}},
    TASKS={{"default": {{"BACKEND": "jobq.contrib.django.JobqBackend", "OPTIONS": {options}}}}},
)
django.setup()
from jobq.contrib.django.worker import backend
try:
    backend()
except Exception as exc:
    print(type(exc).__name__, exc)
"""


@pytest.mark.parametrize(
    "options, error",
    [
        ({"urll": "sqlite:///x.db"}, "UnknownOption TASKS['default']['OPTIONS'] got an unknown option 'urll'; did you mean 'url'?"),
        ({"url": "sqlite:///x.db", "database": "default"}, "ImproperlyConfigured TASKS['default']: give OPTIONS 'database' or 'url', not both"),
        ({"database": "default"}, "ImproperlyConfigured TASKS['default']: OPTIONS 'database' names 'default', which is not a PostgreSQL database"),
        ({"max_attempts": 0}, "ImproperlyConfigured TASKS['default']: 'max_attempts' must be an int >= 1"),
    ],
)
def test_the_backend_refuses_options_that_cannot_work(options: dict[str, Any], error: str, tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", BAD_OPTIONS.format(options=options)], cwd=tmp_path, env=environment(),
        capture_output=True, text=True, timeout=DEADLINE,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(error), done.stdout
