"""Who gets in: the guard around every route, and the login and logout pages.

:class:`Guard` wraps the whole dashboard. It answers a request whose
``Host`` it does not serve with 400, and one without valid credentials (a
session cookie, or an ``Authorization`` header) with 401: a browser asking
for a page gets the login form, anything else a one-line answer, with the
``WWW-Authenticate`` challenge unless a browser asked (which would show its
own password dialog over the form). Only the stylesheet is served to anyone. It puts the request's CSRF token (its session's, or the one of
header-authenticated requests) in the ASGI scope for the pages and the
form checks, and adds the security headers to every response.

:class:`LoginPages` are the dashboard's ``/login`` (the form, and the old
``/login?token=...`` link ``jobq dashboard`` prints) and ``/logout``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .auth import SESSION_COOKIE, Auth, TokenAuth
from .hosts import AllowedHosts
from .sessions import Session, Sessions

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
#: Served to anyone: the stylesheet holds no data, and styles the login form.
PUBLIC_PATHS = frozenset({"/static/app.css"})
#: Scope keys the guard fills in for the routes.
CSRF_KEY = "jobq.csrf"
SESSION_KEY = "jobq.session"
#: Why the login form is shown, by the ``why`` the guard or logout gives it
#: (fixed texts: nothing from the request is reflected).
NOTICES = {
    "login": "Log in to the jobq dashboard.",
    "expired": "Your session has ended; log in again.",
    "out": "You are logged out.",
    "wrong": "Wrong credentials; try again.",
}


def route_path(scope: Scope) -> str:
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def local_target(value: str | None, default: str = "/") -> str:
    """A path of this dashboard to go to after a login: anything that could
    lead to another site (``//evil``, ``/\\evil``, a URL) becomes ``default``."""
    if not value or not value.startswith("/") or value.startswith(("//", "/\\")) or "\\" in value:
        return default
    if any(ord(c) < 32 for c in value):
        return default
    return value


def _wants_page(request: Request) -> bool:
    """A browser navigating to a page (not a script, nor the API)."""
    path = route_path(request.scope)
    return (
        request.method == "GET"
        and "text/html" in request.headers.get("accept", "")
        and not path.startswith(("/api/", "/static/"))
        and path != "/metrics"
    )


class Guard:
    """The ``Host`` check, authentication and security headers around every route."""

    def __init__(
        self, app: ASGIApp, auth: Auth | None, sessions: Sessions, hosts: AllowedHosts | None, pages: LoginPages
    ) -> None:
        self.app = app
        self.auth = auth
        self.sessions = sessions
        self.hosts = hosts
        self.pages = pages

    def _session(self, request: Request) -> Session | None:
        cookie = request.cookies.get(SESSION_COOKIE)
        return self.sessions.read(cookie) if cookie else None

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
            response: Response = PlainTextResponse(
                "400 Bad Request: this dashboard does not answer to that Host (see --allowed-host)\n",
                status_code=400,
            )
            await response(scope, receive, send_with_headers)
            return
        session = self._session(request) if self.auth is not None else None
        header = request.headers.get("authorization")
        if self.auth is None or (header and self.auth.check_header(header)):
            scope[CSRF_KEY] = self.sessions.header_csrf
        elif session is not None:
            scope[CSRF_KEY], scope[SESSION_KEY] = session.csrf, session
        elif route_path(scope) != "/login" and route_path(scope) not in PUBLIC_PATHS:
            if _wants_page(request):
                why = "expired" if request.cookies.get(SESSION_COOKIE) else "login"
                response = self.pages.login_form(request, why, status_code=401)
            else:
                # A browser (it sends Sec-Fetch-Mode) gets no challenge: it
                # would open its own password dialog over the login form.
                browser = "sec-fetch-mode" in request.headers
                response = PlainTextResponse(
                    "401 Unauthorized: log in with the dashboard's token or password\n",
                    status_code=401,
                    headers={} if browser else {"WWW-Authenticate": self.auth.challenge()},
                )
            await response(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)


class LoginPages:
    """``/login`` and ``/logout`` of :class:`~jobq.web.app.Dashboard`."""

    if TYPE_CHECKING:  # provided by Dashboard
        auth: Auth | None
        sessions: Sessions

        def render(self, request: Request, name: str, status_code: int = 200, **context: Any) -> Response: ...

        def check_origin(self, request: Request) -> None: ...

        async def form(self, request: Request) -> dict[str, str]: ...

        async def read_form(self, request: Request) -> dict[str, str]: ...

        @staticmethod
        def base(request: Request) -> str: ...

    def login_form(self, request: Request, why: str, *, status_code: int = 200, target: str | None = None) -> Response:
        """The login form; after it, the browser goes to ``target`` (default:
        the page it asked for)."""
        if target is None:
            asked = route_path(request.scope)
            target = asked + (f"?{request.url.query}" if request.url.query else "")
        return self.render(
            request,
            "login.html",
            status_code=status_code,
            page="login",
            notice=NOTICES[why],
            failed=why == "wrong",
            target=local_target(target),
            kind="token" if isinstance(self.auth, TokenAuth) else "password",
            csrf="",
        )

    def _logged_in(self, request: Request, target: str) -> Response:
        """Redirects to ``target`` with a new session cookie."""
        cookie, session = self.sessions.issue()
        response = RedirectResponse(self.base(request) + local_target(target), status_code=303)
        response.set_cookie(
            SESSION_COOKIE,
            cookie,
            max_age=int(self.sessions.ttl),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path=self.base(request) or "/",
        )
        return response

    async def login_page(self, request: Request) -> Response:
        """GET /login: the form; or, given ``?token=`` (the link ``jobq
        dashboard`` prints), a session at once."""
        token = request.query_params.get("token")
        if token is not None:
            if not isinstance(self.auth, TokenAuth) or not self.auth.check_token(token):
                challenge = self.auth.challenge() if self.auth is not None else 'Bearer realm="jobq"'
                raise HTTPException(401, "wrong or missing token", headers={"WWW-Authenticate": challenge})
            return self._logged_in(request, "/")
        if self.auth is None:
            return RedirectResponse(self.base(request) + "/", status_code=303)
        why = "out" if request.query_params.get("ended") else "login"
        return self.login_form(request, why, target=request.query_params.get("next") or "/")

    async def login(self, request: Request) -> Response:
        """POST /login: the form's credentials for a session. A form another
        site posts is refused (403) like any other."""
        fields = await self.read_form(request)
        target = local_target(fields.get("next"))
        if self.auth is None:
            return RedirectResponse(self.base(request) + target, status_code=303)
        if not self.auth.check_login(fields):
            return self.login_form(request, "wrong", status_code=401, target=target)
        return self._logged_in(request, target)

    async def logout(self, request: Request) -> Response:
        """POST /logout (CSRF-checked): ends the session and drops its cookie."""
        await self.form(request)
        session = request.scope.get(SESSION_KEY)
        if isinstance(session, Session):
            self.sessions.end(session)
        response = RedirectResponse(self.base(request) + "/login?ended=1", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path=self.base(request) or "/")
        return response
