"""``python -m tests.web.screenshots`` (or ``make screenshots``): refreshes
docs/screenshots/*.png by running the Chromium tests with
JOBQ_UPDATE_SCREENSHOTS=1 (a plain test run writes them to a temporary
folder instead, leaving the tree as it found it)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BROWSER_TESTS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests" / "web").glob("test_browser*.py"))


def main() -> int:
    env = {**os.environ, "JOBQ_UPDATE_SCREENSHOTS": "1"}
    src = str(ROOT / "src")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p)
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *BROWSER_TESTS]
    return subprocess.call(command, cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main())
