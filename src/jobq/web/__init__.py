"""jobq's web dashboard (needs the ``web`` extra: ``pip install 'jobq[web]'``).

``create_app(queue, auth=...)`` returns an ASGI application to serve with
uvicorn (``jobq dashboard`` does) or to mount inside a Starlette or FastAPI
application.
"""

from __future__ import annotations

try:
    import itsdangerous  # noqa: F401
    import jinja2  # noqa: F401
    import starlette  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    from ..errors import BackendMissing

    raise BackendMissing(f"the dashboard needs the web extra: pip install 'jobq[web]' ({exc})") from None

from .app import ROUTES, create_app
from .auth import BasicAuth, TokenAuth, auth_from_env

__all__ = ["ROUTES", "BasicAuth", "TokenAuth", "auth_from_env", "create_app"]
