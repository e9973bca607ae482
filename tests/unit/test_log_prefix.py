"""Log messages do not start with "jobq: ": the formatter prints the logger's
name (``jobq``, ``jobq.job``, ...) before each message, and a prefix of its
own would read "jobq: jobq: ..."."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "jobq"
LEVELS = {"debug", "info", "warning", "error", "exception", "critical", "log"}


def test_no_log_message_repeats_the_logger_name() -> None:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr not in LEVELS or not node.args:
                continue
            first = node.args[1] if node.func.attr == "log" and len(node.args) > 1 else node.args[0]
            text = first.value if isinstance(first, ast.Constant) else None
            if text is None and isinstance(first, ast.BinOp) and isinstance(first.left, ast.Constant):
                text = first.left.value
            if isinstance(text, str) and text.startswith("jobq:"):
                found.append(f"{path.relative_to(SRC)}:{node.lineno}")
    assert not found, found
