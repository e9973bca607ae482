"""Fixtures for the dashboard tests: a SQLite queue with a few jobs, the
dashboard app over it, and an HTTP client that talks to the app in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import jobq

pytest.importorskip("starlette", reason="the dashboard needs the web extra")
httpx = pytest.importorskip("httpx")

from webtest_helpers import ORIGIN, TOKEN  # noqa: E402


@pytest.fixture
async def web_queue(tmp_path: Path) -> AsyncIterator[jobq.Queue]:
    async with jobq.connect(f"sqlite:///{tmp_path / 'web.db'}") as queue:
        yield queue


@pytest.fixture
async def client(web_queue: jobq.Queue) -> AsyncIterator[Any]:
    from jobq.web import create_app

    app = create_app(web_queue, auth=TOKEN)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url=ORIGIN, headers={"Authorization": f"Bearer {TOKEN}"}
    ) as http:
        yield http


@pytest.fixture
async def anonymous(web_queue: jobq.Queue) -> AsyncIterator[Any]:
    from jobq.web import create_app

    app = create_app(web_queue, auth=TOKEN)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ORIGIN) as http:
        yield http
