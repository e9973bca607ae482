"""Who may use the dashboard: a bearer token or a username and password.

Both compare in constant time. Credentials come from the caller or from the
environment (``JOBQ_DASHBOARD_TOKEN``, or ``JOBQ_DASHBOARD_USER`` with
``JOBQ_DASHBOARD_PASSWORD``). A browser logs in with them once, on the
login form, and then holds a session (:mod:`.sessions`).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..errors import InvalidOption

TOKEN_ENV = "JOBQ_DASHBOARD_TOKEN"
USER_ENV = "JOBQ_DASHBOARD_USER"
PASSWORD_ENV = "JOBQ_DASHBOARD_PASSWORD"
SESSION_COOKIE = "jobq_session"


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


@dataclass(frozen=True, slots=True)
class TokenAuth:
    """A secret token: sent as ``Authorization: Bearer <token>`` by scripts,
    or exchanged once at ``/login?token=<token>`` for a session cookie by a
    browser."""

    token: str = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.token, str) or len(self.token) < 8:
            raise InvalidOption("a dashboard token must be a str of at least 8 characters")

    def check_header(self, authorization: str) -> bool:
        scheme, _, value = authorization.partition(" ")
        return scheme.lower() == "bearer" and _same(value.strip(), self.token)

    def check_token(self, token: str) -> bool:
        return _same(token, self.token)

    def check_login(self, fields: Mapping[str, str]) -> bool:
        """The login form's fields: the token."""
        return _same(fields.get("token", ""), self.token)

    def challenge(self) -> str:
        return 'Bearer realm="jobq"'


@dataclass(frozen=True, slots=True)
class BasicAuth:
    """A username and password, checked with HTTP Basic authentication."""

    username: str
    password: str = field(repr=False)

    def __post_init__(self) -> None:
        if not self.username or not self.password:
            raise InvalidOption("dashboard username and password must both be non-empty")

    def check_header(self, authorization: str) -> bool:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return False
        user, sep, password = decoded.partition(":")
        # Both comparisons always run, so timing tells nothing about which failed.
        user_ok = _same(user, self.username)
        password_ok = _same(password, self.password)
        return bool(sep) and user_ok and password_ok

    def check_token(self, token: str) -> bool:
        return False

    def check_login(self, fields: Mapping[str, str]) -> bool:
        """The login form's fields: the username and password."""
        user_ok = _same(fields.get("username", ""), self.username)
        password_ok = _same(fields.get("password", ""), self.password)
        return user_ok and password_ok

    def challenge(self) -> str:
        return 'Basic realm="jobq", charset="UTF-8"'


Auth = TokenAuth | BasicAuth


def auth_from_env(environ: Mapping[str, str] | None = None) -> Auth | None:
    """The credentials the environment configures, or ``None``."""
    env = os.environ if environ is None else environ
    token = env.get(TOKEN_ENV)
    user, password = env.get(USER_ENV), env.get(PASSWORD_ENV)
    if token:
        return TokenAuth(token)
    if user or password:
        if not (user and password):
            raise InvalidOption(f"set both {USER_ENV} and {PASSWORD_ENV}, or {TOKEN_ENV}")
        return BasicAuth(user, password)
    return None
