"""The package's shape: no import cycles between its modules, and a moto-free top-level import.

The import graph is read from the source with `ast`, counting every import: deferred ones inside
functions and ``if TYPE_CHECKING:`` ones included, since a cycle through either still ties the
modules together (and breaks type checking or import order sooner or later).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import aws_batch_emulator
import pytest

PACKAGE = "aws_batch_emulator"
PACKAGE_DIR = Path(aws_batch_emulator.__file__).resolve().parent
INIT = PACKAGE  # the package's __init__, as a node of the graph


def module_names() -> dict[str, Path]:
    """Every module of the package, by dotted name (the __init__ as the package name)."""
    names: dict[str, Path] = {}
    for path in sorted(PACKAGE_DIR.glob("*.py")):
        names[INIT if path.stem == "__init__" else f"{PACKAGE}.{path.stem}"] = path
    return names


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The package's modules that one file imports, anywhere in it."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in modules:
            if node.module != INIT:
                found.add(node.module)
                continue
            # `from aws_batch_emulator import x`: the submodule x, else a name of __init__.
            for alias in node.names:
                submodule = f"{PACKAGE}.{alias.name}"
                found.add(submodule if submodule in modules else INIT)
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            pytest.fail(f"{path.name}: relative import (the graph reads absolute ones only)")
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (itself left out)."""
    modules = module_names()
    return {name: imported_modules(path, set(modules)) - {name} for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as [a, b, ..., a], or None (depth-first search)."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" once explored
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return [*path[path.index(target) :], target]
            if target not in state:
                cycle = visit(target)
                if cycle is not None:
                    return cycle
        path.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle is not None:
                return cycle
    return None


def edges(graph: dict[str, set[str]]) -> Iterator[str]:
    for source in sorted(graph):
        for target in sorted(graph[source]):
            yield f"{source} -> {target}"


def test_every_kind_of_import_is_an_edge(tmp_path: Path) -> None:
    # Given a module importing in each way the graph must see
    source = tmp_path / "sample.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "import aws_batch_emulator.faults\n"
        "from aws_batch_emulator import resources, LocalBatch\n"
        "if TYPE_CHECKING:\n"
        "    from aws_batch_emulator.runtime import LocalBatchBackend\n"
        "def later() -> None:\n"
        "    from aws_batch_emulator.api import install\n"
    )
    modules = set(module_names())

    # When its imports are read
    found = imported_modules(source, modules)

    # Then module, from-package, TYPE_CHECKING and in-function imports all count
    assert found == {
        f"{PACKAGE}.faults",
        f"{PACKAGE}.resources",
        INIT,  # LocalBatch is a name of __init__, not a submodule
        f"{PACKAGE}.runtime",
        f"{PACKAGE}.api",
    }
    assert f"{PACKAGE}.server" in import_graph()[INIT]


def test_find_cycle_reports_a_cycle_through_deferred_imports() -> None:
    # Given a graph where c closes a loop back to a
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}

    # When a cycle is looked for
    cycle = find_cycle(graph)

    # Then the loop is named in order
    assert cycle == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_package_modules_import_each_other_without_cycles() -> None:
    # Given the import graph of the package, deferred and TYPE_CHECKING imports included
    graph = import_graph()

    # When a cycle is looked for
    cycle = find_cycle(graph)

    # Then there is none
    assert cycle is None, (
        "import cycle: " + " -> ".join(cycle or []) + "\n" + "\n".join(edges(graph))
    )


def test_importing_the_package_does_not_import_moto() -> None:
    # Given a fresh interpreter
    code = (
        "import sys, aws_batch_emulator, aws_batch_emulator.resources;"
        "from aws_batch_emulator import LocalBatch, FaultConfig, EmulatorError;"
        "print(sorted(m for m in sys.modules if m == 'moto' or m.startswith('moto.')))"
    )

    # When it imports the package and its public names
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=PACKAGE_DIR.parent,
    )

    # Then moto was not imported
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
