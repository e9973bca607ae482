"""The dashboard under hostile requests and hostile jobs.

Routes are enumerated from the application's own router, not from a list
kept by hand, so a route added later cannot escape these checks:
- without credentials, every route answers 401 to every method;
- every POST route answers 403 to a cross-site request (and changes nothing);
- a job whose type, queue, payload, metadata, error, result and progress
  message hold script renders inert: escaped in every HTML page, and in a
  real headless Chromium no dialog opens and no script from a job runs.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from suite_parts import CHROMIUM, NO_CHROMIUM

import jobq

pytest.importorskip("starlette", reason="the dashboard needs the web extra")
httpx = pytest.importorskip("httpx")

from starlette.routing import Mount, Route  # noqa: E402

from jobq.web import create_app  # noqa: E402

TOKEN = "hostile-test-token-0123456789"
ORIGIN = "http://testserver"
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

# Each sets window.__pwned or opens a dialog if it ever runs.
VECTORS = [
    "<script>window.__pwned=1;alert(1)</script>",
    "<img src=x onerror=\"window.__pwned=1;alert(2)\">",
    "\"><svg onload=\"window.__pwned=1;alert(3)\">",
    "'><iframe srcdoc=\"<script>parent.__pwned=1</script>\"></iframe>",
    "</pre></textarea></title><script>window.__pwned=1</script>",
    "<a href=\"javascript:window.__pwned=1\" id=jsurl>x</a>",
    "<details open ontoggle=\"window.__pwned=1\">",
    "{{7*7}}<b>{% raw %}</b>",
]


def app_routes(app: Any) -> list[tuple[str, list[str]]]:
    """(path, methods) for every route of the dashboard's router; a mount
    (static files) with one of its files."""
    inner = app.app  # the authentication guard wraps the Starlette app
    found: list[tuple[str, list[str]]] = []
    for route in inner.routes:
        if isinstance(route, Route):
            found.append((route.path, sorted(route.methods or {"GET"})))
        elif isinstance(route, Mount):
            found.append((route.path + "/app.js", ["GET", "HEAD"]))
        else:
            raise AssertionError(f"a kind of route these checks do not know: {route!r}")
    assert len(found) >= 10, found
    return found


def concrete(path: str, job_id: str, queue: str = "q" + VECTORS[0]) -> str:
    """``path`` with its parameters filled: a job's id, a (hostile) queue name."""
    known = path.count("{job_id}") + path.count("{name:path}")
    assert path.count("{") == known, f"a path parameter these checks do not fill: {path}"
    return path.replace("{job_id}", job_id).replace("{name:path}", quote(queue, safe=""))


async def hostile_schedules(queue: jobq.Queue) -> None:
    """A cron schedule named after each vector, with a job its slot made
    (its metadata naming the schedule and holding a vector as its slot)."""
    from jobq.job import JobRecord

    now = int(queue.clock.now() * 1000)
    for i, vector in enumerate(VECTORS):
        meta = json.dumps({"jobq.cron": vector, "jobq.cron_slot": vector})
        record = JobRecord(f"cron-{i}", vector, "null", "pending", 0, 0, 1, 0, now, now, None, None, None, meta)
        await queue.store.claim_cron_slot(vector, now - 60_000, record)
        assert await queue.store.claim_cron_slot(vector, now, record)


async def hostile_job(queue: jobq.Queue, vector: str, *, finish: str) -> jobq.Job[Any]:
    """A job with ``vector`` in every field a page may show."""
    job = await queue.enqueue(
        vector,
        {"html": vector, vector: [vector]},
        metadata={"note": vector, vector: 1},
        queue="q" + vector,
        unique_key=vector + finish,
        max_attempts=1,
        priority=7,
    )
    [claimed] = await queue.claim(1, queues=["q" + vector])
    await queue.set_progress(claimed, 0.5, vector)
    if finish == "failed":
        await queue.fail(claimed, vector)
    elif finish == "completed":
        await queue.complete(claimed, {"result": vector})
    stored = await queue.get_job(job.id)
    assert stored is not None
    return stored


@pytest.fixture
async def web_queue(tmp_path: Path) -> AsyncIterator[jobq.Queue]:
    async with jobq.connect(f"sqlite:///{tmp_path / 'web.db'}") as queue:
        yield queue


@pytest.fixture
def app(web_queue: jobq.Queue) -> Any:
    return create_app(web_queue, auth=TOKEN)


@pytest.fixture
async def anonymous(app: Any) -> AsyncIterator[Any]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ORIGIN) as http:
        yield http


@pytest.fixture
async def client(app: Any) -> AsyncIterator[Any]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=ORIGIN, headers={"Authorization": f"Bearer {TOKEN}"}
    ) as http:
        yield http


async def test_every_route_and_method_refuses_an_unauthenticated_request(
    app: Any, anonymous: Any, web_queue: jobq.Queue
) -> None:
    job = await hostile_job(web_queue, VECTORS[0], finish="failed")
    for path, _ in [*app_routes(app), ("/no/such/page", [])]:
        for method in METHODS:
            for headers in ({}, {"Origin": ORIGIN}, {"Authorization": "Bearer wrong-token-000000000"}):
                response = await anonymous.request(method, concrete(path, job.id), headers=headers)
                if path == "/login":
                    # The way in: the form to anyone (GET), a session only
                    # for the credentials (POST), nothing else.
                    expected = (200,) if method in ("GET", "HEAD") else (401, 405)
                    assert response.status_code in expected, (method, path, response.status_code)
                else:
                    assert response.status_code == 401, (method, path, headers, response.status_code)
                assert "set-cookie" not in response.headers, (method, path)
                if method != "HEAD":
                    assert VECTORS[0] not in response.text
    after = await web_queue.get_job(job.id)
    assert after == job  # nothing changed


async def test_every_post_route_refuses_a_cross_site_request(app: Any, client: Any, web_queue: jobq.Queue) -> None:
    posts = [path for path, methods in app_routes(app) if "POST" in methods]
    assert posts, "no POST route found"
    job = await hostile_job(web_queue, VECTORS[1], finish="failed")
    page = (await client.get("/")).text
    marker = 'name="csrf-token" content="'
    csrf = page[page.index(marker) + len(marker) :].split('"', 1)[0]
    assert csrf
    cross_site = [
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://testserver.evil.example"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {"Referer": "https://evil.example/page"},
        {"Origin": "https://evil.example", "X-CSRF-Token": "forged" * 8},
    ]
    before = await web_queue.list_jobs(limit=1000)
    for path in posts:
        url = concrete(path, job.id)
        for headers in cross_site:
            # Even with the right CSRF token in the form: the origin decides.
            response = await client.post(url, data={"csrf_token": csrf, "type": job.type}, headers=headers)
            assert response.status_code == 403, (path, headers, response.status_code)
        # Same origin without the token, or with a wrong one. (The login
        # form has no session yet, so no token: it takes credentials, and
        # without them answers 401 and sets no cookie.)
        for form in ({}, {"csrf_token": "x" * 64}):
            response = await client.post(url, data=form, headers={"Origin": ORIGIN})
            if path == "/login":
                assert response.status_code == 401 and "set-cookie" not in response.headers, (path, form)
            else:
                assert response.status_code == 403, (path, form)
    after = await web_queue.list_jobs(limit=1000)
    assert after.jobs == before.jobs  # nothing changed


async def test_script_in_any_job_field_is_escaped_on_every_page(
    app: Any, client: Any, web_queue: jobq.Queue
) -> None:
    jobs = [
        await hostile_job(web_queue, vector, finish=finish)
        for vector in VECTORS
        for finish in ("failed", "completed", "running")
    ]
    await hostile_schedules(web_queue)
    pages = [path for path, methods in app_routes(app) if "GET" in methods]
    filters = ["", "?status=failed", "?status=completed", "?status=processing", "?order=oldest"]
    checked = 0
    for job in jobs:
        for path in pages:
            if path in ("/login", "/metrics") or path.startswith("/static"):
                continue
            for query in filters if "{job_id}" not in path else [""]:
                extra = f"&type={job.type}" if query else f"?queue={job.queue}"
                response = await client.get(concrete(path, job.id, job.queue) + query + extra)
                assert response.status_code == 200, (path, response.status_code)
                kind = response.headers["content-type"]
                if kind.startswith("text/html"):
                    html = response.text
                    checked += 1
                    for vector in VECTORS:
                        assert vector not in html, (path, vector)
                    assert live_markup(html) == [], path
                else:
                    assert kind.startswith("application/json"), (path, kind)
                    assert response.json() is not None
        detail = (await client.get(f"/jobs/{job.id}")).text
        assert "&lt;" in detail  # the vector is shown, as text
    assert checked >= len(jobs) * 3


class _Markup(HTMLParser):
    """Collects every element or attribute in a page that could run script."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.live: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "script" and values.get("src") != "/static/app.js":
            self.live.append(f"<script {attrs}>")
        # The charts are SVG the server draws (class chart-svg): allowed, their
        # attributes checked as any; an <svg> from a job field would be live.
        chart = tag == "svg" and (values.get("class") or "").startswith("chart-svg ")
        if tag in ("iframe", "svg", "object", "embed", "details", "img") and not chart:
            self.live.append(f"<{tag}>")
        for name, value in attrs:
            if name.startswith("on") or name == "srcdoc":
                self.live.append(f"<{tag} {name}>")
            if value and value.strip().lower().startswith("javascript:"):
                self.live.append(f"<{tag} {name}={value}>")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)


def live_markup(html: str) -> list[str]:
    parser = _Markup()
    parser.feed(html)
    parser.close()
    return parser.live


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live_dashboard(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A real ``jobq dashboard`` process over a database of hostile jobs."""
    url = f"sqlite:///{tmp_path / 'hostile.db'}"

    async def seed() -> list[str]:
        async with jobq.connect(url) as queue:
            return [
                (await hostile_job(queue, vector, finish=finish)).id
                for vector in VECTORS
                for finish in ("failed", "completed", "running")
            ]

    async def seed_all() -> list[str]:
        ids = await seed()
        async with jobq.connect(url) as queue:
            await hostile_schedules(queue)
        return ids

    ids = asyncio.run(seed_all())
    port = free_port()
    env = {**os.environ, "JOBQ_DASHBOARD_TOKEN": TOKEN}
    env.pop("JOBQ_DASHBOARD_USER", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "jobq", "dashboard", "--url", url, "--port", str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.communicate()[1]
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "the dashboard did not start"
                time.sleep(0.05)
        yield {"base": f"http://127.0.0.1:{port}", "ids": ids}
    finally:
        server.terminate()
        server.communicate(timeout=30)


def test_no_script_from_a_job_runs_in_a_browser(live_dashboard: dict[str, Any], tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="browser checks need the playwright package")
    if not Path(CHROMIUM).exists():
        pytest.skip(NO_CHROMIUM)
    base, ids = live_dashboard["base"], live_dashboard["ids"]
    app = create_app(jobq.MemoryQueue(), auth=TOKEN)
    pages = [
        path
        for path, methods in app_routes(app)
        if "GET" in methods and path not in ("/login", "/metrics") and not path.startswith(("/static", "/api"))
    ]
    profile = tmp_path / "chromium-profile"
    profile.mkdir()
    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync",
                  "--disable-background-networking", "--disable-component-update"],
        )  # fmt: skip
        try:
            page = context.new_page()
            dialogs: list[str] = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"{base}/login?token={TOKEN}")
            visited = 0
            for path in pages:
                targets = [concrete(path, i) for i in ids] if "{job_id}" in path else [path, path + "?status=failed"]
                for target in targets:
                    page.goto(base + target)
                    page.wait_for_load_state("load")
                    visited += 1
                    assert page.evaluate("window.__pwned") is None, target
                    assert page.locator("#jsurl").count() == 0, target  # no element built from a job field
            # The list pages update themselves from JSON: let one update run.
            page.goto(f"{base}/jobs")
            page.wait_for_timeout(2500)
            assert page.evaluate("window.__pwned") is None
            assert visited >= len(ids)
            assert dialogs == [], dialogs
            assert errors == [], errors
        finally:
            context.close()
