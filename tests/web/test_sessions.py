"""Logging in to the dashboard: the login form, sessions that outlive a
restart when the secret does, expire, end at logout, and carry a CSRF token
of their own."""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from webtest_helpers import ORIGIN, TOKEN, csrf_of, failed_job

import jobq
from jobq.web import BasicAuth, create_app
from jobq.web import sessions as sessions_module
from jobq.web.sessions import derived_token, load_secret

pytestmark = pytest.mark.asyncio

SECRET = b"a-dashboard-secret-of-enough-length-0123456789"
Client = Callable[..., Any]


@pytest.fixture
async def browser_for(web_queue: jobq.Queue) -> AsyncIterator[Client]:
    """Makes cookie-keeping clients of a dashboard app (a "restart" is a new
    app over the same queue)."""
    opened: list[httpx.AsyncClient] = []

    def make(app: Any = None, **options: Any) -> httpx.AsyncClient:
        options.setdefault("auth", TOKEN)
        options.setdefault("secret", SECRET)
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app or create_app(web_queue, **options)),
            base_url=ORIGIN,
            headers={"Origin": ORIGIN},
        )
        opened.append(client)
        return client

    yield make
    for client in opened:
        await client.aclose()


async def log_in(client: httpx.AsyncClient, target: str = "/", **fields: str) -> httpx.Response:
    return await client.post("/login", data={"token": TOKEN, "next": target, **fields})


async def test_the_login_form(browser_for: Client, web_queue: jobq.Queue) -> None:
    client = browser_for()
    page = await client.get("/login")
    assert page.status_code == 200 and 'id="login-form"' in page.text and 'name="token"' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    wrong = await client.post("/login", data={"token": "not-the-token", "next": "/jobs"})
    assert wrong.status_code == 401 and "Wrong credentials" in wrong.text and "set-cookie" not in wrong.headers
    right = await log_in(client, "/jobs?status=failed")
    assert right.status_code == 303 and right.headers["location"] == "/jobs?status=failed"
    cookie = right.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "max-age=43200" in cookie
    assert TOKEN.lower() not in cookie
    page = await client.get("/", headers={"Accept": "text/html"})
    assert page.status_code == 200 and 'id="logout"' in page.text
    # With a username and password, the form asks for both.
    basic = browser_for(auth=BasicAuth("ops", "s3cret-pass"))
    assert 'name="username"' in (await basic.get("/login")).text
    assert (await basic.post("/login", data={"username": "ops", "password": "nope"})).status_code == 401
    assert (await basic.post("/login", data={"username": "ops", "password": "s3cret-pass"})).status_code == 303
    assert (await basic.get("/api/overview")).status_code == 200


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil.example", "javascript:alert(1)"])
async def test_login_goes_nowhere_but_this_dashboard(browser_for: Client, target: str) -> None:
    response = await log_in(browser_for(), target)
    assert response.status_code == 303 and response.headers["location"] == "/"


async def test_a_page_asked_for_without_a_session_shows_the_form_and_comes_back(browser_for: Client) -> None:
    client = browser_for()
    page = await client.get("/jobs?status=failed", headers={"Accept": "text/html"})
    assert page.status_code == 401 and 'value="/jobs?status=failed"' in page.text
    assert "www-authenticate" not in page.headers


async def test_a_login_form_posted_from_another_site_is_refused(browser_for: Client) -> None:
    client = browser_for()
    for headers in ({"Origin": "https://evil.example"}, {"Origin": "null"}):
        response = await client.post("/login", data={"token": TOKEN}, headers=headers)
        assert response.status_code == 403 and "set-cookie" not in response.headers


async def test_each_session_has_its_own_csrf_token(browser_for: Client, web_queue: jobq.Queue) -> None:
    job = await failed_job(web_queue)
    first, second = browser_for(), browser_for()
    await log_in(first)
    await log_in(second)
    token_1 = csrf_of((await first.get("/")).text)
    token_2 = csrf_of((await second.get("/")).text)
    assert token_1 != token_2
    scripts = csrf_of((await first.get("/", headers={"Authorization": f"Bearer {TOKEN}"})).text)
    for wrong in (token_2, scripts):
        response = await first.post(f"/jobs/{job.id}/retry", data={"csrf_token": wrong})
        assert response.status_code == 403
    assert (await first.post(f"/jobs/{job.id}/retry", data={"csrf_token": token_1})).status_code == 303


async def test_a_session_outlives_a_restart_that_keeps_the_secret(browser_for: Client, web_queue: jobq.Queue) -> None:
    client = browser_for()
    await log_in(client)
    cookie = client.cookies["jobq_session"]
    for options, kept in (
        ({}, True),  # the same secret and token
        ({"secret": b"another-secret-entirely-0123456789abcdef"}, False),
        ({"auth": "a-new-token-0123456789"}, False),  # the token changed: old sessions end
    ):
        restarted = browser_for(**options)
        restarted.cookies.set("jobq_session", cookie)
        assert (await restarted.get("/api/overview")).status_code == (200 if kept else 401), options


async def test_sessions_expire(browser_for: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    client = browser_for(session_ttl=60)
    await log_in(client)
    assert (await client.get("/api/overview")).status_code == 200
    real = sessions_module._now
    monkeypatch.setattr(sessions_module, "_now", lambda: real() + 61)
    assert (await client.get("/api/overview")).status_code == 401
    page = await client.get("/", headers={"Accept": "text/html"})
    assert page.status_code == 401 and "Your session has ended" in page.text
    with pytest.raises(jobq.InvalidOption):
        create_app(jobq.MemoryQueue(), auth=TOKEN, session_ttl=0)


async def test_logout_ends_the_session(browser_for: Client) -> None:
    client = browser_for()
    await log_in(client)
    cookie = client.cookies["jobq_session"]
    csrf = csrf_of((await client.get("/")).text)
    assert (await client.post("/logout", data={})).status_code == 403  # CSRF-checked like every mutation
    response = await client.post("/logout", data={"csrf_token": csrf})
    assert response.status_code == 303 and response.headers["location"] == "/login?ended=1"
    assert 'jobq_session=""' in response.headers["set-cookie"] or "max-age=0" in response.headers["set-cookie"].lower()
    assert "You are logged out" in (await client.get("/login?ended=1")).text
    client.cookies.set("jobq_session", cookie)  # the old cookie, replayed
    assert (await client.get("/api/overview")).status_code == 401


async def test_the_secret_comes_from_the_environment_or_a_file(tmp_path: Path) -> None:
    assert load_secret({}) is None
    assert load_secret({"JOBQ_DASHBOARD_SECRET": "s" * 40}) == b"s" * 40
    with pytest.raises(jobq.InvalidOption):
        load_secret({"JOBQ_DASHBOARD_SECRET": "short"})
    path = tmp_path / "secret"
    made = load_secret({"JOBQ_DASHBOARD_SECRET_FILE": str(path)})
    assert made is not None and len(made) >= 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_secret({}, path) == made  # read again, not replaced
    assert derived_token(made) == derived_token(load_secret({}, path))  # type: ignore[arg-type]
    assert derived_token(made) != derived_token(b"x" * 40)
    (tmp_path / "short").write_text("tiny\n")
    with pytest.raises(jobq.InvalidOption, match="fewer than"):
        load_secret({}, tmp_path / "short")
    with pytest.raises(jobq.InvalidOption, match="cannot create"):
        load_secret({}, tmp_path / "no" / "such" / "dir" / "secret")


async def test_only_the_stylesheet_is_public_and_browsers_get_no_challenge(browser_for: Client) -> None:
    client = browser_for()
    assert (await client.get("/static/app.css")).status_code == 200  # styles the login form
    assert (await client.get("/static/app.js")).status_code == 401
    script = await client.get("/api/overview")
    assert script.status_code == 401 and script.headers["www-authenticate"].startswith("Bearer")
    fetched = await client.get("/api/overview", headers={"Sec-Fetch-Mode": "cors"})
    assert fetched.status_code == 401 and "www-authenticate" not in fetched.headers
