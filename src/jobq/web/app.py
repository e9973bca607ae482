"""The dashboard as an ASGI application (Starlette).

Pages render on the server with Jinja2 (autoescaping on); a static script
polls the JSON API for live updates and draws the throughput chart, so no
inline script is needed and the Content-Security-Policy forbids them. Every
route, the JSON API and the metrics included, sits behind authentication;
every mutation is a POST carrying a CSRF token from a same-origin page.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import secrets
from collections.abc import Awaitable, Callable, Collection
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jinja2
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import admin
from ..errors import InvalidOption, JobNotFound, JobqError
from ..job import Job, JobStatus
from ..queue import Queue
from .auth import SESSION_COOKIE, Auth, BasicAuth, TokenAuth, auth_from_env, session_value
from .hosts import AllowedHosts

HERE = Path(__file__).parent
PAGE_SIZE = admin.LIST_LIMIT  # jobs per page in the job list
MAX_PAGE_SIZE = 500
MAX_FORM_BYTES = 64 * 1024  # largest POST body accepted
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]
STATUSES = [s.value for s in JobStatus]
_ENV_AUTH = object()


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["ts"] = lambda v: "" if v is None else v.strftime("%Y-%m-%d %H:%M:%S")
    env.filters["pretty"] = lambda v: json.dumps(v, indent=2, ensure_ascii=False, default=str)
    return env


def _route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


class _Guard:
    """The ``Host`` check, authentication and security headers around every route."""

    def __init__(self, app: ASGIApp, auth: Auth | None, secret: bytes, hosts: AllowedHosts | None) -> None:
        self.app = app
        self.auth = auth
        self.secret = secret
        self.hosts = hosts

    def authenticated(self, request: Request) -> bool:
        if self.auth is None:
            return True
        header = request.headers.get("authorization")
        if header and self.auth.check_header(header):
            return True
        cookie = request.cookies.get(SESSION_COOKIE) or ""
        return bool(cookie) and hmac.compare_digest(
            cookie.encode(), session_value(self.secret, self.auth).encode()
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [h for h in message.get("headers", []) if h[0] not in dict(SECURITY_HEADERS)]
                message["headers"] = headers + SECURITY_HEADERS
            await send(message)

        request = Request(scope)
        if self.hosts is not None and not self.hosts.allows(request.headers.get("host")):
            response = PlainTextResponse(
                "400 Bad Request: this dashboard does not answer to that Host"
                " (see --allowed-host)\n",
                status_code=400,
            )
            await response(scope, receive, send_with_headers)
            return
        if _route_path(scope) != "/login" and not self.authenticated(request):
            assert self.auth is not None
            response = PlainTextResponse(
                "401 Unauthorized: log in with the dashboard's token or password\n",
                status_code=401,
                headers={"WWW-Authenticate": self.auth.challenge()},
            )
            await response(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)


class Dashboard:
    """Routes of one dashboard over one queue."""

    def __init__(self, queue: Queue, auth: Auth | None, secret: bytes, allowed_origins: set[str]) -> None:
        self.queue = queue
        self.auth = auth
        self.secret = secret
        self.allowed_origins = allowed_origins
        self.csrf = hmac.new(secret, b"csrf", hashlib.sha256).hexdigest()
        self.env = _environment()

    # -- helpers -------------------------------------------------------------

    @staticmethod
    def base(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    def render(self, request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
        template = self.env.get_template(name)
        html = template.render(base=self.base(request), csrf=self.csrf, statuses=STATUSES, **context)
        return Response(html, status_code=status_code, media_type="text/html; charset=utf-8")

    def _check_origin(self, request: Request) -> None:
        """Refuses a POST a page of another site sent (403)."""
        own = f"{request.url.scheme}://{request.headers.get('host', '')}"
        allowed = {own, *self.allowed_origins}
        origin = request.headers.get("origin")
        if origin is not None:
            if origin not in allowed:
                raise HTTPException(403, "cross-site request refused (Origin)")
        elif request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
            raise HTTPException(403, "cross-site request refused (Sec-Fetch-Site)")
        else:
            referer = request.headers.get("referer")
            if referer:
                parts = urlsplit(referer)
                if f"{parts.scheme}://{parts.netloc}" not in allowed:
                    raise HTTPException(403, "cross-site request refused (Referer)")

    async def form(self, request: Request) -> dict[str, str]:
        """The POSTed form, after the Origin and CSRF-token checks."""
        self._check_origin(request)
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            raise HTTPException(413, "form too large")
        fields = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        token = request.headers.get("x-csrf-token") or fields.get("csrf_token", "")
        if not hmac.compare_digest(token.encode(), self.csrf.encode()):
            raise HTTPException(403, "missing or wrong CSRF token")
        return fields

    async def job_or_404(self, job_id: str) -> Job[Any]:
        job = await self.queue.get_job(job_id)
        if job is None:
            raise HTTPException(404, f"no job with id {job_id}")
        return job

    @staticmethod
    def filters(request: Request) -> dict[str, Any]:
        q = request.query_params
        status = q.get("status") or None
        if status is not None and status not in STATUSES:
            raise HTTPException(400, f"unknown status {status!r}")
        try:
            limit = min(max(int(q.get("limit") or PAGE_SIZE), 1), MAX_PAGE_SIZE)
            offset = max(int(q.get("offset") or 0), 0)
        except ValueError:
            raise HTTPException(400, "limit and offset must be integers") from None
        return {
            "status": status,
            "type": q.get("type") or None,
            "queue": q.get("queue") or None,
            "limit": limit,
            "offset": offset,
        }

    def done(self, request: Request, target: str, fields: dict[str, str]) -> Response:
        """After a form POST: back to a page of this dashboard (303); for
        scripts that asked for JSON, a JSON answer."""
        if "application/json" in request.headers.get("accept", ""):
            return JSONResponse({"ok": True, "next": target})
        back = fields.get("next", "")
        if back.startswith("/") and not back.startswith("//"):
            target = back
        return RedirectResponse(self.base(request) + target, status_code=303)

    # -- pages -----------------------------------------------------------------

    async def login(self, request: Request) -> Response:
        token = request.query_params.get("token", "")
        if not isinstance(self.auth, TokenAuth) or not self.auth.check_token(token):
            challenge = self.auth.challenge() if self.auth is not None else 'Bearer realm="jobq"'
            raise HTTPException(401, "wrong or missing token", headers={"WWW-Authenticate": challenge})
        response = RedirectResponse(self.base(request) + "/", status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            session_value(self.secret, self.auth),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path=self.base(request) or "/",
        )
        return response

    async def overview_page(self, request: Request) -> Response:
        data = await admin.overview(self.queue)
        return self.render(request, "overview.html", page="overview", data=data)

    async def jobs_page(self, request: Request) -> Response:
        filters = self.filters(request)
        page = await self.queue.list_jobs(**filters)
        jobs = [admin.job_dict(j, full=False) for j in page.jobs]
        query = {k: v for k, v in filters.items() if v and k not in ("offset",)}

        def link(offset: int) -> str:
            return "?" + urlencode({**query, "offset": offset})

        prev_link = link(max(filters["offset"] - filters["limit"], 0)) if filters["offset"] > 0 else None
        next_at = filters["offset"] + filters["limit"]
        next_link = link(next_at) if next_at < page.total else None
        pages = max(1, math.ceil(page.total / filters["limit"]))
        return self.render(
            request,
            "jobs.html",
            page="jobs",
            jobs=jobs,
            total=page.total,
            filters=filters,
            prev_link=prev_link,
            next_link=next_link,
            page_no=filters["offset"] // filters["limit"] + 1,
            pages=pages,
            api_query=urlencode({k: v for k, v in filters.items() if v}),
        )

    async def job_page(self, request: Request) -> Response:
        job = await self.job_or_404(request.path_params["job_id"])
        try:
            history = await self.queue.attempts(job.id)
        except JobNotFound:  # removed since it was read
            history = []
        return self.render(
            request, "job.html", page="job", job=job, data=admin.job_dict(job), timeline=admin.timeline(job),
            history=history,
        )  # fmt: skip

    async def workers_page(self, request: Request) -> Response:
        return self.render(request, "workers.html", page="workers", workers=await admin.workers(self.queue))

    # -- actions ---------------------------------------------------------------

    async def retry(self, request: Request) -> Response:
        fields = await self.form(request)
        job_id = request.path_params["job_id"]
        await self.job_or_404(job_id)
        try:
            await self.queue.retry(job_id)
        except JobqError as exc:
            raise HTTPException(409, str(exc)) from None
        return self.done(request, f"/jobs/{job_id}", fields)

    async def cancel(self, request: Request) -> Response:
        fields = await self.form(request)
        job_id = request.path_params["job_id"]
        await self.job_or_404(job_id)
        if not await self.queue.cancel(job_id):
            raise HTTPException(409, f"job {job_id} has finished and cannot be cancelled")
        return self.done(request, f"/jobs/{job_id}", fields)

    async def remove(self, request: Request) -> Response:
        fields = await self.form(request)
        job_id = request.path_params["job_id"]
        if not await self.queue.remove(job_id):
            raise HTTPException(404, f"no job with id {job_id}")
        fields.pop("next", None)
        return self.done(request, "/jobs", fields)

    async def retry_failed(self, request: Request) -> Response:
        """Retries every failed job it can; those it cannot (another job
        holds their unique key) are listed, with why, and the rest retried."""
        fields = await self.form(request)
        report = await admin.retry_all_failed(self.queue, type=fields.get("type") or None)
        if "application/json" in request.headers.get("accept", ""):
            skipped = [{"id": job_id, "error": error} for job_id, error in report.not_retried]
            return JSONResponse({"ok": not skipped, "retried": report.retried, "not_retried": skipped})
        if report.not_retried:
            return self.render(
                request, "retried.html", page="jobs", retried=report.retried, not_retried=report.not_retried
            )
        return self.done(request, "/jobs?status=failed", fields)

    # -- JSON API and metrics --------------------------------------------------

    async def api_overview(self, request: Request) -> Response:
        return JSONResponse(await admin.overview(self.queue))

    async def api_jobs(self, request: Request) -> Response:
        filters = self.filters(request)
        page = await self.queue.list_jobs(**filters)
        return JSONResponse(
            {
                "jobs": [admin.job_dict(j, full=False) for j in page.jobs],
                "total": page.total,
                "limit": page.limit,
                "offset": page.offset,
            }
        )

    async def api_job(self, request: Request) -> Response:
        job = await self.job_or_404(request.path_params["job_id"])
        return JSONResponse(await admin.job_detail(self.queue, job))

    async def api_workers(self, request: Request) -> Response:
        return JSONResponse({"workers": await admin.workers(self.queue)})

    async def metrics(self, request: Request) -> Response:
        from ..metrics import CONTENT_TYPE, render_latest

        return Response(await render_latest(self.queue), media_type=CONTENT_TYPE)

    async def error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        wants_json = _route_path(request.scope).startswith("/api/") or "application/json" in request.headers.get(
            "accept", ""
        )
        if wants_json:
            response: Response = JSONResponse({"error": exc.detail}, status_code=exc.status_code)
        else:
            response = self.render(request, "error.html", status_code=exc.status_code, page="error", exc=exc)
        response.headers.update(exc.headers or {})
        return response


def create_app(
    queue: Queue,
    *,
    auth: Auth | str | tuple[str, str] | None | object = _ENV_AUTH,
    secret: bytes | None = None,
    allowed_origins: set[str] | frozenset[str] = frozenset(),
    allowed_hosts: Collection[str] | None = None,
) -> ASGIApp:
    """The dashboard for ``queue`` as an ASGI app, to serve on its own or to
    mount in a Starlette or FastAPI application (``app.mount("/jobq", ...)``).

    ``auth``: a :class:`TokenAuth`, a :class:`BasicAuth`, a token ``str``, a
    ``(username, password)`` pair, or ``None`` to serve without
    authentication (only when something in front of it authenticates). Left
    out, credentials come from the environment (``JOBQ_DASHBOARD_TOKEN``, or
    ``JOBQ_DASHBOARD_USER`` and ``JOBQ_DASHBOARD_PASSWORD``), and it is an
    error if none is set. ``secret`` keys session cookies and CSRF tokens
    (default: random per app). ``allowed_origins`` adds origins (such as
    ``"https://ops.example.com"`` behind a proxy) from which POSTs are
    accepted besides the page's own. ``allowed_hosts``: the host names a
    request's ``Host`` header may name (loopback names always may); any
    other gets 400, which stops DNS-rebinding pages. ``None`` (the default)
    checks nothing, for an app behind something that does.
    """
    chosen: Auth | None
    if auth is _ENV_AUTH:
        chosen = auth_from_env()
        if chosen is None:
            raise InvalidOption(
                "the dashboard needs authentication: set JOBQ_DASHBOARD_TOKEN (or JOBQ_DASHBOARD_USER and"
                " JOBQ_DASHBOARD_PASSWORD), or pass auth=...; auth=None serves it without"
            )
    elif isinstance(auth, str):
        chosen = TokenAuth(auth)
    elif isinstance(auth, tuple):
        chosen = BasicAuth(*auth)
    elif auth is None or isinstance(auth, (TokenAuth, BasicAuth)):
        chosen = auth
    else:
        raise InvalidOption("auth must be a TokenAuth, a BasicAuth, a token, a (user, password) pair or None")
    key = secret or secrets.token_bytes(32)
    board = Dashboard(queue, chosen, key, set(allowed_origins))
    routes = [
        Route("/", board.overview_page),
        Route("/login", board.login),
        Route("/jobs", board.jobs_page),
        Route("/jobs/retry-failed", board.retry_failed, methods=["POST"]),
        Route("/jobs/{job_id}", board.job_page),
        Route("/jobs/{job_id}/retry", board.retry, methods=["POST"]),
        Route("/jobs/{job_id}/cancel", board.cancel, methods=["POST"]),
        Route("/jobs/{job_id}/remove", board.remove, methods=["POST"]),
        Route("/workers", board.workers_page),
        Route("/api/overview", board.api_overview),
        Route("/api/jobs", board.api_jobs),
        Route("/api/jobs/{job_id}", board.api_job),
        Route("/api/workers", board.api_workers),
        Route("/metrics", board.metrics),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {HTTPException: board.error}
    app = Starlette(routes=routes, exception_handlers=handlers)
    app.state.dashboard = board
    hosts = None if allowed_hosts is None else AllowedHosts(allowed_hosts)
    return _Guard(app, chosen, key, hosts)


#: Every route, for tests and documentation: (method, path).
ROUTES: list[tuple[str, str]] = [
    ("GET", "/"),
    ("GET", "/login"),
    ("GET", "/jobs"),
    ("POST", "/jobs/retry-failed"),
    ("GET", "/jobs/{job_id}"),
    ("POST", "/jobs/{job_id}/retry"),
    ("POST", "/jobs/{job_id}/cancel"),
    ("POST", "/jobs/{job_id}/remove"),
    ("GET", "/workers"),
    ("GET", "/api/overview"),
    ("GET", "/api/jobs"),
    ("GET", "/api/jobs/{job_id}"),
    ("GET", "/api/workers"),
    ("GET", "/metrics"),
    ("GET", "/static/app.js"),
]

__all__ = ["ROUTES", "create_app"]
