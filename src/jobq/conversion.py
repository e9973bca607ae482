"""Typed Python values to and from the JSON a job stores.

A task's arguments and result are stored as JSON, so that a job stays a
k-msg job any program can read. This module turns the values Python code
passes (datetimes, dates, times, timedeltas, UUIDs, Decimals, enums,
dataclasses, named tuples, sets, and pydantic models where pydantic is
installed) into JSON values, and JSON values back into the types a
function's annotations name. The conversion itself is msgspec's
(``msgspec.to_builtins`` and ``msgspec.convert``): one well-tested set of
rules, fast enough for the hot path, with errors that name the field.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from .errors import FailJob, InvalidJob, JobqError


class ArgumentMismatch(FailJob, TypeError):
    """A job's stored arguments do not fit its task's signature (the code
    changed since the job was queued). The job fails for good."""


class ResultMismatch(JobqError, TypeError):
    """A job's stored result does not fit its task's return type."""


def _encode_other(value: Any) -> Any:
    """What msgspec cannot encode itself: pydantic models."""
    dump = getattr(value, "model_dump", None)
    if dump is not None and callable(dump) and not isinstance(value, type):
        return dump(mode="json")
    raise TypeError(f"values of type {type(value).__name__} cannot be stored as JSON")


def _decode_other(target: type, value: Any) -> Any:
    """What msgspec cannot decode itself: pydantic models."""
    validate = getattr(target, "model_validate", None)
    if validate is not None:
        return validate(value)
    raise NotImplementedError(f"no JSON conversion for {target!r}")


def to_json_value(value: Any, what: str) -> Any:
    """``value`` as plain JSON values (dicts with str keys, lists, strs,
    numbers, bools, ``None``); :class:`~jobq.InvalidJob` naming ``what`` if
    some part has no JSON form."""
    try:
        # Keys stay as they are (ints stay ints): the JSON encoder makes them
        # strings and refuses two that collide (see jobq.codec).
        return msgspec.to_builtins(value, enc_hook=_encode_other)
    except RecursionError:
        raise InvalidJob(f"{what} cannot be stored as JSON: it is nested too deeply") from None
    except Exception as exc:  # noqa: BLE001 - a model's own dump may raise anything
        raise InvalidJob(f"{what} cannot be stored as JSON: {exc}") from None


def from_json_value(value: Any, target: Any) -> Any:
    """``value`` (plain JSON values) converted to the type ``target``;
    ``msgspec.ValidationError`` says where it does not fit."""
    if target is Any:
        return value
    return msgspec.convert(value, target, dec_hook=_decode_other, str_keys=True)


def _mismatch_detail(exc: Exception) -> str:
    return str(exc).replace("`$`", "the value").replace(" - at `$", " (at `$")


class Signature:
    """A task function's parameters: checks a call against them, turns it
    into the JSON object a job stores (argument name to value), and turns
    that object back into the call.

    Only the arguments given are stored, so a default changed in the code
    applies to jobs already queued. Annotations are resolved on first use,
    so they may name classes defined after the function."""

    def __init__(self, fn: Callable[..., Any], task_name: str) -> None:
        self.task_name = task_name
        self._fn = fn
        self.signature = inspect.signature(fn)
        for param in self.signature.parameters.values():
            if param.kind is param.VAR_POSITIONAL:
                raise TypeError(
                    f"task {task_name!r} takes *{param.name}; a task's arguments are stored by name,"
                    " so it cannot take a variable number of positional arguments"
                )
        params = self.signature.parameters.values()
        self._positional_only = [p.name for p in params if p.kind is p.POSITIONAL_ONLY]
        #: Parameters a positional argument fills, in order.
        self._positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        #: Parameters a keyword argument may name.
        self._keywords = frozenset(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
        self._named = {p.name: p for p in params if p.kind is not p.VAR_KEYWORD}
        self._extra = next((p.name for p in params if p.kind is p.VAR_KEYWORD), None)
        self._required = [p.name for p in params if p.default is p.empty and p.kind is not p.VAR_KEYWORD]
        self._required_names = frozenset(self._required)
        # Whether the required parameters are the first positional ones, so
        # a call with that many positional arguments or more lacks none.
        self._required_lead = self._required == self._positional[: len(self._required)]
        self._hints: dict[str, Any] | None = None
        self._plain: dict[str, type] = {}  # parameters annotated str, int, float or bool

    @property
    def hints(self) -> dict[str, Any]:
        """Each parameter's annotated type (``Any`` where none), and the
        result's under ``"return"``."""
        if self._hints is None:
            try:
                resolved = typing.get_type_hints(self._fn)
            except Exception as exc:  # noqa: BLE001 - a name that cannot be resolved
                raise TypeError(f"task {self.task_name!r}: cannot resolve its annotations: {exc}") from None
            hints = {name: resolved.get(name, Any) for name in self.signature.parameters}
            if self._extra is not None:
                hints[self._extra] = resolved.get(self._extra, Any)
            hints["return"] = resolved.get("return", Any)
            self._plain = {name: hint for name, hint in hints.items() if hint in (str, int, float, bool)}
            self._hints = hints
        return self._hints

    def _bind(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The call's arguments by name (those given only), checked against
        the parameters as Python checks a call."""
        positional = self._positional
        if len(args) > len(positional):
            raise TypeError(
                f"{self.task_name}(): takes {len(positional)} positional arguments but {len(args)} were given"
            )
        call = dict(zip(positional, args, strict=False))
        if not kwargs and self._required_lead and len(args) >= len(self._required):
            return call
        for name, value in kwargs.items():
            if name in call:
                raise TypeError(f"{self.task_name}(): got multiple values for argument {name!r}")
            if name not in self._keywords and (self._extra is None or name in self._positional_only):
                raise TypeError(f"{self.task_name}(): got an unexpected keyword argument {name!r}")
            call[name] = value
        for name in self._required:
            if name not in call:
                raise TypeError(f"{self.task_name}(): missing a required argument: {name!r}")
        return call

    def encode(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """The stored form of a call. ``TypeError`` naming the argument for
        one that is missing, unexpected or of the wrong type;
        :class:`~jobq.InvalidJob` for a value that has no JSON form. Both
        before anything is stored."""
        call = self._bind(args, kwargs)
        hints, plain = self.hints, self._plain
        if _all_plain(call, plain):
            return call  # strs, ints, floats and bools of their annotated types: JSON as they are
        data: dict[str, Any] = to_json_value(call, f"the arguments of task {self.task_name!r}")
        for name, value in data.items():
            kind = plain.get(name)
            if kind is not None:
                given = type(call[name])
                if given is kind or (kind is float and given is int):
                    continue  # the common case, without a conversion
            target = hints.get(name, hints.get(self._extra or "", Any))
            if target is Any:
                continue
            try:
                from_json_value(value, target)
            except (msgspec.ValidationError, TypeError, ValueError) as exc:
                raise TypeError(
                    f"{self.task_name}(): argument {name!r} does not fit {_type_name(target)}:"
                    f" {_mismatch_detail(exc)}"
                ) from None
        return data

    def is_plain_call(self, data: Any) -> bool:
        """Whether a stored job's data is a call this function takes as it
        is, by keyword: every required argument there, each value a str,
        int, float or bool of its parameter's type (the common case, which
        needs no conversion; anything else goes through :meth:`decode`)."""
        if type(data) is not dict or self._positional_only or not self._required_names <= data.keys():
            return False
        self.hints  # noqa: B018 - resolves the annotations (and the plain types) once
        return _all_plain(data, self._plain)

    def decode(self, data: Any) -> tuple[list[Any], dict[str, Any]]:
        """The call a stored job makes: positional and keyword arguments, of
        the annotated types. :class:`ArgumentMismatch` names what no longer
        fits."""
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ArgumentMismatch(
                f"task {self.task_name!r} takes its arguments as a JSON object,"
                f" but the job holds a {type(data).__name__}"
            )
        hints = self.hints
        missing = [name for name in self._required if name not in data]
        if missing:
            raise ArgumentMismatch(
                f"task {self.task_name!r}: the job lacks the required argument"
                f"{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}"
            )
        if _all_plain(data, self._plain):
            if self._positional_only:
                return [data[n] for n in self._positional_only if n in data], {
                    n: v for n, v in data.items() if n not in self._positional_only
                }
            return [], data
        kwargs: dict[str, Any] = {}
        for name, value in data.items():
            if name in self._named:
                target = hints[name]
            elif self._extra is not None:
                target = hints[self._extra]
            else:
                raise ArgumentMismatch(
                    f"task {self.task_name!r} takes no argument {name!r}, which the job holds"
                )
            try:
                kwargs[name] = from_json_value(value, target)
            except (msgspec.ValidationError, TypeError, ValueError) as exc:
                raise ArgumentMismatch(
                    f"task {self.task_name!r}: argument {name!r} does not fit {_type_name(target)}:"
                    f" {_mismatch_detail(exc)}"
                ) from None
        positional = [kwargs.pop(name) for name in self._positional_only if name in kwargs]
        return positional, kwargs

    def encode_result(self, value: Any) -> Any:
        """A result as JSON values (:class:`~jobq.InvalidJob` if it has none)."""
        return to_json_value(value, f"the result of task {self.task_name!r}")

    def decode_result(self, value: Any) -> Any:
        """A stored result, of the task's annotated return type."""
        return from_json_value(value, self.hints["return"])


def _all_plain(values: Mapping[str, Any], plain: Mapping[str, type]) -> bool:
    """Whether every value is a str, int, float or bool of the type its
    parameter is annotated with (an int for a float), so needs no conversion."""
    for name, value in values.items():
        kind = plain.get(name)
        if kind is None:
            return False
        given = type(value)
        if given is not kind and not (kind is float and given is int):
            return False
    return True


def _type_name(target: Any) -> str:
    if isinstance(target, type):
        return target.__qualname__
    return str(target).replace("typing.", "")
