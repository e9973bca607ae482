"""A ``jobq worker`` started while PostgreSQL cannot be reached waits for it,
saying so, and runs jobs once it can: it rides out the outage as a running
worker does, instead of exiting at once.

The server stays up for the rest of the suite: the worker is pointed at a
port where nothing listens, and a TCP relay to the real server is opened on
that port later, which to the worker is the server coming back.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

import jobq

DEADLINE = 60.0  # seconds for anything expected to happen


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Relay:
    """Forwards TCP connections from ``127.0.0.1:port`` to ``target``, on an
    event loop of its own thread, once :meth:`start` is called."""

    def __init__(self, port: int, target: tuple[str, int]) -> None:
        self.port, self.target = port, target
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: asyncio.AbstractServer | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        for task in (
            asyncio.create_task(self._pipe(reader, up_writer)),
            asyncio.create_task(self._pipe(up_reader, writer)),
        ):
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(DEADLINE)

    def stop(self) -> None:
        if self.thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(DEADLINE)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(DEADLINE)
        self.loop.close()


@pytest.fixture
def relay_port(pg_url: str) -> Iterator[tuple[int, Relay]]:
    parts = urlsplit(pg_url)
    port = free_port()
    relay = Relay(port, (parts.hostname or "127.0.0.1", parts.port or 5432))
    try:
        yield port, relay
    finally:
        relay.stop()


APP = """
import jobq

def make(queue):
    processor = jobq.JobProcessor(queue, poll_interval=0.1)

    @processor.handler("t")
    async def handle(job):
        return {"ran": job.data}

    return processor
"""


def wait_for(predicate: object, what: str) -> None:
    deadline = time.monotonic() + DEADLINE
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.slow
def test_a_worker_started_while_the_server_is_down_waits_for_it(
    tmp_path: Path, pg_url: str, relay_port: tuple[int, Relay]
) -> None:
    port, relay = relay_port
    parts = urlsplit(pg_url)
    netloc = parts.netloc.rsplit("@", 1)
    via_relay = urlunsplit(
        parts._replace(netloc=(netloc[0] + "@" if len(netloc) == 2 else "") + f"127.0.0.1:{port}")
    )
    (tmp_path / "app.py").write_text(textwrap.dedent(APP))
    log = tmp_path / "worker.log"
    with log.open("w") as err:
        worker = subprocess.Popen(
            [sys.executable, "-m", "jobq", "worker", "app:make", "--url", via_relay],
            cwd=tmp_path, env=dict(os.environ), stdout=subprocess.DEVNULL, stderr=err, text=True,
        )  # fmt: skip
    try:
        wait_for(lambda: log.read_text().count("cannot reach its store") >= 2, "two logged retries")
        assert worker.poll() is None, log.read_text()  # still waiting, not exited
        with jobq.connect_sync(pg_url) as queue:
            job = queue.enqueue("t", 7)
            relay.start()  # the server "comes back"

            def done() -> bool:
                got = queue.get_job(job.id)
                return got is not None and got.status is jobq.JobStatus.COMPLETED

            wait_for(done, "the job to complete")
            assert queue.get_job(job.id).result == {"ran": 7}  # type: ignore[union-attr]
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(DEADLINE) == 0, log.read_text()
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    text = log.read_text()
    assert "Traceback" not in text and "trying again in" in text
