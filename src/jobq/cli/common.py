"""What every ``jobq`` command shares: the ``--url`` option and its
``$JOBQ_URL`` default, opening the queue, one-line errors, and printing
tables and JSON."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from ..backends import DEFAULT_URL, connect
from ..errors import JobqError
from ..job import JobStatus
from ..queue import Queue

URL_ENV = "JOBQ_URL"

#: Makes a subcommand with ``--url``: ``command(name, help)``.
Command = Callable[[str, str], argparse.ArgumentParser]


class CommandError(JobqError):
    """The command cannot run as given."""


def add_url_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help=f"queue URL (default ${URL_ENV}, else {DEFAULT_URL})")


def url_given(args: argparse.Namespace) -> bool:
    """Whether the user named a URL (``--url`` or ``$JOBQ_URL``)."""
    return bool(args.url or os.environ.get(URL_ENV))


def url_of(args: argparse.Namespace) -> str:
    return str(args.url or os.environ.get(URL_ENV) or DEFAULT_URL)


def opened(args: argparse.Namespace) -> AbstractAsyncContextManager[Queue]:
    """The queue the command's URL names, opened by ``async with`` and closed
    on leaving it."""
    return connect(url_of(args))


def one_line(text: str) -> str:
    """``text`` with its whitespace runs (line breaks included) as single spaces."""
    return " ".join(text.split())


def error_line(exc: BaseException | str) -> str:
    """The one line ``jobq`` prints for an error, even when a driver's
    message spans several."""
    return "jobq: error: " + one_line(str(exc))


def json_arg(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise CommandError(f"{what} is not valid JSON: {exc}") from None
    except RecursionError:
        raise CommandError(f"{what} is JSON nested too deeply") from None


def status_names() -> list[str]:
    return [s.value for s in JobStatus]


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], numeric: Sequence[int] = ()) -> str:
    """Rows under headers, each column as wide as its widest cell; the
    ``numeric`` columns aligned right."""
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def emit(value: Any) -> None:
    """Prints ``value`` as indented JSON (``--json`` of the read commands)."""
    print(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"
