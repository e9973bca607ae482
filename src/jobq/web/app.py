"""The dashboard as an ASGI application (Starlette).

Pages render on the server with Jinja2 (autoescaping on); a static script
polls the JSON API for live updates and draws the throughput chart, so no
inline script is needed and the Content-Security-Policy forbids them. Every
route, the JSON API and the metrics included, sits behind authentication;
every mutation is a POST carrying a CSRF token from a same-origin page.
"""

from __future__ import annotations

import hmac
import json
import math
import secrets
from collections.abc import Awaitable, Callable, Collection, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jinja2
from itsdangerous import URLSafeSerializer
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import admin
from ..errors import InvalidOption, JobNotFound, JobqError
from ..job import Job, JobStatus
from ..queue import Queue
from ..reads import reads_off_loop
from .auth import Auth, BasicAuth, TokenAuth, auth_from_env
from .bulk import FLASH_COOKIE, BulkPages, described, listing
from .charts import RATE_MIN_ATTEMPTS, RATE_TRAIL, duration_text
from .hosts import AllowedHosts
from .login import CSRF_KEY, SESSION_KEY, Guard, LoginPages, route_path
from .pages import Charted, FigurePages, Schedule
from .sessions import SESSION_TTL, Sessions, load_secret

HERE = Path(__file__).parent
PAGE_SIZE = admin.LIST_LIMIT  # jobs per page in the job list
MAX_PAGE_SIZE = 500
MAX_FORM_BYTES = 64 * 1024  # largest POST body accepted
STATUSES = [s.value for s in JobStatus]
_ENV_AUTH = object()


def slot_text(ms: Any) -> str:
    """A cron slot (epoch ms, from a job's metadata) as UTC text; anything else as it is."""
    if isinstance(ms, int) and not isinstance(ms, bool):
        try:
            return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
        except (OverflowError, OSError, ValueError):
            pass
    return "" if ms is None else str(ms)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["ts"] = lambda v: "" if v is None else v.strftime("%Y-%m-%d %H:%M:%S")
    env.filters["slot"] = slot_text
    env.filters["duration"] = duration_text
    env.filters["pretty"] = lambda v: json.dumps(v, indent=2, ensure_ascii=False, default=str)
    return env


class Dashboard(LoginPages, BulkPages, FigurePages):
    """Routes of one dashboard over one queue."""

    def __init__(
        self, queue: Queue, auth: Auth | None, sessions: Sessions, allowed_origins: set[str],
        schedules: Sequence[Schedule] = (),
    ) -> None:  # fmt: skip
        self.queue = queue
        self.schedules = list(schedules)
        self.auth = auth
        self.sessions = sessions
        self.allowed_origins = allowed_origins
        self.flasher = URLSafeSerializer(sessions.secret, salt="jobq-flash")
        self.env = _environment()
        #: The overview's per-queue and per-type counts and throughput:
        #: recounted in the background once counting them is slow.
        self.figures: admin.Recounted[dict[str, Any]] = admin.Recounted(
            lambda: admin.breakdown(queue, minutes=admin.THROUGHPUT_MINUTES)
        )
        #: The jobs per status: counted for every request while that is
        #: fast, else every few seconds in the background, so open pages
        #: polling never wait on a count of a million jobs.
        self.counted: admin.Recounted[dict[JobStatus, int]] = admin.Recounted(
            queue.counts, every=admin.STATUS_RECOUNT_EVERY, first_wait=math.inf
        )
        #: What stands in for ``figures`` while their first count runs.
        self.unfinished: admin.Recounted[dict[str, Any]] = admin.Recounted(
            lambda: admin.breakdown(queue, minutes=admin.THROUGHPUT_MINUTES, finished=False),
            every=admin.STATUS_RECOUNT_EVERY, first_wait=math.inf,
        )
        #: The queue pages' figures, recounted in the background once slow.
        self.charted = Charted(queue)

    # -- helpers -------------------------------------------------------------

    @staticmethod
    def base(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    def render(self, request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
        template = self.env.get_template(name)
        context.setdefault("csrf", request.scope.get(CSRF_KEY, ""))
        context.setdefault("logged_in", SESSION_KEY in request.scope)
        flash = self.take_flash(request) if SESSION_KEY in request.scope or CSRF_KEY in request.scope else None
        html = template.render(base=self.base(request), statuses=STATUSES, flash=flash, **context)
        response = Response(html, status_code=status_code, media_type="text/html; charset=utf-8")
        if FLASH_COOKIE in request.cookies:
            response.delete_cookie(FLASH_COOKIE, path=self.base(request) or "/")
        return response

    def check_origin(self, request: Request) -> None:
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

    async def read_form(self, request: Request) -> dict[str, str]:
        """The POSTed form, after the Origin check (the login form's, which
        has no session yet and so no CSRF token)."""
        self.check_origin(request)
        body = await request.body()
        if len(body) > MAX_FORM_BYTES:
            raise HTTPException(413, "form too large")
        lists = parse_qs(body.decode("utf-8", "replace"))
        request.state.form_lists = lists  # every value of a field sent more than once (bulk ids)
        return {k: v[0] for k, v in lists.items()}

    async def form(self, request: Request) -> dict[str, str]:
        """The POSTed form, after the Origin and CSRF-token checks: the token
        must be the one of this request's session (or of its header
        credentials)."""
        fields = await self.read_form(request)
        token = request.headers.get("x-csrf-token") or fields.get("csrf_token", "")
        expected = str(request.scope.get(CSRF_KEY, ""))
        if not expected or not hmac.compare_digest(token.encode(), expected.encode()):
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
            page = max(int(q.get("page") or 0), 0) or None  # shown beside a cursor's page
        except ValueError:
            raise HTTPException(400, "limit, offset and page must be integers") from None
        return {
            "status": status,
            "type": q.get("type") or None,
            "queue": q.get("queue") or None,
            "id": (q.get("id") or "").strip() or None,
            "unique_key": q.get("unique_key") or None,
            "text": q.get("text") or None,
            "limit": limit,
            "offset": offset,
            # A page's cursor (JobPage.next_cursor): the next page found
            # through the index, where an offset counts every job before it.
            "after": q.get("after") or None,
            "page": page,
        }

    async def page_of_jobs(self, filters: dict[str, Any]) -> admin.JobPage:
        """The page the job list's filters ask for (a bad search is a 400)."""
        try:
            return await self.queue.list_jobs(
                **listing(filters), limit=filters["limit"], offset=filters["offset"], after=filters["after"]
            )
        except InvalidOption as exc:
            raise HTTPException(400, str(exc)) from None

    def done(self, request: Request, target: str, fields: dict[str, str], message: str) -> Response:
        """After a form POST: back to a page of this dashboard (303), which
        shows ``message``; for scripts that asked for JSON, a JSON answer."""
        if "application/json" in request.headers.get("accept", ""):
            return JSONResponse({"ok": True, "next": target})
        back = fields.get("next", "")
        if back.startswith("/") and not back.startswith("//"):
            target = back
        return self.flash(RedirectResponse(self.base(request) + target, status_code=303), request, message)

    # -- pages -----------------------------------------------------------------

    async def overview_page(self, request: Request) -> Response:
        data = await admin.overview(self.queue, figures=self.figures, counted=self.counted, unfinished=self.unfinished)
        queue_names = sorted({*data["by_queue"], *data["paused"]})
        return self.render(
            request, "overview.html", page="overview", data=data, queue_names=queue_names,
            rate_trail=RATE_TRAIL, rate_min=RATE_MIN_ATTEMPTS,
        )  # fmt: skip

    async def jobs_page(self, request: Request) -> Response:
        filters = self.filters(request)
        page = await self.page_of_jobs(filters)
        jobs = [admin.job_dict(j, full=False) for j in page.jobs]
        query = {k: v for k, v in filters.items() if v and k not in ("offset", "after", "page")}

        def link(**where: Any) -> str:
            return "?" + urlencode({**query, **where})

        # Later pages go by cursor (the old offset links still work when given).
        if filters["after"] is not None:
            page_no = filters["page"]
            prev_link: str | None = link()  # back to the newest
        else:
            page_no = filters["offset"] // filters["limit"] + 1
            prev_link = link(offset=max(filters["offset"] - filters["limit"], 0)) if filters["offset"] > 0 else None
        next_link = None
        if page.next_cursor is not None:
            next_link = link(after=page.next_cursor, **({"page": page_no + 1} if page_no else {}))
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
            page_no=page_no,
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
        return self.done(request, f"/jobs/{job_id}", fields, f"Job {job_id} retried: it waits to run again.")

    async def cancel(self, request: Request) -> Response:
        fields = await self.form(request)
        job_id = request.path_params["job_id"]
        await self.job_or_404(job_id)
        if not await self.queue.cancel(job_id):
            raise HTTPException(409, f"job {job_id} has finished and cannot be cancelled")
        return self.done(request, f"/jobs/{job_id}", fields, f"Job {job_id} cancelled.")

    async def remove(self, request: Request) -> Response:
        fields = await self.form(request)
        job_id = request.path_params["job_id"]
        if not await self.queue.remove(job_id):
            raise HTTPException(404, f"no job with id {job_id}")
        fields.pop("next", None)
        return self.done(request, "/jobs", fields, f"Job {job_id} removed.")

    async def pause_queue(self, request: Request) -> Response:
        """Pauses the named queue of the form (see :meth:`jobq.Queue.pause`)."""
        fields = await self.form(request)
        name = fields.get("queue", "")
        try:
            changed = await self.queue.pause(name)
        except InvalidOption as exc:
            raise HTTPException(400, str(exc)) from None
        said = "paused: workers claim nothing more from it" if changed else "was paused already"
        return self.done(request, "/", fields, f"Queue {name} {said}.")

    async def resume_queue(self, request: Request) -> Response:
        """Lets workers claim from the form's queue again."""
        fields = await self.form(request)
        name = fields.get("queue", "")
        try:
            changed = await self.queue.resume(name)
        except InvalidOption as exc:
            raise HTTPException(400, str(exc)) from None
        said = "resumed: workers claim from it again" if changed else "was not paused"
        return self.done(request, "/", fields, f"Queue {name} {said}.")

    async def retry_failed(self, request: Request) -> Response:
        """Retries every failed job it can; those it cannot (another job
        holds their unique key) are listed, with why, and the rest retried.
        A browser's form is first asked to confirm, with the count."""
        fields = await self.form(request)
        job_type = fields.get("type") or None
        wants_json = "application/json" in request.headers.get("accept", "")
        if not wants_json and fields.get("confirmed") != "1":
            count = (await self.queue.list_jobs(status="failed", type=job_type, limit=1)).total
            filters = {"status": "failed", **({"type": job_type} if job_type else {})}
            return self.render(
                request, "confirm.html", page="jobs", action="retry", count=count, total=count, limit=count,
                scope="failed", ids=[], filters=filters, described=described(filters),
                back="/jobs?" + urlencode(filters), endpoint="/jobs/retry-failed",
            )  # fmt: skip
        report = await admin.retry_all_failed(self.queue, type=job_type)
        if wants_json:
            skipped = [{"id": job_id, "error": error} for job_id, error in report.not_retried]
            return JSONResponse({"ok": not skipped, "retried": report.retried, "not_retried": skipped})
        if report.not_retried:
            return self.render(
                request, "retried.html", page="jobs", retried=report.retried, not_retried=report.not_retried
            )
        noun = "job" if report.retried == 1 else "jobs"
        return self.done(request, "/jobs?status=failed", fields, f"Retried {report.retried} failed {noun}.")

    # -- JSON API and metrics --------------------------------------------------

    async def api_overview(self, request: Request) -> Response:
        return JSONResponse(
            await admin.overview(self.queue, figures=self.figures, counted=self.counted, unfinished=self.unfinished)
        )

    async def api_jobs(self, request: Request) -> Response:
        filters = self.filters(request)
        page = await self.page_of_jobs(filters)
        return JSONResponse(
            {
                "jobs": [admin.job_dict(j, full=False) for j in page.jobs],
                "total": page.total,
                "limit": page.limit,
                "offset": page.offset,
                "next_cursor": page.next_cursor,
            }
        )

    async def api_job(self, request: Request) -> Response:
        job = await self.job_or_404(request.path_params["job_id"])
        return JSONResponse(await admin.job_detail(self.queue, job))

    async def api_workers(self, request: Request) -> Response:
        return JSONResponse({"workers": await admin.workers(self.queue)})

    async def metrics(self, request: Request) -> Response:
        from ..metrics import CONTENT_TYPE, render_latest

        # The counts per queue of the overview's (background) count, not a count per scrape.
        return Response(await render_latest(self.queue, counted=self.figures), media_type=CONTENT_TYPE)

    async def error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        wants_json = route_path(request.scope).startswith("/api/") or "application/json" in request.headers.get(
            "accept", ""
        )
        if wants_json:
            response: Response = JSONResponse({"error": exc.detail}, status_code=exc.status_code)
        else:
            response = self.render(request, "error.html", status_code=exc.status_code, page="error", exc=exc)
        response.headers.update(exc.headers or {})
        return response


class OffLoopReads:
    """Runs every route's store reads off the event loop (see
    :mod:`jobq.reads`): an overview counting a million jobs then holds a
    thread, not the loop, and a static file or another page is served
    meanwhile."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        with reads_off_loop():
            await self.app(scope, receive, send)


def create_app(
    queue: Queue,
    *,
    auth: Auth | str | tuple[str, str] | None | object = _ENV_AUTH,
    secret: bytes | None = None,
    allowed_origins: set[str] | frozenset[str] = frozenset(),
    allowed_hosts: Collection[str] | None = None,
    session_ttl: float = SESSION_TTL,
    cron: Sequence[Schedule] = (),
) -> ASGIApp:
    """The dashboard for ``queue`` as an ASGI app, to serve on its own or to
    mount in a Starlette or FastAPI application (``app.mount("/jobq", ...)``).

    ``auth``: a :class:`TokenAuth`, a :class:`BasicAuth`, a token ``str``, a
    ``(username, password)`` pair, or ``None`` to serve without
    authentication (only when something in front of it authenticates). Left
    out, credentials come from the environment (``JOBQ_DASHBOARD_TOKEN``, or
    ``JOBQ_DASHBOARD_USER`` and ``JOBQ_DASHBOARD_PASSWORD``), and it is an
    error if none is set. ``secret`` keys session cookies and CSRF tokens
    (default: ``JOBQ_DASHBOARD_SECRET``, else the file named by
    ``JOBQ_DASHBOARD_SECRET_FILE``, created if missing; else random per
    app, and then sessions end when the app does). ``session_ttl``: seconds
    a login lasts (default 12 hours). ``cron``: the processors'
    :class:`~jobq.processor.cron.CronSchedule` objects, so the cron page shows their
    expressions and next slots (those under their default name need not be
    given). ``allowed_origins`` adds origins (such as
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
    key = secret or load_secret() or secrets.token_bytes(32)
    board = Dashboard(queue, chosen, Sessions(key, chosen, session_ttl), set(allowed_origins), cron)
    routes = [
        Route("/", board.overview_page),
        Route("/login", board.login_page),
        Route("/login", board.login, methods=["POST"]),
        Route("/logout", board.logout, methods=["POST"]),
        Route("/jobs", board.jobs_page),
        Route("/jobs/retry-failed", board.retry_failed, methods=["POST"]),
        Route("/jobs/bulk", board.bulk, methods=["POST"]),
        Route("/jobs/{job_id}", board.job_page),
        Route("/jobs/{job_id}/retry", board.retry, methods=["POST"]),
        Route("/jobs/{job_id}/cancel", board.cancel, methods=["POST"]),
        Route("/jobs/{job_id}/remove", board.remove, methods=["POST"]),
        Route("/workers", board.workers_page),
        Route("/queues/pause", board.pause_queue, methods=["POST"]),
        Route("/queues/resume", board.resume_queue, methods=["POST"]),
        Route("/queues/{name:path}", board.queue_page),
        Route("/charts", board.charts_page),
        Route("/cron", board.cron_page),
        Route("/api/overview", board.api_overview),
        Route("/api/jobs", board.api_jobs),
        Route("/api/jobs/{job_id}", board.api_job),
        Route("/api/workers", board.api_workers),
        Route("/metrics", board.metrics),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {HTTPException: board.error}
    app = Starlette(routes=routes, exception_handlers=handlers, middleware=[Middleware(OffLoopReads)])
    app.state.dashboard = board
    hosts = None if allowed_hosts is None else AllowedHosts(allowed_hosts)
    return Guard(app, chosen, board.sessions, hosts, board)


#: Every route, for tests and documentation: (method, path).
ROUTES: list[tuple[str, str]] = [
    ("GET", "/"),
    ("GET", "/login"),
    ("POST", "/login"),
    ("POST", "/logout"),
    ("GET", "/jobs"),
    ("POST", "/jobs/retry-failed"),
    ("POST", "/jobs/bulk"),
    ("GET", "/jobs/{job_id}"),
    ("POST", "/jobs/{job_id}/retry"),
    ("POST", "/jobs/{job_id}/cancel"),
    ("POST", "/jobs/{job_id}/remove"),
    ("GET", "/workers"),
    ("POST", "/queues/pause"),
    ("POST", "/queues/resume"),
    ("GET", "/queues/{name}"),
    ("GET", "/charts"),
    ("GET", "/cron"),
    ("GET", "/api/overview"),
    ("GET", "/api/jobs"),
    ("GET", "/api/jobs/{job_id}"),
    ("GET", "/api/workers"),
    ("GET", "/metrics"),
    ("GET", "/static/app.js"),
]

__all__ = ["ROUTES", "create_app"]
