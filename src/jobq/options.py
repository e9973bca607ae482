"""Rejecting unknown option names with a suggestion, instead of ignoring typos."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import UnknownOption


def reject_unknown(where: str, given: Mapping[str, Any], known: Iterable[str]) -> None:
    known = sorted(known)
    for name in given:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f"; known options: {', '.join(known)}"
        raise UnknownOption(f"{where} got an unknown option {name!r}{hint}")
