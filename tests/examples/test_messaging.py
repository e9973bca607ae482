"""The messaging example service (``examples/messaging``), end to end over
real HTTP against a uvicorn process, on SQLite and PostgreSQL: single, bulk
and scheduled sends through a ``jobq worker`` process, statuses and delivery
reports, cancellation, the load script, per-provider rate limits and a
provider's circuit opening in an outage while the others go on."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from typing import Any

import httpx
import pytest
from servers import DEADLINE, Processes, environment, free_port, wait_http, wait_until

pytestmark = pytest.mark.slow

FINAL = {"delivered", "failed", "cancelled"}


class Service:
    def __init__(self, base: str, processes: Processes, env: dict[str, str]) -> None:
        self.base, self.processes, self.env = base, processes, env

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(self.base + path, json=body, timeout=30)

    def get(self, path: str) -> Any:
        response = httpx.get(self.base + path, timeout=30)
        assert response.status_code == 200, response.text
        return response.json()

    def final(self, message_id: str) -> dict[str, Any]:
        def read() -> dict[str, Any] | None:
            state: dict[str, Any] = self.get(f"/messages/{message_id}")
            return state if state["status"] in FINAL else None

        done: dict[str, Any] = wait_until(read, f"message {message_id}", processes=self.processes)
        return done


def start(queue_url: str, processes: Processes, *, worker_process: bool, **settings: str) -> Service:
    env = environment({
        "JOBQ_URL": queue_url, "JOBQ_DASHBOARD_TOKEN": "token-for-tests", "MESSAGING_FAKE_LATENCY": "0.01",
        "MESSAGING_WORKER": "0" if worker_process else "1", **settings,
    })  # fmt: skip
    port = free_port()
    processes.python("api", "-m", "uvicorn", "examples.messaging.api:api", "--port", str(port), "--no-access-log", env=env)
    if worker_process:
        processes.python("worker", "-m", "jobq", "worker", "examples.messaging.tasks:make_worker", env=env)
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/stats", processes)
    return Service(base, processes, env)


def test_single_bulk_and_scheduled_sends_are_delivered_and_reported(queue_url: str, processes: Processes) -> None:
    service = start(
        queue_url, processes, worker_process=True, MESSAGING_FAKE_FAILURE_RATE="0.1", MESSAGING_RETRY_BASE="0.05"
    )
    single = service.post("/messages", {"provider": "sms-a", "to": "01012345678", "body": "hi", "priority": "high"})
    assert single.status_code == 202, single.text
    assert single.json()["status"] == "queued"
    done = service.final(single.json()["id"])
    assert (done["status"], done["provider"], done["to"], done["priority"]) == ("delivered", "sms-a", "01012345678", 10)
    report = done["report"]
    assert report["provider"] == "sms-a" and report["provider_message_id"].startswith("sms-a-")
    assert report["attempt"] == done["attempts"] + 1

    recipients = [f"0109999{n:04d}" for n in range(1, 12)] + ["01012340000"]  # the last one is invalid
    bulk = service.post("/messages/bulk", {"provider": "kakao", "body": "sale", "recipients": recipients})
    assert bulk.status_code == 202, bulk.text
    states = [service.final(i) for i in bulk.json()["ids"]]
    assert [s["to"] for s in states] == recipients
    assert all(s["status"] == "delivered" for s in states[:-1]), [s for s in states if s["status"] != "delivered"]
    assert states[-1]["status"] == "failed" and "invalid recipient" in states[-1]["error"]
    assert states[-1]["attempts"] == 1  # rejected for good: never retried

    scheduled = service.post("/messages/scheduled", {"provider": "sms-b", "to": "01055556666", "body": "soon", "delay": 2})
    assert scheduled.status_code == 202, scheduled.text
    assert scheduled.json()["status"] == "scheduled"
    send_at = datetime.fromisoformat(scheduled.json()["send_at"])
    sent = service.final(scheduled.json()["id"])
    assert sent["status"] == "delivered" and datetime.fromisoformat(sent["report"]["started_at"]) >= send_at

    later = service.post("/messages/scheduled", {"provider": "sms-b", "to": "01055556666", "body": "x", "delay": 3600})
    assert httpx.delete(f"{service.base}/messages/{later.json()['id']}", timeout=30).json()["cancelled"] is True
    assert service.get(f"/messages/{later.json()['id']}")["status"] == "cancelled"

    assert service.post("/messages", {"provider": "nope", "to": "01012345678", "body": "x"}).status_code == 422
    assert service.post("/messages", {"provider": "sms-a", "to": "call me", "body": "x"}).status_code == 422
    assert httpx.get(f"{service.base}/messages/nope", timeout=30).status_code == 404
    counts = service.get("/stats")["messages"]
    assert counts["completed"] == 13 and counts["failed"] == 1 and counts["cancelled"] == 1

    load = subprocess.run(
        [sys.executable, "-m", "examples.messaging.load", "--api", service.base, "--messages", "60",
         "--scheduled", "3", "--timeout", str(DEADLINE)],
        env=service.env, capture_output=True, text=True, timeout=DEADLINE + 60,
    )  # fmt: skip
    assert load.returncode == 0, load.stdout + load.stderr
    assert "accepted 60 messages" in load.stdout and "0 not finished" in load.stdout, load.stdout


def test_rate_limits_per_provider_and_a_circuit_per_provider(queue_url: str, processes: Processes) -> None:
    service = start(
        queue_url, processes, worker_process=False, MESSAGING_RATE="4", MESSAGING_FAKE_FAILURE_RATE="0",
        MESSAGING_FAKE_OUTAGE="kakao", MESSAGING_BREAKER_THRESHOLD="3", MESSAGING_BREAKER_RESET="600",
    )  # fmt: skip
    out = service.post("/messages/bulk", {"provider": "kakao", "body": "x", "recipients": ["01011112222"] * 6})
    limited = service.post("/messages/bulk", {"provider": "sms-b", "body": "y", "recipients": ["01033334444"] * 12})
    assert out.status_code == limited.status_code == 202

    # At most 4 starts in any second, per provider.
    starts = sorted(datetime.fromisoformat(service.final(i)["report"]["started_at"]) for i in limited.json()["ids"])
    for first, fifth in zip(starts, starts[4:], strict=False):
        assert (fifth - first).total_seconds() >= 0.98, starts

    # kakao is down: its circuit opens and its messages wait, spending no more attempts.
    wait_until(lambda: service.get("/stats")["circuits"].get("kakao") == "open", "kakao's circuit to open",
               processes=processes)  # fmt: skip
    waiting = [service.get(f"/messages/{i}") for i in out.json()["ids"]]
    assert {s["status"] for s in waiting} <= {"queued", "retrying"}, waiting
    assert all(s["attempts"] < 4 and "503" in (s["error"] or "503") for s in waiting), waiting
    assert service.get("/stats")["circuits"]["sms-b"] == "closed"
