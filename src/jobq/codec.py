"""Checking and encoding what callers hand to a queue, before anything is stored."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from .errors import InvalidJob, InvalidOption, JobqError

MAX_TYPE_LENGTH = 255  # characters
MAX_PAYLOAD_BYTES = 1024 * 1024  # default limit on an encoded payload (and on metadata): 1 MiB
#: What an INTEGER column holds on every backend (PostgreSQL's is 32 bits):
#: the range of ``priority`` and ``max_attempts``.
INT_RANGE = (-(2**31), 2**31 - 1)
PRIORITY_RANGE = INT_RANGE
MAX_ATTEMPTS = INT_RANGE[1]  # the largest max_attempts a job may have
#: The longest delay, retry delay, snooze or age jobq accepts: 100 years, in
#: seconds. Every due time it can lead to is then a date every backend
#: stores and every reader (Python's ``datetime``, up to year 9999) holds.
MAX_DELAY = 100 * 365 * 86_400.0

_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_sorted_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"), sort_keys=True)
_STR = frozenset({str})
_SCALARS = frozenset({str, int, float, bool, type(None)})  # JSON values that hold no dict
_SURROGATE = re.compile("[\ud800-\udfff]")
_ascii_encoder = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":"))


def _utf8_size(text: str, what: str, error: type[JobqError] = InvalidJob) -> int:
    """How many bytes ``text`` takes in UTF-8; ``error`` (:class:`InvalidJob`)
    naming ``what`` if it holds a lone surrogate, which UTF-8 (and so every
    store but the in-memory one) cannot hold."""
    if text.isascii():  # O(1) in CPython
        return len(text)
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise error(
            f"{what} is not valid Unicode: it holds the lone surrogate {text[exc.start]!r},"
            " which UTF-8 cannot encode"
        ) from None


def encode(value: Any, what: str, limit: int | None = None) -> str:
    """JSON text for ``value``; :class:`InvalidJob` naming ``what`` if it has
    none, if it holds a string that is not valid Unicode or a dict whose keys
    collide as JSON strings, or if it takes more than ``limit`` bytes."""
    try:
        text = _encoder.encode(value)
    except RecursionError:
        raise InvalidJob(f"{what} is not JSON-serialisable: it is nested too deeply") from None
    except (TypeError, ValueError) as exc:
        raise InvalidJob(f"{what} is not JSON-serialisable: {exc}") from None
    size = _utf8_size(text, what)
    if limit is not None and size > limit:
        raise InvalidJob(f"{what} is {size} bytes encoded; the limit is {limit}")
    _check_keys(value, what)
    return text


def _check_keys(value: Any, what: str) -> None:
    """:class:`InvalidJob` if a dict in ``value`` has two keys JSON writes as
    the same string (``1`` and ``"1"``, ``True`` and ``"true"``): one value
    would be lost. Only a dict mixing ``str`` keys with others can; sorting
    its keys then fails, so a second encoding with sorted keys (in C, about
    as fast as the first) finds the values worth a closer look. A flat value
    needs neither."""
    if isinstance(value, dict):
        # The common case, a flat dict of str keys, is settled without encoding.
        if _STR.issuperset(map(type, value)) and _SCALARS.issuperset(map(type, value.values())):
            return
    elif not isinstance(value, (list, tuple)) or _SCALARS.issuperset(map(type, value)):
        return
    try:
        _sorted_encoder.encode(value)
    except (TypeError, RecursionError):
        pass
    else:
        return
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if any(not isinstance(key, str) for key in item):
                seen: set[str] = set()
                for key in item:
                    name = key if isinstance(key, str) else _encoder.encode(key)
                    if name in seen:
                        raise InvalidJob(
                            f"{what} has a dict whose keys collide once JSON makes them strings:"
                            f" {name!r} appears twice, and one of its values would be lost"
                        )
                    seen.add(name)
            stack.extend(v for v in item.values() if isinstance(v, (dict, list, tuple)))
        else:
            stack.extend(v for v in item if isinstance(v, (dict, list, tuple)))


def encode_result(value: Any) -> str | None:
    """A handler's return value as JSON text. Values JSON has no form for
    (datetimes, UUIDs, Decimals, dataclasses, ...) are converted as task
    results are (:func:`jobq.conversion.to_json_value`); one that cannot be
    converted raises :class:`InvalidJob` rather than being stored as
    something else. A lone surrogate is kept as a JSON escape (UTF-8 cannot
    hold it raw)."""
    if value is None:
        return None
    try:
        text = _encoder.encode(value)
    except (TypeError, ValueError, RecursionError):
        from .conversion import to_json_value  # msgspec, only when plain JSON falls short

        value = to_json_value(value, "the result")
        try:
            text = _encoder.encode(value)
        except (TypeError, ValueError, RecursionError) as exc:
            raise InvalidJob(f"the result cannot be stored as JSON: {exc}") from None
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = _ascii_encoder.encode(value)
    return text


def check_type(job_type: Any) -> str:
    if not isinstance(job_type, str):
        raise InvalidJob(f"job type must be a str, not {type(job_type).__name__}")
    if not job_type.strip():
        raise InvalidJob("job type must not be empty")
    if len(job_type) > MAX_TYPE_LENGTH:
        raise InvalidJob(f"job type is {len(job_type)} characters long; the limit is {MAX_TYPE_LENGTH}")
    check_text(job_type, "job type")
    return job_type


def check_queue_name(queue: Any) -> str:
    if not isinstance(queue, str) or not queue.strip():
        raise InvalidJob(f"queue must be a non-empty str, not {queue!r}")
    if len(queue) > MAX_TYPE_LENGTH:
        raise InvalidJob(f"queue name is {len(queue)} characters long; the limit is {MAX_TYPE_LENGTH}")
    check_text(queue, "queue name")
    return queue


def check_unique_key(unique_key: Any) -> str:
    if not isinstance(unique_key, str) or not unique_key or len(unique_key) > MAX_TYPE_LENGTH:
        raise InvalidJob(
            f"unique_key must be a non-empty str of at most {MAX_TYPE_LENGTH} characters,"
            f" not {unique_key[:80] if isinstance(unique_key, str) else unique_key!r}"
        )
    check_text(unique_key, "unique_key")
    return unique_key


def check_text(text: str, what: str, error: type[JobqError] = InvalidJob) -> str:
    """Text to store (a job type, a queue name, a unique key, a progress
    message, a reason): no NUL characters (PostgreSQL's text cannot hold
    them) and no lone surrogates (UTF-8 cannot), on every backend alike;
    ``error`` (:class:`InvalidJob`) otherwise."""
    if "\x00" in text:
        raise error(f"{what} must not contain NUL characters: {text[:80]!r}")
    _utf8_size(text, what, error)
    return text


def check_names(names: Iterable[Any] | None, what: str) -> None:
    """Names a verb filters on (queues, types): each a str that a store can
    hold, :class:`InvalidOption` naming ``what`` otherwise."""
    if names is None:
        return
    for name in names:
        if not isinstance(name, str):
            raise InvalidOption(f"{what} must be names (str), not {type(name).__name__}")
        if "\x00" in name or not name.isascii():
            check_text(name, what, InvalidOption)


def storable_id(job_id: str) -> bool:
    """Whether a store could hold ``job_id``: no job has an id with a NUL
    character or a lone surrogate, so a verb given one answers "no such job"
    without asking the store (whose driver would fail on it)."""
    if job_id.isascii():
        return "\x00" not in job_id
    try:
        check_text(job_id, "job id")
    except InvalidJob:
        return False
    return True


def check_priority(priority: Any) -> int:
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise InvalidJob(f"priority must be an int, not {type(priority).__name__}")
    low, high = PRIORITY_RANGE
    if not low <= priority <= high:
        raise InvalidJob(f"priority {priority} is outside {low}..{high}")
    return priority


def check_delay(delay: Any, what: str = "delay", error: type[JobqError] = InvalidJob) -> float:
    """Seconds, from a number or a :class:`~datetime.timedelta`, from 0 to
    :data:`MAX_DELAY`; ``error`` (:class:`InvalidJob`) naming ``what``
    otherwise. Every delay, retry delay, snooze and age is checked here."""
    if isinstance(delay, timedelta):
        delay = delay.total_seconds()
    if isinstance(delay, bool) or not isinstance(delay, (int, float)):
        raise error(f"{what} must be a number of seconds, not {type(delay).__name__}")
    if not (0 <= delay <= MAX_DELAY):  # False for NaN too
        raise error(f"{what} must be a number of seconds from 0 to {MAX_DELAY:.0f} (100 years), not {delay!r}")
    return float(delay)


def check_max_attempts(max_attempts: Any) -> int:
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int):
        raise InvalidJob(f"max_attempts must be an int, not {type(max_attempts).__name__}")
    if not 1 <= max_attempts <= MAX_ATTEMPTS:
        raise InvalidJob(f"max_attempts must be from 1 to {MAX_ATTEMPTS}, not {max_attempts}")
    return max_attempts


def encode_payload(data: Any, limit: int) -> str:
    return encode(data, "payload", limit)


def encode_metadata(metadata: Any, limit: int = MAX_PAYLOAD_BYTES) -> str:
    """Metadata as JSON: a dict, limited to ``limit`` bytes like a payload."""
    if metadata is None:
        return "{}"
    if not isinstance(metadata, dict):
        raise InvalidJob(f"metadata must be a dict, not {type(metadata).__name__}")
    if not metadata:
        return "{}"
    return encode(metadata, "metadata", limit)


def error_type(error: BaseException | str | None) -> str | None:
    """The name stored beside an error: its exception's class name (``None``
    for an error given as text)."""
    return type(error).__name__ if isinstance(error, BaseException) else None


def error_text(error: BaseException | str) -> str:
    """The message stored for a failure: the string, or the exception's message
    (its class name when it has none, or when its ``str()`` raises)."""
    if isinstance(error, BaseException):
        try:
            text = str(error) or type(error).__name__
        except Exception:  # noqa: BLE001 - an exception whose __str__ raises still records its type
            text = type(error).__name__
    else:
        text = str(error)
    if not text.isascii():
        # A lone surrogate (UTF-8 cannot hold it) becomes U+FFFD, so the
        # failure is still recorded rather than lost with the write.
        text = _SURROGATE.sub("\ufffd", text)
    return text
