"""The benchmark command still runs end to end. No speed is asserted: this
machine's figures say nothing about correctness."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_bench_quick_runs_and_writes_json(tmp_path: Path) -> None:
    output = tmp_path / "latest.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--runs", "1", "--quiet", "--output", str(output),
         "--dir", str(tmp_path)],
        check=False, cwd=ROOT, capture_output=True, text=True, timeout=540,
    )  # fmt: skip
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    document = json.loads(output.read_text())
    figures = {row["figure"] for row in document["table"]}
    assert {"enqueue", "enqueue_many", "latency_p50", "raw_insert"} <= figures
    assert any(f.startswith("process_c") for f in figures)
    for row in document["table"]:
        assert row["values"], row
