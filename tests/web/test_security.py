"""The dashboard is secure by default: every route needs authentication,
mutations need a same-origin POST with a CSRF token, everything shown from
a job is escaped, and a Content-Security-Policy forbids inline scripts."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote

import pytest
from webtest_helpers import ORIGIN, TOKEN, csrf_of, failed_job

import jobq
from jobq.history import WorkerRecord

pytest.importorskip("starlette", reason="the dashboard needs the web extra")

from jobq.web import ROUTES, BasicAuth, create_app  # noqa: E402

pytestmark = pytest.mark.asyncio

XSS = "<script>alert('x')</script>"


def concrete(path: str, job_id: str) -> str:
    return path.replace("{job_id}", job_id).replace("{name}", "send%20q")


async def test_every_route_refuses_an_unauthenticated_request(anonymous: Any, web_queue: jobq.Queue) -> None:
    job = await failed_job(web_queue)
    for method, path in ROUTES:
        if path == "/login":
            continue  # the one way in: see test_sessions.py
        response = await anonymous.request(method, concrete(path, job.id), headers={"Origin": ORIGIN})
        assert response.status_code == 401, (method, path, response.status_code)
        assert "content-security-policy" in response.headers
        assert "www-authenticate" in response.headers
        assert "login-form" not in response.text  # scripts get one line, not the form
    # A browser asking for a page gets the login form instead, with no
    # WWW-Authenticate (which would pop up the browser's own dialog).
    for method, path in ROUTES:
        if method == "GET" and not path.startswith(("/api/", "/static/", "/metrics", "/login")):
            response = await anonymous.get(concrete(path, job.id), headers={"Accept": "text/html"})
            assert response.status_code == 401 and 'id="login-form"' in response.text, path
            assert "www-authenticate" not in response.headers
            assert "content-security-policy" in response.headers
    # Nothing changed.
    assert (await web_queue.get_job(job.id)).status is jobq.JobStatus.FAILED  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "header",
    ["Bearer wrong-token-000000", "Bearer ", f"Basic {base64.b64encode(f'x:{TOKEN}'.encode()).decode()}", TOKEN],
)
async def test_a_wrong_credential_is_refused(anonymous: Any, header: str) -> None:
    for path in ("/", "/api/jobs", "/metrics"):
        response = await anonymous.get(path, headers={"Authorization": header})
        assert response.status_code == 401


async def test_login_with_the_token_sets_a_session_cookie(anonymous: Any) -> None:
    assert (await anonymous.get("/login?token=nope-nope-nope")).status_code == 401
    response = await anonymous.get(f"/login?token={TOKEN}")
    assert response.status_code == 303
    cookie = response.headers["set-cookie"]
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
    assert TOKEN not in cookie
    assert (await anonymous.get("/")).status_code == 200  # the client kept the cookie
    anonymous.cookies.set("jobq_session", "forged")
    assert (await anonymous.get("/")).status_code == 401
    # A cookie signed with another dashboard's secret is worth nothing here.
    from jobq.web.sessions import Sessions

    other, _ = Sessions(b"another-secret-" * 3, None).issue()
    anonymous.cookies.set("jobq_session", other)
    assert (await anonymous.get("/")).status_code == 401


async def test_basic_auth(web_queue: jobq.Queue) -> None:
    import httpx

    app = create_app(web_queue, auth=BasicAuth("ops", "s3cret-pass"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ORIGIN) as http:
        assert (await http.get("/", auth=("ops", "s3cret-pass"))).status_code == 200
        assert (await http.get("/", auth=("ops", "wrong"))).status_code == 401
        response = await http.get("/api/overview")
        assert response.status_code == 401 and response.headers["www-authenticate"].startswith("Basic")


async def test_auth_is_required_unless_refused_explicitly(
    web_queue: jobq.Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("JOBQ_DASHBOARD_TOKEN", "JOBQ_DASHBOARD_USER", "JOBQ_DASHBOARD_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(jobq.InvalidOption, match="needs authentication"):
        create_app(web_queue)
    monkeypatch.setenv("JOBQ_DASHBOARD_TOKEN", "from-the-environment")
    create_app(web_queue)  # reads it
    with pytest.raises(jobq.InvalidOption):
        create_app(web_queue, auth="short")


@pytest.mark.parametrize("action", ["retry", "cancel", "remove"])
async def test_a_cross_site_post_is_refused(client: Any, web_queue: jobq.Queue, action: str) -> None:
    job = await failed_job(web_queue)
    csrf = csrf_of((await client.get("/")).text)
    form = {"csrf_token": csrf}
    path = f"/jobs/{job.id}/{action}"
    for headers in (
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Referer": "https://evil.example/page"},
    ):
        response = await client.post(path, data=form, headers=headers)
        assert response.status_code == 403, headers
    # Same origin but no (or a wrong) CSRF token.
    assert (await client.post(path, data={}, headers={"Origin": ORIGIN})).status_code == 403
    assert (await client.post(path, data={"csrf_token": "x" * 64}, headers={"Origin": ORIGIN})).status_code == 403
    assert (await client.post("/jobs/retry-failed", data={}, headers={"Origin": ORIGIN})).status_code == 403
    assert (await web_queue.get_job(job.id)).status is jobq.JobStatus.FAILED  # type: ignore[union-attr]
    # GET never mutates.
    assert (await client.get(path)).status_code == 405


async def test_same_origin_actions_work(client: Any, web_queue: jobq.Queue) -> None:
    job = await failed_job(web_queue)
    csrf = csrf_of((await client.get(f"/jobs/{job.id}")).text)
    response = await client.post(f"/jobs/{job.id}/retry", data={"csrf_token": csrf}, headers={"Origin": ORIGIN})
    assert response.status_code == 303 and response.headers["location"] == f"/jobs/{job.id}"
    assert (await web_queue.get_job(job.id)).status is jobq.JobStatus.PENDING  # type: ignore[union-attr]
    response = await client.post(f"/jobs/{job.id}/cancel", data={"csrf_token": csrf}, headers={"Origin": ORIGIN})
    assert response.status_code == 303
    assert (await web_queue.get_job(job.id)).status is jobq.JobStatus.CANCELLED  # type: ignore[union-attr]
    response = await client.post(
        f"/jobs/{job.id}/cancel", data={"csrf_token": csrf}, headers={"Origin": ORIGIN, "Accept": "application/json"}
    )
    assert response.status_code == 409  # already finished
    others = [await failed_job(web_queue, "a"), await failed_job(web_queue, "b")]
    response = await client.post(
        "/jobs/retry-failed",
        data={"csrf_token": csrf, "type": "a"},
        headers={"X-CSRF-Token": csrf, "Accept": "application/json"},  # a script: no Origin, token in a header
    )
    assert response.json() == {"ok": True, "retried": 1, "not_retried": []}
    assert (await web_queue.get_job(others[0].id)).status is jobq.JobStatus.PENDING  # type: ignore[union-attr]
    assert (await web_queue.get_job(others[1].id)).status is jobq.JobStatus.FAILED  # type: ignore[union-attr]
    response = await client.post(f"/jobs/{job.id}/remove", data={"csrf_token": csrf}, headers={"Origin": ORIGIN})
    assert response.status_code == 303 and response.headers["location"] == "/jobs"
    assert await web_queue.get_job(job.id) is None
    assert (await client.get(f"/jobs/{job.id}")).status_code == 404
    assert (await client.get(f"/api/jobs/{job.id}")).json() == {"error": f"no job with id {job.id}"}


async def test_every_response_carries_the_security_headers(client: Any, web_queue: jobq.Queue) -> None:
    job = await failed_job(web_queue)
    for method, path in ROUTES:
        if method != "GET" or path == "/login":
            continue
        response = await client.get(concrete(path, job.id))
        assert response.status_code == 200, path
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["x-frame-options"] == "DENY"
        if response.headers["content-type"].startswith("text/html"):
            # No inline script: every <script> has a src.
            html = response.text
            assert html.count("<script") == html.count('<script src="/static/app.js"')
            assert " on" + "click=" not in html
    assert "content-security-policy" in (await client.get("/no/such/page")).headers


async def test_job_fields_are_escaped_everywhere(client: Any, web_queue: jobq.Queue) -> None:
    job = await web_queue.enqueue(
        XSS, {"html": XSS, "img": '<img src=x onerror="alert(1)">'}, metadata={"note": XSS}, max_attempts=1
    )
    claimed = await web_queue.dequeue()
    assert claimed is not None
    await web_queue.fail(claimed, XSS)
    for path in ("/", "/jobs", "/jobs?status=failed", f"/jobs/{job.id}", f"/jobs?type={XSS}"):
        html = (await client.get(path)).text
        assert "<script>alert" not in html and "<img src=x" not in html, path
    page = (await client.get(f"/jobs/{job.id}")).text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
    data = (await client.get(f"/api/jobs/{job.id}")).json()
    assert data["type"] == XSS and data["error"] == XSS  # JSON keeps the value; the page script sets it as text


async def test_attempt_history_and_workers_are_escaped(client: Any, web_queue: jobq.Queue) -> None:
    job = await web_queue.enqueue("send", {"n": 1}, max_attempts=1)
    claimed = await web_queue.dequeue()
    assert claimed is not None
    try:
        raise ValueError(XSS)
    except ValueError as exc:
        await web_queue.fail(claimed, exc)
    now = web_queue.now_ms()
    limits = {"queues": {XSS: 1}, "key_limits": [{"key": XSS, "type": XSS, "rate": XSS, "per": 1.0}],
              "open_circuits": {XSS: XSS}}  # fmt: skip
    hostile = WorkerRecord(XSS, XSS, 1, json.dumps([XSS]), 1, XSS, now, now, 0, 0, json.dumps(limits))
    await web_queue.store.heartbeat(hostile, forget_before_ms=0)
    await web_queue.enqueue(XSS, {"n": 2}, queue=XSS)
    claimed = await web_queue.dequeue()
    assert claimed is not None
    await web_queue.complete(claimed, "ok")
    for path in (f"/jobs/{job.id}", "/workers", "/", f"/queues/{quote(XSS, safe='')}", "/charts"):
        html = (await client.get(path)).text
        assert "<script>alert" not in html, path
        assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html, path
    page = (await client.get(f"/jobs/{job.id}")).text
    assert "<details" in page and "ValueError" in page  # the traceback, collapsed
    data = (await client.get(f"/api/jobs/{job.id}")).json()
    (attempt,) = data["history"]
    assert attempt["error"] == XSS and XSS in attempt["traceback"] and attempt["outcome"] == "failed"
    (worker,) = (await client.get("/api/workers")).json()["workers"]
    assert worker["host"] == XSS and worker["queues"] == [XSS] and worker["alive"] is True
    queue_page = (await client.get(f"/queues/{quote(XSS, safe='')}")).text
    assert queue_page.count("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;") >= 4  # the limits' fields too


async def test_large_payloads_are_truncated_in_lists(client: Any, web_queue: jobq.Queue) -> None:
    job = await web_queue.enqueue("big", {"blob": "x" * 50_000})
    listing = (await client.get("/jobs")).text
    assert "x" * 200 not in listing
    api = (await client.get("/api/jobs")).json()
    assert len(api["jobs"][0]["data_preview"]) <= 120 and "data" not in api["jobs"][0]
    assert "x" * 50_000 in (await client.get(f"/jobs/{job.id}")).text  # the job page shows it all


async def test_list_filters_and_paging(client: Any, web_queue: jobq.Queue) -> None:
    for n in range(7):
        await web_queue.enqueue("even" if n % 2 == 0 else "odd", {"n": n}, queue="q1" if n < 5 else "q2")
    await failed_job(web_queue, "odd")
    api = (await client.get("/api/jobs?type=even&limit=2")).json()
    assert api["total"] == 4 and len(api["jobs"]) == 2 and {j["type"] for j in api["jobs"]} == {"even"}
    second = (await client.get("/api/jobs?type=even&limit=2&offset=2")).json()
    assert {j["id"] for j in second["jobs"]}.isdisjoint({j["id"] for j in api["jobs"]})
    assert (await client.get("/api/jobs?status=failed")).json()["total"] == 1
    assert (await client.get("/api/jobs?queue=q2")).json()["total"] == 2
    page = (await client.get("/jobs?type=even&limit=2")).text
    # The next page goes by cursor (the sort key of the page's last job).
    assert 'id="next"' in page and f"after={api['next_cursor']}" in page and "page=2" in page
    by_cursor = (await client.get(f"/api/jobs?type=even&limit=2&after={api['next_cursor']}")).json()
    assert [j["id"] for j in by_cursor["jobs"]] == [j["id"] for j in second["jobs"]]
    assert by_cursor["next_cursor"] is None
    cursor_page = (await client.get(f"/jobs?type=even&limit=2&after={api['next_cursor']}&page=2")).text
    assert "page 2 of 2" in cursor_page and "&larr; newest" in cursor_page and 'id="next"' not in cursor_page
    assert (await client.get("/api/jobs?after=nonsense")).status_code == 400
    assert (await client.get("/api/jobs?status=bogus")).status_code == 400
    overview = (await client.get("/api/overview")).json()
    assert overview["counts"]["failed"] == 1 and overview["by_queue"]["q1"]["pending"] == 5
    assert overview["oldest_waiting"]["type"] == "even"


async def test_metrics(client: Any, web_queue: jobq.Queue) -> None:
    await web_queue.enqueue("a", 1, queue="mail")
    await failed_job(web_queue)
    text = (await client.get("/metrics")).text
    assert 'jobq_jobs{queue="mail",status="pending"} 1.0' in text
    assert 'jobq_jobs{queue="default",status="failed"} 1.0' in text


async def test_mounted_inside_another_application(web_queue: jobq.Queue) -> None:
    import httpx
    from starlette.applications import Starlette
    from starlette.routing import Mount

    job = await failed_job(web_queue)
    outer = Starlette(routes=[Mount("/ops/jobq", app=create_app(web_queue, auth=TOKEN))])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=outer), base_url=ORIGIN, headers={"Authorization": f"Bearer {TOKEN}"}
    ) as http:
        page = await http.get(f"/ops/jobq/jobs/{job.id}")
        assert page.status_code == 200
        assert 'href="/ops/jobq/static/app.css"' in page.text and 'data-base="/ops/jobq"' in page.text
        assert (await http.get("/ops/jobq/static/app.js")).status_code == 200
        response = await http.post(
            f"/ops/jobq/jobs/{job.id}/retry", data={"csrf_token": csrf_of(page.text)}, headers={"Origin": ORIGIN}
        )
        assert response.status_code == 303 and response.headers["location"] == f"/ops/jobq/jobs/{job.id}"
        assert (await http.get("/ops/jobq/api/overview", headers={"Authorization": ""})).status_code == 401
