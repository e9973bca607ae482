"""Real processes for the framework and example tests: web servers
(uvicorn, gunicorn, Django's runserver) and workers, started with the
jobq under test and the repository's ``examples`` package importable, their
output kept in files, waited on by HTTP readiness and polling with generous
deadlines (never fixed sleeps), and stopped (SIGTERM, then SIGKILL) at the
end of the test, pass or fail."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx

import jobq

ROOT = Path(__file__).resolve().parents[2]
SRC = Path(jobq.__file__).resolve().parents[1]
DEADLINE = 120.0  # seconds; generous for a loaded 2-core machine, a pass never comes near it
STOP_DEADLINE = 60.0  # seconds a process gets to exit after SIGTERM


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment(extra: Mapping[str, str] | None = None, *paths: Path) -> dict[str, str]:
    """The test's environment without jobq's own variables, with ``paths``,
    the repository root (``examples``) and the jobq under test importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JOBQ_", "SHOP_", "MESSAGING_"))}
    env["PYTHONPATH"] = os.pathsep.join([*(str(p) for p in paths), str(ROOT), str(SRC)])
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


class Process:
    def __init__(self, name: str, popen: subprocess.Popen[bytes], log: Path) -> None:
        self.name, self.popen, self.log = name, popen, log

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def describe(self) -> str:
        return f"{self.name} (pid {self.popen.pid}, exit {self.popen.poll()}); its output:\n{self.output()}"

    def stop(self, timeout: float = STOP_DEADLINE) -> int:
        """SIGTERM, then waits; SIGKILL past ``timeout``. Returns the exit status."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(30)
            raise AssertionError(f"{self.name} did not stop within {timeout:g} s of SIGTERM") from None


class Processes:
    """Processes of one test; whatever still runs at the end is stopped."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.all: list[Process] = []

    def start(self, name: str, argv: list[str], *, env: Mapping[str, str], cwd: Path | None = None) -> Process:
        log = self.workdir / f"{name}.log"
        with open(log, "wb") as out:
            popen = subprocess.Popen(
                argv, cwd=cwd or self.workdir, env=dict(env), stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        process = Process(name, popen, log)
        self.all.append(process)
        return process

    def python(self, name: str, *args: str, env: Mapping[str, str], cwd: Path | None = None) -> Process:
        return self.start(name, [sys.executable, *args], env=env, cwd=cwd)

    def check_alive(self) -> None:
        for process in self.all:
            if not process.alive():
                raise AssertionError(f"{process.describe()}\nexited early")

    def close(self) -> None:
        for process in reversed(self.all):
            if process.alive():
                with contextlib.suppress(AssertionError):
                    process.stop()


def wait_until(
    predicate: Callable[[], Any], what: str, *, processes: Processes | None = None, timeout: float = DEADLINE
) -> Any:
    """Polls ``predicate`` until it returns something truthy; fails early if
    one of ``processes`` exited, saying what it printed."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if processes is not None:
            processes.check_alive()
        if time.monotonic() >= deadline:
            logs = "".join(f"\n--- {p.describe()}" for p in processes.all) if processes else ""
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}{logs}")
        time.sleep(0.05)


def wait_http(url: str, processes: Processes, timeout: float = DEADLINE) -> None:
    """Waits until ``url`` answers (any status)."""

    def answers() -> bool:
        try:
            httpx.get(url, timeout=5.0)
        except httpx.TransportError:
            return False
        return True

    wait_until(answers, f"{url} to answer", processes=processes, timeout=timeout)
