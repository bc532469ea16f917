"""The import graph: the layers stated in pyproject.toml hold, and no module of ``scorer`` or
``benchmarks`` imports itself back through others (a cycle), lazily or not."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]


def lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    """``lint-imports`` over the contracts of ``cwd / "pyproject.toml"``, without its cache;
    the packages of ``cwd`` first, then this checkout's."""
    command = shutil.which("lint-imports")
    assert command is not None, "import-linter is a test dependency: pip install -e '.[dev]'"
    return subprocess.run(
        [command, "--no-cache"],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_layer_contracts_hold() -> None:
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_benchmarks_module_importing_a_layer_above_breaks_its_contract(tmp_path: Path) -> None:
    """The benchmarks' layers catch what they are for: ``types`` (the lowest layer) importing
    the command line, lazily, inside a function."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    shutil.copytree(ROOT / "benchmarks", tmp_path / "benchmarks")
    types = tmp_path / "benchmarks" / "types.py"
    types.write_text(types.read_text() + "\n\ndef _up() -> None:\n    import benchmarks.cli\n")
    result = lint_imports(tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    contract = "benchmarks: command lines > report > measurement > harness > types"
    assert f"{contract} BROKEN" in result.stdout
    assert "benchmarks.types is not allowed to import benchmarks.cli" in result.stdout
    assert "scorer's layers follow one run's flow KEPT" in result.stdout


def cycles(graph: grimp.ImportGraph, package: str) -> list[list[str]]:
    """Every strongly connected set of two or more modules under ``package`` (Tarjan)."""
    modules = sorted(m for m in graph.modules if m == package or m.startswith(package + "."))
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported not in modules:
                continue
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            members = []
            while True:
                member = stack.pop()
                members.append(member)
                if member == module:
                    break
            if len(members) > 1:
                found.append(sorted(members))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for module in modules:
        if module not in index:
            visit(module)
    return found


@pytest.mark.parametrize("package", ["scorer", "benchmarks"])
def test_no_import_cycle(package: str) -> None:
    graph = grimp.build_graph(package, cache_dir=None)
    assert cycles(graph, package) == []


def test_a_cycle_is_found() -> None:
    graph = grimp.ImportGraph()
    for module in ("pkg", "pkg.a", "pkg.b", "pkg.c"):
        graph.add_module(module)
    graph.add_import(importer="pkg.a", imported="pkg.b")
    graph.add_import(importer="pkg.b", imported="pkg.a")
    graph.add_import(importer="pkg.c", imported="pkg.a")
    assert cycles(graph, "pkg") == [["pkg.a", "pkg.b"]]
