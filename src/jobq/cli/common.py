"""What every ``jobq`` command shares: the ``--url`` option and its
``$JOBQ_URL`` default, opening the queue, durations, asking before a
destructive change, loading ``MODULE:NAME``, one-line errors, and printing
tables and JSON."""

from __future__ import annotations

import argparse
import difflib
import importlib
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import unquote, urlsplit

from ..backends import DEFAULT_URL, connect
from ..errors import JobqError, StoreUnavailable
from ..job import JobStatus
from ..queue import Queue

URL_ENV = "JOBQ_URL"

#: Makes a subcommand with ``--url``: ``command(name, help)``.
Command = Callable[[str, str], argparse.ArgumentParser]


class CommandError(JobqError):
    """The command cannot run as given."""


class UsageError(CommandError):
    """The command line itself is wrong (an unknown command or option, a
    missing argument): exit status 2."""

    exit_status = 2


def suggestion(word: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the choice closest to ``word``, else ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


# -- durations ---------------------------------------------------------------------

DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}  # seconds per unit
_DURATION_PART = re.compile(r"((?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?)(ms|s|m|h|d|w)")


def duration(text: str) -> float:
    """Seconds from a duration: a number of seconds (``90``, ``1.5``,
    ``1e3``) or numbers with units, ``ms``, ``s``, ``m``, ``h``, ``d``,
    ``w`` (``500ms``, ``10m``, ``1h30m``, ``7d``). The one parser of every
    option that takes a duration (``--delay``, ``--older-than``,
    ``--shutdown-timeout``)."""
    spelled = text.strip().lower().replace(" ", "")
    try:
        value = float(spelled)
    except ValueError:
        unsigned = spelled.removeprefix("-")
        parts = _DURATION_PART.findall(unsigned)
        if not parts or "".join(n + u for n, u in parts) != unsigned:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a duration (like 90, 1.5s, 10m, 1h30m, 7d)"
            ) from None
        value = sum(float(number) * DURATION_UNITS[unit] for number, unit in parts)
        value = -value if unsigned != spelled else value
    if value < 0:
        raise argparse.ArgumentTypeError(f"a duration cannot be negative, not {text!r}")
    return value


def say_seconds(seconds: float) -> str:
    """``90`` as ``"90 s"``, ``86400`` as ``"1 d"``: the largest whole unit."""
    for unit in ("w", "d", "h", "m"):
        size = DURATION_UNITS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:g} {unit}"
    return f"{seconds:g} s"


# -- the queue's URL -----------------------------------------------------------------


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
        if not url_given(args):
            path = Path(unquote(urlsplit(url).path[1:]))
            if not path.exists():
                raise CommandError(
                    f"no queue here: {path.resolve()} does not exist (the default URL, {url}); pass --url"
                    f" or set ${URL_ENV} to name your queue, or run `jobq migrate` to create it here"
                )
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


# -- asking before a destructive change ----------------------------------------------


def add_confirm_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-y", "--yes", action="store_true", help="do it without asking")
    parser.add_argument("--dry-run", action="store_true", help="say what it would do, and change nothing")


def confirm(args: argparse.Namespace, plan: str, question: str, **details: Any) -> bool:
    """Whether to carry out ``plan`` (one line: what the command will
    change). ``--dry-run``: prints the plan and returns False. ``--yes``:
    True. Otherwise asks on the terminal; with no terminal to ask on (stdin
    is a pipe, a file, ``/dev/null``) it refuses in one line that says to
    pass ``--yes``. ``details`` join the plan in ``--dry-run --json``."""
    if args.dry_run:
        if args.json:
            print(json.dumps({"dry_run": True, "plan": plan, **details}))
        else:
            print(f"{plan} (dry run: nothing changed)")
        return False
    if args.yes:
        return True
    if not sys.stdin.isatty():
        raise CommandError(f"{plan}: pass --yes to go ahead (stdin is not a terminal, so jobq cannot ask)")
    print(f"{plan}.", file=sys.stderr)
    print(f"{question} [y/N] ", end="", file=sys.stderr, flush=True)
    answer = sys.stdin.readline().strip().lower()
    if answer not in ("y", "yes"):
        raise CommandError("not confirmed; nothing was changed")
    return True


# -- MODULE:NAME ------------------------------------------------------------------------

TARGET_EXAMPLE = "myapp.tasks:app"


def _import(name: str) -> ModuleType | None:
    """The module ``name``; ``None`` if there is no such module (a module it
    imports that is missing is an error, as is any failure of its code).
    :class:`StoreUnavailable` goes through, for a worker to wait out."""
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            return None
        raise CommandError(f"cannot import {name!r}: {exc}") from None
    except ImportError as exc:
        raise CommandError(f"cannot import {name!r}: {exc}") from None
    except SyntaxError as exc:
        where = f" ({exc.filename}, line {exc.lineno})" if exc.filename else ""
        raise CommandError(f"cannot import {name!r}: SyntaxError: {exc.msg}{where}") from None
    except StoreUnavailable:
        raise
    except Exception as exc:  # noqa: BLE001 - the application's code: reported in one line
        raise CommandError(f"cannot import {name!r}: {raised('it', exc)}") from None


def _runnable_names(module: ModuleType) -> list[str]:
    """The names in ``module`` that ``jobq worker`` could run: apps and processors."""
    from ..processor.processor import JobProcessor
    from ..tasks import App

    return [name for name, value in vars(module).items() if isinstance(value, App | JobProcessor)]


def _use_module_name(spec: str, module: ModuleType | None = None) -> str:
    names = _runnable_names(module) if module is not None else []
    example = f"{spec}:{names[0]}" if names else TARGET_EXAMPLE
    return f"use MODULE:NAME, for example {example}"


def load_target(spec: str) -> Any:
    """Imports ``MODULE:NAME`` (``NAME`` may be dotted). A module that
    cannot be imported (missing, a syntax error, an exception at import) is
    a :class:`CommandError`, except :class:`StoreUnavailable`, which a
    worker waits out. Without a colon, ``MODULE.NAME`` is tried, and a bare
    module is refused with the ``MODULE:NAME`` to write instead."""
    module_name, sep, attr = spec.partition(":")
    if not sep:
        module = _import(spec) if spec and not spec.startswith(".") else None
        if module is not None:
            raise CommandError(f"{spec} is a module; {_use_module_name(spec, module)}")
        module_name, _, attr = spec.rpartition(".")
    if not module_name or not attr:
        raise CommandError(f"{spec!r} is not MODULE:NAME ({_use_module_name(spec)})")
    module = _import(module_name)
    if module is None:
        hint = "" if sep else f"; {_use_module_name(spec)}"
        raise CommandError(f"cannot import {module_name!r}: no module named {module_name!r}{hint}")
    target: Any = module
    for part in attr.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            names = _runnable_names(module)
            known = f" (it has {', '.join(names)})" if names else ""
            hint = "" if sep else f"; {_use_module_name(module_name, module)}"
            raise CommandError(f"module {module_name!r} has no attribute {attr!r}{known}{hint}") from None
    return target
