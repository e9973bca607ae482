"""The command line's small parts, in process: the one duration parser, the
suggestions, the worker's grace default, and sd_notify's datagram."""

from __future__ import annotations

import argparse
import secrets
import socket

import pytest

import jobq
from jobq.cli import build_parser
from jobq.cli.common import duration, say_seconds, suggestion
from jobq.cli.worker import WORKER_SHUTDOWN_TIMEOUT, _apply_options, sd_notify


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("90", 90), ("1.5", 1.5), ("1e3", 1000), ("500ms", 0.5), ("90s", 90), ("10m", 600), ("12h", 43200),
        ("7d", 604800), ("2w", 1209600), ("1h30m", 5400), ("1h 30m", 5400), (" 10M ", 600), (".5h", 1800),
        ("0", 0), ("0s", 0),
    ],
)  # fmt: skip
def test_durations(text: str, seconds: float) -> None:
    assert duration(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "10x", "10 minutes", "1.2.3s", "5mm", "h1", "1h-30m"])
def test_what_is_not_a_duration(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="is not a duration"):
        duration(text)


@pytest.mark.parametrize("text", ["-1", "-5m", "-1h30m"])
def test_durations_are_not_negative(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="cannot be negative"):
        duration(text)


def test_seconds_said_in_their_largest_whole_unit() -> None:
    assert [say_seconds(s) for s in (0, 1.5, 90, 600, 86400, 604800, 5400)] == [
        "0 s", "1.5 s", "90 s", "10 m", "1 d", "1 w", "90 m",
    ]  # fmt: skip


def test_suggestions() -> None:
    assert suggestion("wrker", ["worker", "enqueue"]) == "; did you mean 'worker'?"
    assert suggestion("zzz", ["worker", "enqueue"]) == ""


def test_every_duration_option_uses_the_one_parser() -> None:
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    typed = {
        (name, option)
        for name, sub in commands.items()
        for action in sub._actions
        for option in action.option_strings
        if action.type is duration
    }
    assert typed == {
        ("enqueue", "--delay"), ("prune", "--older-than"), ("worker", "--shutdown-timeout"),
    }  # fmt: skip


def worker_args(**given: object) -> argparse.Namespace:
    args = {"queues": None, "concurrency": None, "shutdown_timeout": None}
    return argparse.Namespace(**{**args, **given})


def test_the_worker_grace_fits_docker_stop_unless_the_application_chose_one() -> None:
    library_default = jobq.JobProcessor(jobq.MemoryQueue())
    _apply_options(library_default, worker_args())
    assert library_default.shutdown_timeout == WORKER_SHUTDOWN_TIMEOUT == 8
    chosen = jobq.JobProcessor(jobq.MemoryQueue(), shutdown_timeout=45)
    _apply_options(chosen, worker_args())
    assert chosen.shutdown_timeout == 45
    _apply_options(chosen, worker_args(shutdown_timeout=3.0))
    assert chosen.shutdown_timeout == 3
    with pytest.raises(jobq.InvalidOption, match="--shutdown-timeout"):
        _apply_options(chosen, worker_args(shutdown_timeout=float("nan")))


def test_sd_notify_sends_one_datagram(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sd_notify("READY=1") is False  # not under systemd: nothing sent
    name = f"jobq-unit-{secrets.token_hex(8)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind("\0" + name)
        listener.settimeout(10)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sd_notify("READY=1\nSTATUS=ok") is True
        assert listener.recv(100) == b"READY=1\nSTATUS=ok"
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)  # gone now: False, no error
    assert sd_notify("STOPPING=1") is False
