"""A Flask app under gunicorn with ``--preload``, deferring jobs to jobq.

Run it (two forked workers, the jobs in ./jobq.db)::

    gunicorn --preload -w 2 examples.flask_app.app:app
    flask --app examples.flask_app.app jobq-worker

The app is imported, and its queue opened, once in gunicorn's master; each
forked worker process then opens a queue of its own on its first call
(jobq's synchronous queue survives ``os.fork()``).

- ``POST /resize {"path": "cat.png", "width": 640}`` returns the job's id;
- ``GET /jobs/<id>`` its status and, once done, its result.
"""

from __future__ import annotations

import os
from typing import Any

from flask import Flask, abort, request

import jobq
from jobq.contrib.flask import Jobq

tasks = jobq.App(os.environ.get("JOBQ_URL", "sqlite:///jobq.db"))


@tasks.task(queue="images")
def resize(path: str, width: int) -> dict[str, Any]:
    return {"path": f"{path.rsplit('.', 1)[0]}@{width}.png", "by": os.getpid()}


app = Flask(__name__)
extension = Jobq(tasks, app)

# Opened here, at import: in gunicorn's master with --preload. It creates or
# upgrades the job table once, before any worker is forked.
OPENED_IN = os.getpid()
extension.queue.size()


@app.post("/resize")
def resize_view() -> tuple[dict[str, Any], int]:
    body = request.get_json(force=True)
    handle = resize.defer_sync(body["path"], int(body["width"]))
    return {"id": handle.id, "served_by": os.getpid(), "queue_opened_in": OPENED_IN}, 202


@app.get("/jobs/<job_id>")
def job_status(job_id: str) -> dict[str, Any]:
    job = extension.queue.get_job(job_id)
    if job is None:
        abort(404)
    return {"id": job.id, "status": job.status.value, "result": job.result, "served_by": os.getpid()}
