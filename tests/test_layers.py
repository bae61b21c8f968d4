"""The package's floors, read from the source (every ``import`` of ``lfr_report``, those
inside functions too; those under ``if TYPE_CHECKING:`` are for type checkers only and
left out):

* no circle among the modules, nor among the subpackages (``ssl`` and ``evaluate`` once
  imported each other through kNN);
* reports only read runs: the modules of ``report/`` import neither ``data`` nor
  ``models``, and reach the making of runs (``running/``) only through ``report/spec.py``,
  the declaration's ``gather`` and ``build``; the executors (``running/launch.py``) not at all;
* ``running/`` imports nothing from ``report/``: it sits below the reports.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import lfr_report

PACKAGE = Path(lfr_report.__file__).parent


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py") if "_bundled" not in p.parts}


def _type_checking_only(tree: ast.AST) -> set[int]:
    skipped = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(n) for child in node.body for n in ast.walk(child))
    return skipped


def imports(name: str) -> set[str]:
    """The lfr_report modules ``name`` imports (``from pkg import module`` counts as the module)."""
    tree = ast.parse(MODULES[name].read_text())
    skipped = _type_checking_only(tree)
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("lfr_report"))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("lfr_report"):
            found.update(f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module
                         for a in node.names)  # fmt: skip
    return found - {name}


GRAPH = {name: imports(name) for name in MODULES}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph.get(node, ()):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def subpackage(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_the_circle_finder_finds_a_circle():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert circles({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_imports_inside_functions_and_leaves_out_type_checking_ones():
    assert "lfr_report.running.launch" in GRAPH["lfr_report.cli"]  # imported inside a function
    assert "lfr_report.report.spec" not in GRAPH["lfr_report.registry"]  # only under TYPE_CHECKING


def test_no_module_imports_itself_back():
    assert circles(GRAPH) == []


def test_no_subpackage_imports_itself_back():
    packages: dict[str, set[str]] = {}
    for module, imported in GRAPH.items():
        packages.setdefault(subpackage(module), set()).update(subpackage(m) for m in imported)
    assert circles({p: deps - {p} for p, deps in packages.items()}) == []


REPORT_MODULES = sorted(m for m in MODULES if m.startswith("lfr_report.report."))


@pytest.mark.parametrize("module", REPORT_MODULES)
def test_report_modules_read_runs_and_reach_neither_data_models_nor_executors(module):
    imported = GRAPH[module]
    assert not {m for m in imported if m.startswith(("lfr_report.data", "lfr_report.models"))}
    making = {m for m in imported if m.startswith("lfr_report.running")}
    if module == "lfr_report.report.spec":
        assert making == {"lfr_report.running.needs"}  # gather, and the declaration's types
    else:
        assert making == set(), f"{module} imports {making}: reports reach runs only through spec"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("lfr_report.running")))
def test_the_making_of_runs_sits_below_the_reports(module):
    assert not {m for m in GRAPH[module] if m.startswith(("lfr_report.report", "lfr_report.cli"))}
