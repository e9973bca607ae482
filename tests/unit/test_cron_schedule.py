"""CronSchedule: slot arithmetic, validation, and the lazy croniter import."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

import pytest

import jobq
from jobq.processor.cron import CronSchedule, seconds_until_next

pytest.importorskip("croniter")


def at(*parts: int) -> float:
    return datetime(*parts, tzinfo=UTC).timestamp()  # type: ignore[misc]


def test_latest_and_next_slot() -> None:
    s = CronSchedule("*/5 * * * *", "t")
    assert s.name == "t */5 * * * *"
    assert s.latest_slot(at(2024, 1, 1, 10, 7)) == at(2024, 1, 1, 10, 5)
    assert s.latest_slot(at(2024, 1, 1, 10, 5)) == at(2024, 1, 1, 10, 5)  # on the slot itself
    assert s.latest_slot(at(2024, 1, 1, 10, 5) - 0.001) == at(2024, 1, 1, 10, 0)
    assert s.next_slot(at(2024, 1, 1, 10, 5)) == at(2024, 1, 1, 10, 10)
    assert seconds_until_next([s], at(2024, 1, 1, 10, 9, 30)) == 30
    assert seconds_until_next([s], at(2024, 1, 1, 10, 7)) == 60  # capped: a clock jump is noticed


def test_due_is_each_slot_once() -> None:
    s = CronSchedule("0 * * * *", "t")
    slot = s.due(at(2024, 1, 1, 10, 30))
    assert slot == at(2024, 1, 1, 10) * 1000
    s.last_seen_ms = slot
    assert s.due(at(2024, 1, 1, 10, 59)) is None
    assert s.due(at(2024, 1, 1, 11)) == at(2024, 1, 1, 11) * 1000


def test_timezone() -> None:
    s = CronSchedule("0 9 * * *", "t", timezone="Asia/Seoul")  # 09:00 KST is 00:00 UTC
    assert s.latest_slot(at(2024, 1, 1, 12)) == at(2024, 1, 1, 0)


def test_invalid_schedules() -> None:
    with pytest.raises(jobq.InvalidOption):
        CronSchedule("61 * * * *", "t")
    with pytest.raises(jobq.InvalidOption):
        CronSchedule("* * * * *", "")
    with pytest.raises(jobq.InvalidOption):
        CronSchedule("* * * * *", "t", timezone="Nowhere/Special")


def test_importing_jobq_does_not_import_croniter() -> None:
    code = "import sys, jobq, jobq.testing; sys.exit(1 if 'croniter' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
