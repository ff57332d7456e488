"""The house's layers: the library (src/dahash) never reaches up into stages/ or workflow/, never imports the
orchestration tools, and its concern folders (data, nn, train, eval, report, codes, baselines) import each other
without a cycle; ``import dahash`` is a cheap public face whose names all resolve."""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from pathlib import Path

from tests.code_deps import REPO, _direct, direct_imports, library_modules

TOOLS = ("snakemake", "dvc", "mlflow")


def concern(module: str) -> str:
    """``dahash.eval.metrics`` -> ``eval``; a top-level module (``dahash.atomic``) is its own concern."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "dahash"


def concern_graph(repo: Path = REPO) -> dict[str, set[str]]:
    """concern -> the other concerns its modules import (lazy imports included; the package's lazy public face,
    ``dahash/__init__.py``, is not a concern)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for m in library_modules(repo):
        for d in _direct(m, repo):
            if d.startswith("dahash.") and concern(d) != concern(m) and concern(m) != "dahash":
                graph[concern(m)].add(concern(d))
    return dict(graph)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as [a, b, ..., a], or None (depth-first search)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_find_cycle_finds_one_and_only_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_concerns_import_each_other_without_a_cycle() -> None:
    graph = concern_graph()
    assert {"data", "nn", "train", "eval", "report", "codes", "baselines"} <= set(graph) | {
        d for ds in graph.values() for d in ds}
    assert find_cycle(graph) is None, f"import cycle between concerns: {find_cycle(graph)} (graph {graph})"


def test_the_library_never_imports_stages_workflow_or_the_tools() -> None:
    bad = {m: sorted(i for i in direct_imports(m) if i.split(".")[0] in ("stages", "workflow", *TOOLS))
           for m in library_modules()}
    assert {m: v for m, v in bad.items() if v} == {}


def test_the_library_check_sees_a_violation(tmp_path: Path) -> None:
    """Control: a library module that imports a stage lazily, and one that imports mlflow, are both found."""
    (tmp_path / "src" / "dahash").mkdir(parents=True)
    (tmp_path / "src" / "dahash" / "__init__.py").write_text("")
    (tmp_path / "src" / "dahash" / "bad.py").write_text("def f():\n    from stages.common import ROOT\n    import mlflow\n")
    found = {i for m in library_modules(tmp_path) for i in direct_imports(m, tmp_path)}
    assert {"stages.common", "mlflow"} <= found


def test_import_dahash_is_cheap_and_its_public_names_resolve() -> None:
    code = ("import sys, dahash; heavy = [m for m in ('torch', 'numpy', 'pandas') if m in sys.modules]; "
            "assert not heavy, heavy; "
            "[getattr(dahash, n) for n in dahash.__all__]; print(len(dahash.__all__))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) > 10
