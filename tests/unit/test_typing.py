"""The package ships ``py.typed``, so its annotations are a promise: mypy
--strict must accept them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_package_passes_mypy_strict() -> None:
    pytest.importorskip("mypy", reason="mypy is part of the test extra")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary", str(ROOT / "src" / "jobq")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_code_passes_ruff() -> None:
    pytest.importorskip("ruff", reason="ruff is part of the test extra")
    result = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "src", "tests", "bench"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
