"""Checking and encoding what callers hand to a queue, before anything is stored."""

from __future__ import annotations

import json
import math
import re
from datetime import timedelta
from typing import Any

from .errors import InvalidJob

MAX_TYPE_LENGTH = 255  # characters
MAX_PAYLOAD_BYTES = 1024 * 1024  # default limit on an encoded payload: 1 MiB
PRIORITY_RANGE = (-(2**31), 2**31 - 1)

_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


_SURROGATE = re.compile("[\ud800-\udfff]")
_ascii_encoder = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":"))


def _utf8_size(text: str, what: str) -> int:
    """How many bytes ``text`` takes in UTF-8; :class:`InvalidJob` naming
    ``what`` if it holds a lone surrogate, which UTF-8 (and so every store
    but the in-memory one) cannot hold."""
    if text.isascii():  # O(1) in CPython
        return len(text)
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise InvalidJob(
            f"{what} is not valid Unicode: it holds the lone surrogate {text[exc.start]!r},"
            " which UTF-8 cannot encode"
        ) from None


def encode(value: Any, what: str) -> str:
    """JSON text for ``value``; :class:`InvalidJob` naming ``what`` if it has
    none, or if it holds a string that is not valid Unicode."""
    try:
        text = _encoder.encode(value)
    except RecursionError:
        raise InvalidJob(f"{what} is not JSON-serialisable: it is nested too deeply") from None
    except (TypeError, ValueError) as exc:
        raise InvalidJob(f"{what} is not JSON-serialisable: {exc}") from None
    _utf8_size(text, what)
    return text


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


def check_text(text: str, what: str) -> str:
    """A name stored as text (a job type, a queue name, a unique key): no NUL
    characters (PostgreSQL's text cannot hold them) and no lone surrogates
    (UTF-8 cannot), on every backend alike."""
    if "\x00" in text:
        raise InvalidJob(f"{what} must not contain NUL characters: {text[:80]!r}")
    _utf8_size(text, what)
    return text


def check_priority(priority: Any) -> int:
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise InvalidJob(f"priority must be an int, not {type(priority).__name__}")
    low, high = PRIORITY_RANGE
    if not low <= priority <= high:
        raise InvalidJob(f"priority {priority} is outside {low}..{high}")
    return priority


def check_delay(delay: Any, what: str = "delay") -> float:
    """Seconds, from a number or a :class:`~datetime.timedelta`."""
    if isinstance(delay, timedelta):
        delay = delay.total_seconds()
    if isinstance(delay, bool) or not isinstance(delay, (int, float)):
        raise InvalidJob(f"{what} must be a number of seconds, not {type(delay).__name__}")
    if not math.isfinite(delay) or delay < 0:
        raise InvalidJob(f"{what} must be a finite number of seconds >= 0, not {delay!r}")
    return float(delay)


def check_max_attempts(max_attempts: Any) -> int:
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int):
        raise InvalidJob(f"max_attempts must be an int, not {type(max_attempts).__name__}")
    if max_attempts < 1:
        raise InvalidJob(f"max_attempts must be at least 1, not {max_attempts}")
    return max_attempts


def encode_payload(data: Any, limit: int) -> str:
    try:
        text = _encoder.encode(data)
    except RecursionError:
        raise InvalidJob("payload is not JSON-serialisable: it is nested too deeply") from None
    except (TypeError, ValueError) as exc:
        raise InvalidJob(f"payload is not JSON-serialisable: {exc}") from None
    size = _utf8_size(text, "payload")
    if size > limit:
        raise InvalidJob(f"payload is {size} bytes encoded; the limit is {limit}")
    return text


def encode_metadata(metadata: Any) -> str:
    if metadata is None:
        return "{}"
    if not isinstance(metadata, dict):
        raise InvalidJob(f"metadata must be a dict, not {type(metadata).__name__}")
    return encode(metadata, "metadata")


def error_type(error: BaseException | str | None) -> str | None:
    """The name stored beside an error: its exception's class name (``None``
    for an error given as text)."""
    return type(error).__name__ if isinstance(error, BaseException) else None


def error_text(error: BaseException | str) -> str:
    """The message stored for a failure: the string, or the exception's message
    (its class name when it has none)."""
    text = (str(error) or type(error).__name__) if isinstance(error, BaseException) else str(error)
    if not text.isascii():
        # A lone surrogate (UTF-8 cannot hold it) becomes U+FFFD, so the
        # failure is still recorded rather than lost with the write.
        text = _SURROGATE.sub("\ufffd", text)
    return text
