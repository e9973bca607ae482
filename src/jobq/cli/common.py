"""What every ``jobq`` command shares: the ``--url`` option and its
``$JOBQ_URL`` default, opening the queue, one-line errors, and printing
tables and JSON."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any
from urllib.parse import urlsplit

from ..backends import DEFAULT_URL, connect
from ..errors import JobqError, StoreUnavailable
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


def opened(args: argparse.Namespace, *, read_only: bool = False) -> AbstractAsyncContextManager[Queue]:
    """The queue the command's URL names, opened by ``async with`` and closed
    on leaving it. ``read_only`` (the commands that only read: stats, list,
    show) opens a SQLite file without changing it: no schema upgrade, no
    journal switch; a file that needs either fails in one line that says to
    run ``jobq migrate``."""
    url = url_of(args)
    if read_only and urlsplit(url).scheme.lower() == "sqlite":
        return connect(url, read_only=True)
    return connect(url)


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


def raised(what: str, exc: BaseException) -> str:
    """One line for an exception the application's code raised."""
    return f"{what} raised {type(exc).__name__}: {exc}" if str(exc) else f"{what} raised {type(exc).__name__}"


def load_target(spec: str) -> Any:
    """Imports ``module:attribute`` (``module.attribute`` also works). A
    module that cannot be imported (missing, a syntax error, an exception at
    import) is a :class:`CommandError`, except :class:`StoreUnavailable`,
    which a worker waits out."""
    module_name, sep, attr = spec.partition(":")
    if not sep:
        module_name, _, attr = spec.rpartition(".")
    if not module_name or not attr:
        raise CommandError(f"{spec!r} is not MODULE:ATTRIBUTE (for example myapp.jobs:app)")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CommandError(f"cannot import {module_name!r}: {exc}") from None
    except SyntaxError as exc:
        where = f" ({exc.filename}, line {exc.lineno})" if exc.filename else ""
        raise CommandError(f"cannot import {module_name!r}: SyntaxError: {exc.msg}{where}") from None
    except StoreUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - the application's code: reported in one line
        raise CommandError(f"cannot import {module_name!r}: {raised('it', exc)}") from None
    target: Any = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise CommandError(f"module {module_name!r} has no attribute {attr!r}") from None
    return target
