"""Option validation: typos are rejected with a suggestion."""

from __future__ import annotations

import pytest

import jobq
from jobq.options import reject_unknown


@pytest.fixture
def memory_queue() -> jobq.Queue:
    return jobq.MemoryQueue(clock=jobq.FakeClock())


def test_unknown_processor_option_suggests_the_close_one(memory_queue: jobq.Queue) -> None:
    with pytest.raises(jobq.UnknownOption) as info:
        jobq.JobProcessor(memory_queue, concurency=3)  # type: ignore[call-arg]
    message = str(info.value)
    assert "concurency" in message
    assert "did you mean 'concurrency'" in message
    assert isinstance(info.value, TypeError) and isinstance(info.value, jobq.JobqError)


def test_unknown_processor_option_without_a_close_match_lists_the_known(memory_queue: jobq.Queue) -> None:
    with pytest.raises(jobq.UnknownOption) as info:
        jobq.JobProcessor(memory_queue, zzz=1)  # type: ignore[call-arg]
    assert "zzz" in str(info.value) and "concurrency" in str(info.value)


@pytest.mark.parametrize("typo, meant", [("retry_delay", "retry_delays"), ("maxRetries", "max_retries"),
                                         ("poll_intervall", "poll_interval"), ("ratelimit", "rate_limit")])
def test_suggestions(memory_queue: jobq.Queue, typo: str, meant: str) -> None:
    with pytest.raises(jobq.UnknownOption, match=f"did you mean '{meant}'"):
        jobq.JobProcessor(memory_queue, **{typo: 1})


def test_reject_unknown_with_nothing_unknown() -> None:
    # It is handed only the names the caller did not take itself.
    assert reject_unknown("Thing", {}, ["a", "b"]) is None
    with pytest.raises(jobq.UnknownOption, match="did you mean 'a'"):
        reject_unknown("Thing", {"aa": 1}, ["a", "b"])


@pytest.mark.parametrize(
    "options",
    [
        {"concurrency": 0},
        {"concurrency": 1.5},
        {"concurrency": True},
        {"max_retries": 0},
        {"poll_interval": 0},
        {"poll_interval": -1},
        {"retry_delays": []},
        {"retry_delays": [-1]},
        {"heartbeat_interval": 30},  # not shorter than the 30 s lease
        {"shutdown_timeout": -1},
        {"job_timeout": 0},
        {"rate_limit": (1, 2)},
        {"circuit_breaker": {"failure_threshold": 1}},
    ],
)
def test_bad_processor_option_values(memory_queue: jobq.Queue, options: dict[str, object]) -> None:
    with pytest.raises(jobq.InvalidOption):
        jobq.JobProcessor(memory_queue, **options)  # type: ignore[arg-type]


def test_processor_needs_a_queue() -> None:
    with pytest.raises(TypeError):
        jobq.JobProcessor("memory://")  # type: ignore[arg-type]


@pytest.mark.parametrize("options", [{"lease": 0}, {"lease": -1}, {"max_payload_bytes": 0},
                                     {"max_lost_leases": 0}])
def test_bad_queue_options(options: dict[str, object]) -> None:
    with pytest.raises(jobq.InvalidOption):
        jobq.MemoryQueue(**options)


def test_bad_sqlite_durability(tmp_path: object) -> None:
    with pytest.raises(jobq.InvalidOption):
        jobq.SQLiteQueue(f"{tmp_path}/x.db", durability="sometimes")  # type: ignore[arg-type]


async def test_bad_url_options() -> None:
    with pytest.raises(jobq.InvalidURL):
        await jobq.connect("memory://?lease=soon")
    with pytest.raises(jobq.InvalidURL):
        await jobq.connect("sqlite:///x.db?durability=sometimes")
