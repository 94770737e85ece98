"""The package's shape: imports only go down, and nothing in poller's wheel imports moto."""

from __future__ import annotations

import ast
import functools
import subprocess
import sys
from pathlib import Path

import poller

PACKAGE = Path(poller.__file__).parent


def module_name(path: Path, root: Path = PACKAGE) -> str:
    """``poller.x.y`` for ``<root>/x/y.py`` (``poller.x`` for ``x/__init__.py``)."""
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The package's modules ``path`` imports anywhere (in functions and TYPE_CHECKING too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(path, node.module, node.level)
            # `from poller import tasks` imports the module poller.tasks, not poller/__init__
            subs = {f"{base}.{alias.name}" for alias in node.names}
            found.update(subs & modules or {base})
    return found & modules


def _absolute(path: Path, module: str | None, level: int) -> str:
    """The absolute name ``from <level dots><module> import`` means in ``path``."""
    if level == 0:
        return str(module)
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[: len(package) - (level - 1)]
    return ".".join([*base, module] if module else base)


@functools.cache  # several tests read it: the package is parsed once
def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (shared: do not change it)."""
    paths = {module_name(p, root): p for p in root.rglob("*.py")}
    names = set(paths)
    return {name: imports_of(path, names) - {name} for name, path in paths.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def layers(graph: dict[str, set[str]]) -> dict[str, int]:
    """Each module's layer: 0 imports none of the package, n imports layers below n only."""
    depth: dict[str, int] = {}

    def layer(node: str) -> int:
        if node not in depth:
            depth[node] = 1 + max((layer(t) for t in graph[node]), default=-1)
        return depth[node]

    for node in graph:
        layer(node)
    return depth


def test_no_module_imports_one_that_imports_it_back() -> None:
    assert cycles(import_graph()) == []


def test_the_lifecycle_sits_on_coalesce_and_tracking_which_sit_on_store_and_batch() -> None:
    # Given the layering: tasks -> lifecycle -> (coalesce, tracking) -> (store, batch)
    # -> models -> errors
    depth = layers(import_graph())
    chain = ["tasks", "core.lifecycle", "core.coalesce", "store", "models", "errors"]
    # Then each sits above the next
    assert [depth[f"poller.{m}"] for m in chain] == sorted(
        (depth[f"poller.{m}"] for m in chain), reverse=True
    )
    assert depth["poller.core.lifecycle"] > max(
        depth["poller.core.coalesce"], depth["poller.core.tracking"]
    )
    assert min(depth["poller.core.coalesce"], depth["poller.core.tracking"]) > max(
        depth["poller.store"], depth["poller.aws.batch"]
    )


def test_nothing_in_poller_imports_moto_or_the_emulator_at_import_time() -> None:
    # Given every module of poller imported in a fresh interpreter (the test fixtures too)
    code = (
        "import importlib, pkgutil, sys, poller\n"
        "for m in pkgutil.walk_packages(poller.__path__, 'poller.'):\n"
        "    if m.name != 'poller.testing.demo':\n"
        "        importlib.import_module(m.name)\n"
        "print(sorted({n.split('.')[0] for n in sys.modules} & {'moto', 'aws_batch_emulator'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # Then neither moto nor the emulator was loaded
    assert out.stdout.strip() == "[]"


def test_poller_and_the_emulator_enforce_the_same_aws_rules() -> None:
    # The two distributions share no code (the emulator is reusable without poller), so each
    # writes AWS's job-name rule and array-size range once; this keeps the two copies equal.
    from aws_batch_emulator import runtime

    from poller.models import spec as models

    assert models.JOB_NAME_RE.pattern == runtime.JOB_NAME_PATTERN.pattern
    assert models.ARRAY_SIZE_RANGE == runtime.ARRAY_SIZE_RANGE


SMELL_LINES = 800
"""Modules are split by concept, not by size; one this long likely holds two concepts."""


def test_no_module_is_long_enough_to_smell_of_two_concepts() -> None:
    emulator = PACKAGE.parent / "aws-batch-emulator" / "aws_batch_emulator"
    sizes = {
        str(path.relative_to(PACKAGE.parent)): len(path.read_text().splitlines())
        for root in (PACKAGE, emulator)
        for path in root.rglob("*.py")
    }
    assert {name: n for name, n in sizes.items() if n > SMELL_LINES} == {}


def test_at_most_ten_modules_stay_at_the_top_the_public_face() -> None:
    top = sorted(path.stem for path in PACKAGE.glob("*.py"))
    assert len(top) <= 10, top
    assert set(top) <= {
        "__init__", "app", "tasks", "client", "runtime", "admission", "errors", "signals",
        "status",
    }  # fmt: skip


def test_every_subpackage_says_what_it_holds_and_may_import() -> None:
    for package in sorted(path.parent for path in PACKAGE.glob("*/__init__.py")):
        docstring = ast.get_docstring(ast.parse((package / "__init__.py").read_text())) or ""
        assert "import" in docstring, package.name


def test_the_events_process_starts_without_a_warning() -> None:
    # `poller local-batch --events` starts it with -m: Python warns when the package had
    # imported that module already (a user's first screen carried a RuntimeWarning)
    started = subprocess.run(
        [sys.executable, "-W", "error::RuntimeWarning", "-m", "aws_batch_emulator.events_main",
         "--help"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    assert "Warning" not in started.stderr
