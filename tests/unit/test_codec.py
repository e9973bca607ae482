"""Input checks and encoding, before anything is stored."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

import jobq
from jobq import codec


@pytest.mark.parametrize("bad", ["", "   ", "\t\n", 5, None, b"type", "x" * 256])
def test_check_type_rejects(bad: object) -> None:
    with pytest.raises(jobq.InvalidJob):
        codec.check_type(bad)


def test_check_type_accepts() -> None:
    assert codec.check_type("send_message") == "send_message"
    assert codec.check_type("x" * 255) == "x" * 255


@pytest.mark.parametrize("bad", [-1, -0.001, float("nan"), float("inf"), "5", None, True, timedelta(seconds=-1)])
def test_check_delay_rejects(bad: object) -> None:
    with pytest.raises(jobq.InvalidJob):
        codec.check_delay(bad)


def test_check_delay_accepts_numbers_and_timedeltas() -> None:
    assert codec.check_delay(0) == 0.0
    assert codec.check_delay(2) == 2.0
    assert codec.check_delay(0.25) == 0.25
    assert codec.check_delay(timedelta(minutes=2)) == 120.0


@pytest.mark.parametrize("bad", [0, -1, 1.5, "3", None, True])
def test_check_max_attempts_rejects(bad: object) -> None:
    with pytest.raises(jobq.InvalidJob):
        codec.check_max_attempts(bad)


def test_check_max_attempts_accepts() -> None:
    assert codec.check_max_attempts(1) == 1
    assert codec.check_max_attempts(100) == 100


@pytest.mark.parametrize("bad", [1.5, "1", None, True, 2**31, -(2**31) - 1])
def test_check_priority_rejects(bad: object) -> None:
    with pytest.raises(jobq.InvalidJob):
        codec.check_priority(bad)


def test_check_priority_accepts() -> None:
    assert codec.check_priority(0) == 0
    assert codec.check_priority(-5) == -5
    assert codec.check_priority(2**31 - 1) == 2**31 - 1


@pytest.mark.parametrize("bad", [object(), {1, 2}, float("nan"), float("inf"), b"bytes", {"k": object()}])
def test_encode_payload_rejects_non_json(bad: object) -> None:
    with pytest.raises(jobq.InvalidJob) as info:
        codec.encode_payload(bad, codec.MAX_PAYLOAD_BYTES)
    assert isinstance(info.value, ValueError) and isinstance(info.value, jobq.JobqError)


def test_encode_payload_rejects_cycles() -> None:
    cyclic: list[object] = []
    cyclic.append(cyclic)
    with pytest.raises(jobq.InvalidJob):
        codec.encode_payload(cyclic, codec.MAX_PAYLOAD_BYTES)


def test_encode_payload_limit_counts_utf8_bytes() -> None:
    assert codec.encode_payload("a" * 8, 10) == '"aaaaaaaa"'
    with pytest.raises(jobq.InvalidJob):
        codec.encode_payload("a" * 9, 10)
    text = codec.encode_payload("한", 5)  # 3 bytes + 2 quotes
    assert json.loads(text) == "한"
    with pytest.raises(jobq.InvalidJob):
        codec.encode_payload("한한", 7)
    assert codec.MAX_PAYLOAD_BYTES == 1024 * 1024


def test_encode_payload_round_trips() -> None:
    value = {"to": ["+82"], "n": 1, "f": 0.5, "none": None, "ok": True, "text": "안녕"}
    assert json.loads(codec.encode_payload(value, codec.MAX_PAYLOAD_BYTES)) == value


def test_encode_metadata() -> None:
    assert codec.encode_metadata(None) == "{}"
    assert json.loads(codec.encode_metadata({"a": [1]})) == {"a": [1]}
    for bad in ([1], "x", 3, {"a": object()}):
        with pytest.raises(jobq.InvalidJob):
            codec.encode_metadata(bad)


def test_encode_result_converts_typed_values_and_refuses_the_rest() -> None:
    assert codec.encode_result(None) is None
    assert json.loads(codec.encode_result({"a": 1}) or "") == {"a": 1}
    at = datetime(2026, 1, 1, tzinfo=UTC)
    assert json.loads(codec.encode_result({"at": at}) or "") == {"at": "2026-01-01T00:00:00Z"}
    with pytest.raises(jobq.InvalidJob, match="values of type object cannot be stored as JSON"):
        codec.encode_result(object())  # never stored as its repr


def test_error_text() -> None:
    assert codec.error_text("plain") == "plain"
    assert codec.error_text(ValueError("bad number")) == "bad number"
    assert codec.error_text(KeyError("k")) == "'k'"
    assert codec.error_text(RuntimeError()) == "RuntimeError"


def test_error_hierarchy() -> None:
    assert issubclass(jobq.InvalidJob, jobq.JobqError) and issubclass(jobq.InvalidJob, ValueError)
    assert issubclass(jobq.InvalidURL, ValueError)
    assert issubclass(jobq.JobNotFound, jobq.JobqError)
    assert issubclass(jobq.LeaseLost, jobq.JobqError)
    assert issubclass(jobq.UnknownOption, jobq.JobqError) and issubclass(jobq.UnknownOption, TypeError)
    assert str(jobq.JobqError()) == "A jobq operation failed."
