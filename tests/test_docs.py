"""The documentation stays true: README.md, docs/*.md and the examples'
READMEs (the examples themselves run in tests/examples).

- Every relative link points to an existing file, and every ``#anchor`` to
  an existing heading of the page it names (GitHub's slugs).
- Every ```python block compiles. A block is a complete program, and is run
  in a subprocess in a fresh temporary directory (with a timeout), unless the
  line just before its fence is ``<!-- fragment -->``: a snippet that needs
  surrounding code, which is only compiled (top-level ``await`` allowed).
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import jobq

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "examples").rglob("README.md"))]
FRAGMENT = "<!-- fragment -->"
RUN_TIMEOUT = 30  # seconds one example may take
# The jobq under test (the examples' subprocesses import the same one).
SRC = Path(jobq.__file__).resolve().parents[1]

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HTML_LINK = re.compile(r"""\b(?:href|src)=["']([^"']+)["']""")
_INLINE_CODE = re.compile(r"(`+).+?\1")
_HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    info: str
    text: str
    fragment: bool

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def split_page(page: Path) -> tuple[list[tuple[int, str]], list[Block]]:
    """A page's prose lines (with their numbers) and its fenced code blocks,
    following CommonMark's fences: a block closes on a fence of the same
    character at least as long as the one that opened it."""
    prose: list[tuple[int, str]] = []
    blocks: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            prose.append((i + 1, lines[i]))
            i += 1
            continue
        fence, info = opening.group(1), opening.group(2).strip()
        previous = lines[i - 1].strip() if i > 0 else ""
        body: list[str] = []
        j = i + 1
        while j < len(lines):
            closing = _FENCE.match(lines[j])
            if (
                closing
                and closing.group(1)[0] == fence[0]
                and len(closing.group(1)) >= len(fence)
                and not closing.group(2).strip()
            ):
                break
            body.append(lines[j])
            j += 1
        blocks.append(
            Block(page, i + 1, info.split()[0] if info else "", "\n".join(body) + "\n", previous == FRAGMENT)
        )
        i = j + 1
    return prose, blocks


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text without Markdown markup,
    lowercased, punctuation other than ``-`` and ``_`` dropped, spaces to ``-``."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links and images keep their text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading anchor of ``page``; a repeated slug gets ``-1``, ``-2``, ..."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    prose, _ = split_page(page)
    for _, line in prose:
        match = _HEADING.match(line)
        if match is None:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(page: Path) -> list[tuple[int, str]]:
    """Relative link targets in ``page``'s prose (not in code)."""
    prose, _ = split_page(page)
    found = []
    for number, line in prose:
        line = _INLINE_CODE.sub("", line)
        for pattern in (_LINK, _HTML_LINK):
            for match in pattern.finditer(line):
                target = match.group(1)
                if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto:, ...
                    continue
                found.append((number, target))
    return found


def all_links() -> list[tuple[Path, int, str]]:
    return [(page, number, target) for page in PAGES for number, target in links(page)]


def python_blocks() -> list[Block]:
    return [block for page in PAGES for block in split_page(page)[1] if block.info == "python"]


# -- the parser itself -------------------------------------------------------------


def test_slugs_follow_github() -> None:
    assert slug("Quick start") == "quick-start"
    assert slug("Handlers, results and retries") == "handlers-results-and-retries"
    assert slug("k-msg names and jobq names") == "k-msg-names-and-jobq-names"
    assert slug("`jobq.testing` and FakeClock") == "jobqtesting-and-fakeclock"
    assert slug("Run_this: now!") == "run_this-now"


def test_pages_are_found() -> None:
    names = {page.name for page in PAGES}
    assert {"README.md", "index.md"} <= names
    assert python_blocks(), "no python examples found"


def test_index_lists_every_page() -> None:
    listed = {target.split("#")[0] for _, target in links(ROOT / "docs" / "index.md")}
    pages = {page.name for page in (ROOT / "docs").glob("*.md")} - {"index.md"}
    assert pages <= listed, f"docs/index.md does not list {sorted(pages - listed)}"


# -- links ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "page, number, target",
    all_links(),
    ids=[f"{p.relative_to(ROOT)}:{n}:{t}" for p, n, t in all_links()],
)
def test_relative_link_resolves(page: Path, number: int, target: str) -> None:
    path, _, anchor = target.partition("#")
    where = f"{page.relative_to(ROOT)}:{number}"
    destination = (page.parent / path).resolve() if path else page
    assert destination.exists(), f"{where}: {target} points to a missing file"
    if anchor:
        assert destination.suffix == ".md", f"{where}: {target} has an anchor in a file that is not Markdown"
        known = anchors(destination)
        assert anchor in known, f"{where}: no heading #{anchor} in {destination.name}; it has {sorted(known)}"


# -- examples ------------------------------------------------------------------------


@pytest.mark.parametrize("block", python_blocks(), ids=lambda block: block.name)
def test_python_example(block: Block, tmp_path: Path) -> None:
    flags = ast.PyCF_ALLOW_TOP_LEVEL_AWAIT if block.fragment else 0
    try:
        compile(block.text, block.name, "exec", flags=flags)
    except SyntaxError as exc:
        pytest.fail(f"{block.name}: the example does not compile: {exc}")
    if block.fragment:
        return
    script = tmp_path / "example.py"
    script.write_text(block.text, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("JOBQ_")}
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    try:
        done = subprocess.run(
            [sys.executable, str(script)],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"{block.name}: the example ran past {RUN_TIMEOUT} s (mark it <!-- fragment --> if it never ends)"
        )
    assert done.returncode == 0, (
        f"{block.name}: the example exited {done.returncode}:\n{done.stdout}{done.stderr}"
    )
