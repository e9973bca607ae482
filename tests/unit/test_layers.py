"""The layers hold: the model knows no storage, storage knows no worker, the
worker reaches storage only through the queue, no backend imports another,
and the core imports no optional dependency."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "jobq"

# module (relative to src/jobq) -> jobq modules it must not import
FORBIDDEN = {
    "job.py": {"store", "processor", "queue", "backends", "cli", "demo", "admin", "context"},
    "errors.py": {"store", "processor", "queue", "job", "backends", "cli", "admin", "context"},
    "clock.py": {"store", "processor", "queue", "backends", "cli", "admin", "context"},
    "codec.py": {"store", "processor", "queue", "backends", "cli", "admin", "context"},
    "keylimits.py": {"store", "processor", "queue", "backends", "cli", "admin", "context"},
    "transitions.py": {"store", "processor", "queue", "backends", "cli", "admin", "context"},
    "newjobs.py": {"store", "processor", "queue", "backends", "cli", "admin", "context"},
    "store": {"processor", "queue", "backends", "cli", "demo", "sync", "events", "admin", "context"},
    "queue.py": {"processor", "backends", "cli", "demo", "context", "web"},
    "context.py": {"store", "processor", "backends", "cli", "demo", "web", "admin"},
    # The operator verbs Queue inherits, and the views built on them: below
    # the worker, the command line and the dashboard.
    "admin": {"processor", "backends", "cli", "demo", "web", "sync", "context"},
    "web": {"cli", "demo", "processor", "backends", "store", "sync"},
    # The worker knows the queue, never the front ends built on it.
    "processor": {"store", "backends", "cli", "demo", "web", "metrics", "testing", "sync"},
}


def jobq_imports(path: Path) -> set[str]:
    """First components of the jobq modules ``path`` imports (relative imports)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            depth_in_package = len(path.relative_to(SRC).parts) - 1
            if node.level - 1 < depth_in_package:
                continue  # a sibling inside the same subpackage
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
    return found


@pytest.mark.parametrize("target", sorted(FORBIDDEN))
def test_layer_does_not_import_upwards(target: str) -> None:
    files = sorted((SRC / target).rglob("*.py")) if (SRC / target).is_dir() else [SRC / target]
    for path in files:
        bad = jobq_imports(path) & FORBIDDEN[target]
        assert not bad, f"{path.relative_to(SRC)} imports {sorted(bad)}"


#: The backends under store/: each may use store/base.py, store/sql.py and
#: the like, never another backend.
BACKENDS = ("memory", "sqlite", "postgres")


def imported_modules(path: Path) -> set[str]:
    """The dotted names of the jobq modules ``path`` imports (relative
    imports resolved; ``from . import x`` gives the package and ``.x``)."""
    package = list(path.relative_to(SRC.parent).with_suffix("").parts[:-1])
    if path.name == "__init__.py":
        package = list(path.relative_to(SRC.parent).parts[:-1])
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name == "jobq" or name.startswith("jobq.")}


def backend_of(module: str) -> str | None:
    parts = module.split(".")
    if len(parts) >= 3 and parts[:2] == ["jobq", "store"] and parts[2] in BACKENDS:
        return parts[2]
    return None


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_backend_imports_another(backend: str) -> None:
    root = SRC / "store" / backend
    files = sorted(root.rglob("*.py")) if root.is_dir() else [root.with_suffix(".py")]
    assert files and all(path.exists() for path in files)
    for path in files:
        others = {m for m in imported_modules(path) if backend_of(m) not in (None, backend)}
        assert not others, f"{path.relative_to(SRC)} imports {sorted(others)}"


def test_the_import_check_sees_relative_imports() -> None:
    found = imported_modules(SRC / "store" / "sqlite" / "core.py")
    assert "jobq.store.sqlite.connection" in found and "jobq.store.base" in found
    assert backend_of("jobq.store.postgres.sql") == "postgres" and backend_of("jobq.store.sql") is None


def test_core_import_pulls_no_optional_dependency() -> None:
    # The command line too: the dashboard's and the metrics' extras load
    # only when their command or option runs.
    code = (
        "import sys, jobq, jobq.cli; "
        "heavy = [m for m in ('psycopg', 'psycopg_pool', 'prometheus_client', 'starlette', 'uvicorn',"
        " 'django', 'django_tasks', 'fastapi', 'flask', 'jobq.contrib', 'opentelemetry')"
        " if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
