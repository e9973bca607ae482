"""Dashboard sessions: a signed cookie per login, which expires, and the
CSRF token that goes with it.

A login (the form at ``/login``, or ``/login?token=...``) gets a session
cookie: a random session id, when it ends, and a fingerprint of the
credentials it was made with, signed with the dashboard's secret by
:mod:`itsdangerous`. Nothing is kept on the server, so a session outlives a
restart of the dashboard as long as the secret does (``JOBQ_DASHBOARD_SECRET``
or ``JOBQ_DASHBOARD_SECRET_FILE``, see :func:`load_secret`); changing the
token or password ends every session made with the old one. A session ends
after ``ttl`` seconds, or at logout (its id is then refused by this process
until it would have expired anyway; the browser drops the cookie).

Each session has its own CSRF token, derived from its id; requests
authenticated by an ``Authorization`` header (scripts) share one derived
from the credentials.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from itsdangerous import BadSignature, URLSafeSerializer

from ..errors import InvalidOption
from .auth import Auth, TokenAuth

SECRET_ENV = "JOBQ_DASHBOARD_SECRET"
SECRET_FILE_ENV = "JOBQ_DASHBOARD_SECRET_FILE"
MIN_SECRET_CHARS = 32  # a secret shorter than this is refused
SECRET_BYTES = 32  # random bytes in a secret jobq makes
SESSION_TTL = 12 * 3600.0  # seconds a login lasts
MAX_SESSION_TTL = 366 * 86_400.0  # seconds: the longest session_ttl accepted


def _now() -> float:
    """The time sessions are dated by (a function, so tests can move it)."""
    return time.time()


def load_secret(environ: Mapping[str, str] | None = None, path: str | os.PathLike[str] | None = None) -> bytes | None:
    """The dashboard's secret: ``JOBQ_DASHBOARD_SECRET`` (at least 32
    characters), else the contents of the file ``path`` or
    ``$JOBQ_DASHBOARD_SECRET_FILE``, which is created (mode 0600, 32 random
    bytes) if missing; ``None`` when none is configured."""
    env = os.environ if environ is None else environ
    value = env.get(SECRET_ENV)
    if value:
        if len(value) < MIN_SECRET_CHARS:
            raise InvalidOption(f"{SECRET_ENV} must be at least {MIN_SECRET_CHARS} characters")
        return value.encode()
    chosen = path if path is not None else env.get(SECRET_FILE_ENV)
    if not chosen:
        return None
    return _secret_file(Path(chosen))


def _secret_file(path: Path) -> bytes:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        text = base64.urlsafe_b64encode(secrets.token_bytes(SECRET_BYTES)).decode().rstrip("=")
        try:
            # O_EXCL: two dashboards starting at once do not write two secrets.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return _secret_file(path)
        except OSError as exc:
            raise InvalidOption(f"cannot create the dashboard secret file {str(path)!r}: {exc.strerror}") from None
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text + "\n")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidOption(f"cannot read the dashboard secret file {str(path)!r}: {exc}") from None
    if len(text) < MIN_SECRET_CHARS:
        raise InvalidOption(f"the dashboard secret file {str(path)!r} holds fewer than {MIN_SECRET_CHARS} characters")
    return text.encode()


def derived_token(secret: bytes) -> str:
    """A login token derived from the secret: the one ``jobq dashboard``
    prints when no credentials are configured, the same after a restart
    whenever the secret is."""
    digest = hmac.new(secret, b"jobq dashboard token", hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:24]).decode()


def check_ttl(ttl: object) -> float:
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not 0 < ttl <= MAX_SESSION_TTL:
        raise InvalidOption(f"session_ttl must be seconds from 0 to {MAX_SESSION_TTL:.0f}, not {ttl!r}")
    return float(ttl)


@dataclass(frozen=True, slots=True)
class Session:
    """One login."""

    sid: str
    expires_at: float  # epoch seconds
    csrf: str


class Sessions:
    """Issues and checks the session cookies of one dashboard."""

    def __init__(self, secret: bytes, auth: Auth | None, ttl: float = SESSION_TTL) -> None:
        self.secret = secret
        self.ttl = check_ttl(ttl)
        self._signer = URLSafeSerializer(secret, salt="jobq-session")
        material = b"" if auth is None else _material(auth).encode()
        self._who = hmac.new(secret, b"who:" + material, hashlib.sha256).hexdigest()[:32]
        #: The CSRF token of requests authenticated by a header (or of a
        #: dashboard without authentication).
        self.header_csrf = self._token(b"csrf-header:" + self._who.encode())
        self._ended: dict[str, float] = {}  # session ids logged out -> when they would expire
        self._lock = threading.Lock()

    def _token(self, material: bytes) -> str:
        return hmac.new(self.secret, material, hashlib.sha256).hexdigest()

    def issue(self) -> tuple[str, Session]:
        """A new session: the cookie's value, and the session."""
        sid = secrets.token_urlsafe(18)
        expires_at = _now() + self.ttl
        value = self._signer.dumps({"sid": sid, "exp": int(expires_at), "who": self._who})
        return value, Session(sid, float(int(expires_at)), self._token(b"csrf-session:" + sid.encode()))

    def read(self, cookie: str) -> Session | None:
        """The session a cookie carries, or ``None`` when it is forged,
        expired, logged out, or made with other credentials."""
        try:
            payload = self._signer.loads(cookie)
        except BadSignature:
            return None
        if not isinstance(payload, dict):
            return None
        sid, expires_at, who = payload.get("sid"), payload.get("exp"), payload.get("who")
        if not isinstance(sid, str) or not isinstance(expires_at, int) or not isinstance(who, str):
            return None
        if not hmac.compare_digest(who, self._who) or expires_at <= _now():
            return None
        with self._lock:
            if sid in self._ended:
                return None
        return Session(sid, float(expires_at), self._token(b"csrf-session:" + sid.encode()))

    def end(self, session: Session) -> None:
        """Logs a session out (in this process; the browser drops its cookie)."""
        now = _now()
        with self._lock:
            self._ended = {sid: at for sid, at in self._ended.items() if at > now}
            self._ended[session.sid] = session.expires_at


def _material(auth: Auth) -> str:
    """What a session's credential fingerprint is made of."""
    return "token:" + auth.token if isinstance(auth, TokenAuth) else f"basic:{auth.username}:{auth.password}"
