"""``python -m examples.messaging``: serves the API, with its worker, on
http://127.0.0.1:8000 until Ctrl-C; prints where the dashboard is and how
to drive it with the load script."""

from __future__ import annotations

import argparse
import os
import secrets


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.messaging", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args()
    token = os.environ.setdefault("JOBQ_DASHBOARD_TOKEN", secrets.token_urlsafe(16))

    import uvicorn

    from .config import settings

    base = f"http://{args.host}:{args.port}"
    print(
        f"messaging example: API on {base} (docs {base}/docs), jobs in {settings.url},"
        f" {settings.provider} providers {', '.join(settings.providers)}\n"
        f"  dashboard: {base}/jobq/login?token={token}\n"
        f"  drive it:  python -m examples.messaging.load --api {base}   (or: make example-load)",
        flush=True,
    )
    uvicorn.run("examples.messaging.api:api", host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
