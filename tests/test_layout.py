"""The package layout: imports only go downwards, pure modules stay pure.

Ranks (a module may import its own package or a lower rank, never a higher one)::

    0  monitor.errors, monitor.backoff
    1  monitor.matching     pure
    2  monitor.clustering   pure: story signatures, candidate index, join-or-new decision
    3  monitor.ingest       pure decisions, plus the fetcher and the parse pool
    4  monitor.delivery     pure planning and rendering, plus the transports
    5  monitor.config       validates against the vocabularies below it (queries, templates, schedules)
    6  monitor.storage      applies what the pure modules decided
    7  monitor.app          wires it all: poll cycle, drain loop, daemon, CLI, web

Every import statement of the package is read with :mod:`ast` (those inside functions
and ``TYPE_CHECKING`` blocks too), so a lazy import cannot hide a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "monitor"
RANKS = {
    "monitor.errors": 0,
    "monitor.backoff": 0,
    "monitor.matching": 1,
    "monitor.clustering": 2,
    "monitor.ingest": 3,
    "monitor.delivery": 4,
    "monitor.config": 5,
    "monitor.storage": 6,
    "monitor.app": 7,
}
# Libraries that mean I/O: a pure module imports none of them.
IO_LIBRARIES = ("sqlalchemy", "alembic", "psycopg", "httpx", "apscheduler", "apprise", "starlette", "uvicorn")
# APScheduler's cron trigger is used as a calculator of fire times (digest schedules); no
# scheduler is created by the module that imports it.
ALLOWED_IO = {"apscheduler.triggers.cron", "apscheduler.triggers.cron.CronTrigger"}
PURE = (
    "monitor.matching",
    "monitor.clustering",
    "monitor.ingest.entries",
    "monitor.ingest.dedupe",
    "monitor.ingest.discover",
    "monitor.ingest.decide",
    "monitor.ingest.schedule",
    "monitor.ingest.formats.parsed",
    "monitor.ingest.formats.jsonfeed",
    "monitor.delivery.routing",
    "monitor.delivery.render",
    "monitor.delivery.channels",
    "monitor.delivery.masking",
)


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(name: str, path: Path) -> set[str]:
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            out.add(module)
            out.update(f"{module}.{alias.name}" for alias in node.names)
    return out


def _rank(module: str) -> int | None:
    for prefix, rank in RANKS.items():
        if module == prefix or module.startswith(prefix + "."):
            return rank
    return None


MODULES = _modules()


def test_every_module_has_a_rank() -> None:
    unranked = [m for m in MODULES if m not in ("monitor", "monitor.__main__") and _rank(m) is None]
    assert unranked == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_downwards(module: str) -> None:
    own = _rank(module)
    if own is None:
        return  # the package root and ``python -m monitor`` may reach anything
    upwards = sorted(
        imported
        for imported in _imports(module, MODULES[module])
        if (rank := _rank(imported)) is not None and rank > own
    )
    assert upwards == [], f"{module} (rank {own}) imports upwards"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith(PURE)))
def test_pure_modules_do_no_io(module: str) -> None:
    io = sorted(
        imported
        for imported in _imports(module, MODULES[module])
        if imported.split(".")[0] in IO_LIBRARIES and imported not in ALLOWED_IO
    )
    assert io == [], f"{module} is pure but imports I/O libraries"


def test_every_package_says_what_it_owns_and_may_import() -> None:
    for module, path in MODULES.items():
        if path.name == "__init__.py" and module.count(".") == 1:
            doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
            assert "Owns:" in doc and ("May import" in doc or "Pure" in doc), module


def _classes() -> dict[str, tuple[str, ast.ClassDef]]:
    found = {}
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                found[node.name] = (module, node)
    return found


def test_every_exception_is_in_the_documented_tree() -> None:
    classes = _classes()

    def is_exception(name: str, seen: frozenset[str] = frozenset()) -> bool:
        if name in ("Exception", "BaseException"):
            return True
        if name not in classes or name in seen:
            return False
        return any(is_exception(ast.unparse(b), seen | {name}) for b in classes[name][1].bases)

    tree = ast.get_docstring(ast.parse((PACKAGE / "errors.py").read_text(encoding="utf-8"))) or ""
    ours = sorted(n for n in classes if is_exception(n))
    public = [n for n in ours if not n.startswith("_")]
    assert public and [n for n in public if n not in tree] == []
    assert [n for n in ours if n != "MonitorError" and "MonitorError" not in _ancestors(n, classes)] == []


def _ancestors(name: str, classes: dict[str, tuple[str, ast.ClassDef]]) -> set[str]:
    out: set[str] = set()
    stack = [name]
    while stack:
        current = stack.pop()
        if current not in classes:
            continue
        for base in (ast.unparse(b) for b in classes[current][1].bases):
            if base not in out:
                out.add(base)
                stack.append(base)
    return out


@pytest.mark.parametrize("module", sorted(MODULES))
def test_functions_are_short(module: str) -> None:
    """No function over 80 lines unless a comment right above it says why it must be longer."""
    source = MODULES[module].read_text(encoding="utf-8")
    lines = source.splitlines()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno is not None:
            length = node.end_lineno - node.lineno + 1
            first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
            above = lines[first - 2].strip() if first >= 2 else ""
            assert length <= 80 or above.startswith("#"), f"{module}.{node.name} has {length} lines"
