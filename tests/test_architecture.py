"""The shape of the code (docs/architecture.md): subpackages by concern, imports in one direction only, no
import circles, small modules, and a public API that is all importable from ``fmnist_ignite``."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

import fmnist_ignite

PACKAGE = Path(fmnist_ignite.__file__).parent
# Each subpackage and what it may import, lowest first. A package never imports one that is not listed for
# it: what shows things does not train, what trains does not parse the command line.
MAY_IMPORT = {
    "errors": set(),
    "config": {"errors"},
    "files": {"errors", "config"},
    "data": {"errors", "config", "files"},
    "core": {"errors", "config", "data"},
    "ui": {"errors", "config", "files", "data"},
    "analysis": {"errors", "config", "files", "data", "core", "ui"},
    "handlers": {"errors", "config", "files", "data", "core", "ui", "analysis"},
    "run": {"errors", "config", "files", "data", "core", "ui", "analysis", "handlers"},
    "experiments": {"errors", "config", "files", "data", "core", "ui", "analysis", "handlers", "run"},
    "cli": {"errors", "config", "files", "data", "core", "ui", "analysis", "handlers", "run", "experiments"},
}
TOP_LEVEL = {"__init__", "__main__", "errors"}  # the only modules outside the subpackages
# A module is one topic. 600 lines lets a topic stay whole (run.training: a run from its set-up to its end, which
# the issue that cut run/ by topic put together from five modules of a line-count cut); past it, a module holds
# more than one topic.
MAX_LINES = 600


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (``run.training``, ``errors``, ``cli.__init__``)."""
    return {".".join(path.relative_to(PACKAGE).with_suffix("").parts): path for path in PACKAGE.rglob("*.py")}


def imports_of(path: Path, top_level_only: bool = False) -> list[tuple[int, str]]:
    """(line, module) for each ``fmnist_ignite`` module ``path`` imports, in functions too unless told not to
    (at the top level: those under ``if TYPE_CHECKING:`` too, so that no circle hides there)."""
    tree = ast.parse(path.read_text())
    checking = [
        inner
        for node in tree.body
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
        for inner in node.body
    ]
    nodes = [*tree.body, *checking] if top_level_only else ast.walk(tree)
    found = []
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "fmnist_ignite":  # from fmnist_ignite import a, b: the names' own modules
                found += [(node.lineno, f"fmnist_ignite.{alias.name}") for alias in node.names]
            elif node.module.startswith("fmnist_ignite."):
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names if alias.name.startswith("fmnist_ignite.")]
    return found


def package_of(dotted: str) -> str:
    return dotted.split(".")[0]


def test_the_package_holds_subpackages_and_few_top_level_modules():
    top = {path.stem for path in PACKAGE.glob("*.py")}
    assert top == TOP_LEVEL
    subpackages = {path.parent.name for path in PACKAGE.glob("*/__init__.py")}
    assert subpackages == set(MAY_IMPORT) - {"errors"}


@pytest.mark.parametrize("name", sorted(modules()))
def test_a_module_imports_only_the_packages_below_it(name):
    importer = package_of(name)
    allowed = MAY_IMPORT.get(importer, set(MAY_IMPORT))  # __init__ and __main__ are the package's own
    wrong = []
    for line, target in imports_of(modules()[name]):
        imported = target.removeprefix("fmnist_ignite.")
        if imported == "__version__" or package_of(imported) == importer:
            continue
        if package_of(imported) not in allowed:
            wrong.append(f"line {line}: {target}")
    assert not wrong, f"{name} ({importer}) may import only {sorted(allowed)}"


def test_no_module_imports_itself_back_through_others():
    graph = defaultdict(set)
    names = modules()
    for name, path in names.items():
        for _, target in imports_of(path, top_level_only=True):
            target = target.removeprefix("fmnist_ignite.")
            if target in names:
                graph[name].add(target)
    done, cycles = set(), []

    def visit(node: str, stack: list[str]) -> None:
        if node in stack:
            cycles.append(stack[stack.index(node) :] + [node])
            return
        if node in done:
            return
        for nxt in graph[node]:
            visit(nxt, [*stack, node])
        done.add(node)

    for name in names:
        visit(name, [])
    assert not cycles


@pytest.mark.parametrize("name", sorted(modules()))
def test_no_module_is_over_600_lines(name):
    assert len(modules()[name].read_text().splitlines()) <= MAX_LINES


def test_every_public_name_imports_from_the_package_and_its_module_is_a_real_one():
    names = modules()
    for public, module in fmnist_ignite._WHERE.items():
        assert module in names, public
        assert getattr(fmnist_ignite, public) is not None
    # 80 of before; StandardHandlers; TuneSettings, LrFindSettings; 6 of calibration and corruptions; 2 of export;
    # list_runs and report; lines_to
    assert len(fmnist_ignite.__all__) == len(set(fmnist_ignite.__all__)) == 94


def test_test_modules_share_helpers_through_one_module_not_each_other():
    tests = PACKAGE.parent / "tests"
    for path in sorted(tests.glob("test_*.py")):
        tree = ast.parse(path.read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        imported |= {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
        assert not {name for name in imported if name.startswith("test_")}, f"{path.name} imports a test module"
