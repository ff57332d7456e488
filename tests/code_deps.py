"""Import closures of the pipeline's stages, computed from the source with ``ast`` (nothing is imported).

A stage ``python -m stages.X`` runs the code of every repo module it imports, directly or through other repo
modules, at the top of a file or inside a function (a lazy import runs too when that path is taken), plus the
``__init__.py`` of every package on the way. In a module that calls ``importlib.import_module``, a string constant
that names a repo module (``"dahash.baselines.deep"`` in a lazy registry) counts as an import as well. Imports
under ``if TYPE_CHECKING:`` never run and are left out.

``python -m tests.code_deps`` prints every (stage, file) pair that dvc.yaml's deps of the stage do not cover.
"""

from __future__ import annotations

import ast
import functools
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: top-level packages inside the repo, and the folder each lives in
PACKAGES = {"stages": REPO / "stages", "dahash": REPO / "src" / "dahash", "workflow": REPO / "workflow"}


def library_modules(repo: Path = REPO) -> list[str]:
    """Every module of src/dahash (packages by their package name)."""
    names = []
    for f in sorted((repo / "src" / "dahash").rglob("*.py")):
        parts = list(f.relative_to(repo / "src").with_suffix("").parts)
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def direct_imports(name: str, repo: Path = REPO) -> set[str]:
    """Every module name ``name``'s source imports (repo or not; lazy ones included, TYPE_CHECKING ones not)."""
    path = module_file(name, repo)
    assert path is not None, name
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return _imports(tree, name, path.name == "__init__.py")


def module_file(name: str, repo: Path = REPO) -> Path | None:
    """The file of repo module ``name`` (``pkg/__init__.py`` for a package), or None outside the repo."""
    top, *rest = name.split(".")
    if top not in PACKAGES:
        return None
    base = repo / PACKAGES[top].relative_to(REPO) / Path(*rest) if rest else repo / PACKAGES[top].relative_to(REPO)
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Module names imported anywhere in ``tree`` (``from a import b``: ``a`` and ``a.b``), relative ones resolved."""
    found: set[str] = set()
    skip: set[int] = set()
    dynamic = any((isinstance(n, ast.Attribute) and n.attr == "import_module")
                  or (isinstance(n, ast.Name) and n.id == "import_module") for n in ast.walk(tree))
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = module.split(".")
                base = parts if is_package else parts[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            found.add(prefix)
            found.update(f"{prefix}.{a.name}" for a in node.names)
        elif dynamic and isinstance(node, ast.Constant) and isinstance(node.value, str) and re.fullmatch(
                r"(dahash|stages)(\.\w+)+", node.value):
            found.add(node.value)
    return found


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts) + 1)]


@functools.lru_cache(maxsize=None)
def _direct(name: str, repo: Path) -> frozenset[str]:
    path = module_file(name, repo)
    if path is None:
        return frozenset()
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names = set()
    for imported in _imports(tree, name, path.name == "__init__.py"):
        names.update(p for p in _parents(imported) if module_file(p, repo) is not None)
    return frozenset(names)


def import_closure(module: str, repo: Path = REPO) -> set[Path]:
    """Every repo file that running ``module`` may execute, as paths relative to ``repo``."""
    seen: set[str] = set()
    todo = [p for p in _parents(module) if module_file(p, repo) is not None]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(_direct(name, repo) - seen)
    return {module_file(n, repo).relative_to(repo) for n in seen}  # type: ignore[union-attr]


def covered(path: Path, deps: list[str]) -> bool:
    """``path`` is a dep or lies inside a folder dep."""
    return any(path == Path(d) or Path(d) in path.parents for d in deps)


def stage_module(cmd: str) -> str:
    """``python -m stages.train --task ...`` -> ``stages.train``."""
    m = re.match(r"python -m ([\w.]+)", cmd)
    if m is None:
        raise ValueError(f"not a `python -m` command: {cmd!r}")
    return m.group(1)


def every_stage_project(dest: Path, repo: Path = REPO) -> Path:
    """A copy of dvc.yaml and params.yaml in ``dest`` (a DVC repo without git) whose params put EVERY stage in the
    DAG, the gamma sweep included (train.gamma: auto with a one-gamma grid); only the templating is used."""
    import yaml

    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(repo / "dvc.yaml", dest / "dvc.yaml")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train"]["gamma"], params["gamma_sweep"]["grid"] = "auto", [500.0]
    (dest / "params.yaml").write_text(yaml.safe_dump(params))
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=dest, check=True)
    return dest


def uncovered_pairs(project: Path, repo: Path = REPO) -> dict[str, list[str]]:
    """Per resolved stage of ``project``'s dvc.yaml: the files of its import closure (in ``repo``) that its deps miss.
    Stages with nothing missing are left out."""
    sys.path.insert(0, str(repo))
    try:
        from workflow.dvcdag import load_stages
    finally:
        sys.path.remove(str(repo))
    out: dict[str, list[str]] = {}
    for stage in load_stages(project):
        missing = sorted(p.as_posix() for p in import_closure(stage_module(stage.cmd), repo)
                         if not covered(p, stage.deps))
        if missing:
            out[stage.name] = missing
    return out


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as td:
        pairs = uncovered_pairs(every_stage_project(Path(td) / "p"))
    by_template: dict[str, list[str]] = {}
    for name, files in pairs.items():
        by_template.setdefault(name.split("@")[0], files)
    for name, files in by_template.items():
        print(f"{name}: {len(files)} uncovered: {' '.join(files)}")
    print(f"{sum(len(f) for f in pairs.values())} (stage, file) pairs uncovered in {len(pairs)} stages")


def folded(files: set[Path], repo: Path = REPO) -> list[str]:
    """``files`` with every folder whose .py files are all in it written as that folder (largest first)."""
    left = set(files)
    out: list[str] = []
    folders = sorted({p for f in files for p in f.parents if p != Path(".") and p.parts[0] in ("src", "stages")},
                     key=lambda p: len(p.parts))
    for folder in folders:
        inside = {f.relative_to(repo) for f in (repo / folder).rglob("*.py") if "__pycache__" not in f.parts}
        if inside and inside <= left and folder.as_posix() not in ("src", "src/dahash", "stages"):
            out.append(folder.as_posix())
            left -= inside
    return sorted(out + [f.as_posix() for f in left])
