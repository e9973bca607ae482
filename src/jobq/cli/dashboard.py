"""``jobq dashboard``: serves the web dashboard (needs the ``web`` extra).

Without a login configured in the environment it serves on a loopback
address only, behind a token it prints in the URL (or, with ``--no-auth``,
behind nothing); anywhere else it refuses to start. The token is derived
from the dashboard's secret (``JOBQ_DASHBOARD_SECRET``, or the file of
``--secret-file`` / ``JOBQ_DASHBOARD_SECRET_FILE``), so with a secret kept
the token and the browsers' sessions survive a restart; without one, both
last as long as the process. On loopback it answers
only requests whose ``Host`` is a loopback name or one given with
``--allowed-host``, so a DNS-rebinding page cannot reach it.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import secrets
import socket
from collections.abc import Iterator
from typing import Any

from .common import CommandError, opened

DASHBOARD_HOST = "127.0.0.1"
DASHBOARD_PORT = 8080
MAX_PORT = 65_535


def check_port(port: int | None, flag: str) -> None:
    """A TCP port to listen on: 1 to 65535."""
    if port is not None and not 1 <= port <= MAX_PORT:
        raise CommandError(f"{flag} must be a TCP port from 1 to {MAX_PORT}, not {port}")


def listen_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port``, as uvicorn would bind it, so a
    port in use is found before anything is printed."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family=family, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        why = (
            "the port is in use (another dashboard? pick another with --port)"
            if exc.errno == errno.EADDRINUSE
            else exc.strerror or str(exc)
        )
        raise CommandError(f"cannot listen on {host}:{port}: {why}") from None
    sock.set_inheritable(True)
    return sock


def _graceful_server_class() -> Any:
    import uvicorn

    class GracefulServer(uvicorn.Server):
        """Returns after a graceful stop on SIGTERM or SIGINT, so the command
        exits 0; uvicorn would raise the signal again once it has stopped."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                yield
                captured = getattr(self, "_captured_signals", None)
                if isinstance(captured, list):
                    captured.clear()

    return GracefulServer


async def cmd_dashboard(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from ..web import BasicAuth, TokenAuth, auth_from_env, create_app
        from ..web.hosts import is_loopback
        from ..web.sessions import SECRET_FILE_ENV, derived_token, load_secret
    except ImportError as exc:
        raise CommandError(f"the dashboard needs the web extra: pip install 'jobq[web]' ({exc})") from None
    check_port(args.port, "--port")
    auth: TokenAuth | BasicAuth | None = auth_from_env()
    kept = load_secret(path=args.secret_file)
    secret = kept or secrets.token_bytes(32)
    if not is_loopback(args.host) and auth is None:
        raise CommandError(
            f"refusing to serve on {args.host} without authentication: set JOBQ_DASHBOARD_TOKEN"
            " (or JOBQ_DASHBOARD_USER and JOBQ_DASHBOARD_PASSWORD), or bind 127.0.0.1"
        )
    if args.no_auth:
        if not is_loopback(args.host):
            raise CommandError("--no-auth is allowed on a loopback address only")
        auth = None
    elif auth is None:
        auth = TokenAuth(derived_token(secret))
    async with opened(args) as queue:
        await queue.counts()  # fails now, in one line, if the store is unreachable
        sock = listen_socket(args.host, args.port)  # and here if the port is taken, before the URL is printed
        with contextlib.closing(sock):
            # On loopback, only loopback Host names (and --allowed-host ones) are
            # answered, which stops DNS-rebinding pages; elsewhere authentication
            # is required, and --allowed-host narrows the names further.
            allowed = args.allowed_host or []
            hosts = allowed if allowed or is_loopback(args.host) else None
            app = create_app(queue, auth=auth, secret=secret, allowed_hosts=hosts)
            host = f"[{args.host}]" if ":" in args.host else args.host
            where = f"http://{host}:{args.port}/"
            if isinstance(auth, TokenAuth):
                where += f"login?token={auth.token}"
            print(f"jobq dashboard for {queue.store.name}: {where}", flush=True)
            if isinstance(auth, BasicAuth):
                print(f"log in as {auth.username} (password from the environment)", flush=True)
            if kept is None and auth is not None:
                print(
                    f"sessions{' and the token' if isinstance(auth, TokenAuth) else ''} end when it stops;"
                    f" --secret-file (or {SECRET_FILE_ENV}) keeps them across restarts",
                    flush=True,
                )
            config = uvicorn.Config(
                app, host=args.host, port=args.port, log_level=args.log_level_uvicorn, access_log=False,
                lifespan="off", server_header=False,
            )  # fmt: skip
            server = _graceful_server_class()(config)
            await server.serve(sockets=[sock])
            if not server.started:
                raise CommandError(f"could not listen on {args.host}:{args.port}")
    return 0
