"""Code deps that cannot drift: every repo file a stage imports is a dep of that stage in dvc.yaml.

The import closure of ``python -m stages.X`` (tests/code_deps.py: stages/ and src/, lazy imports inside functions
included, transitively, package ``__init__`` files too) is computed from the source with ``ast`` and compared with
the deps of every stage DVC resolves (foreach/matrix expanded by DVC's own loader, workflow/dvcdag.load_stages),
in a copy of dvc.yaml whose params put every stage in the DAG (the gamma sweep included).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.code_deps import REPO, covered, every_stage_project, folded, import_closure, uncovered_pairs


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return every_stage_project(tmp_path_factory.mktemp("every-stage") / "p")


def _short(pairs: dict[str, list[str]]) -> dict[str, list[str]]:
    return {name.split(":")[-1]: files for name, files in pairs.items()}


def test_every_stage_depends_on_every_file_it_imports(project: Path) -> None:
    pairs = _short(uncovered_pairs(project))
    assert pairs == {}, ("files a stage imports but dvc.yaml does not list as its deps (add them, or the folder; "
                         f"`python -m tests.code_deps`): {pairs}")


def test_the_dag_has_every_stage_template(project: Path) -> None:
    """The copy's params really put every stage in the DAG, so the check above covers them all."""
    from workflow.dvcdag import load_stages

    names = {s.name.split(":")[-1].split("@")[0] for s in load_stages(project)}
    assert names == {"mirror_state", "download", "weights", "preprocess", "image_cache", "moments", "extract", "gamma_sweep", "train",
                     "evaluate", "baseline", "evaluate_baseline", "baseline_finetune", "evaluate_finetuned", "analysis",
                     "report"}


def test_a_removed_dep_is_caught(project: Path, tmp_path: Path) -> None:
    """dvc.yaml without the Hamming kernel among evaluate's deps: every evaluate stage is reported, with that file."""
    import shutil

    broken = tmp_path / "p"
    shutil.copytree(project, broken)
    text = (broken / "dvc.yaml").read_text()
    block = re.search(r"\n  evaluate:\n(?:    .*\n|\n)+", text)
    assert block is not None and "- src/dahash/eval/_hamming_kernel.py" in block.group(0)
    cut = block.group(0).replace("        - src/dahash/eval/_hamming_kernel.py\n", "")
    (broken / "dvc.yaml").write_text(text.replace(block.group(0), cut))
    pairs = _short(uncovered_pairs(broken))
    assert pairs and set(pairs) == {n for n in pairs if n.startswith("evaluate@")}
    assert all(files == ["src/dahash/eval/_hamming_kernel.py"] for files in pairs.values())


def _fake_repo(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_closure_follows_lazy_relative_and_registry_imports_but_not_type_checking(tmp_path: Path) -> None:
    repo = _fake_repo(tmp_path, {
        "stages/__init__.py": "",
        "stages/s.py": "from stages.helper import f\n",
        "stages/helper.py": "def f():\n    from dahash.a import x  # lazy\n    return x\n",
        "src/dahash/__init__.py": "",
        "src/dahash/a/__init__.py": "",
        "src/dahash/a/x.py": "from . import y\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                             "    from dahash.b import never\n",
        "src/dahash/a/y.py": "import importlib\nMODS = {'k': 'dahash.b.reg'}\n"
                             "def get(k):\n    return importlib.import_module(MODS[k])\n",
        "src/dahash/b/__init__.py": "",
        "src/dahash/b/reg.py": "import numpy\n",
        "src/dahash/b/never.py": "",
        "src/dahash/c.py": "",
    })
    got = {p.as_posix() for p in import_closure("stages.s", repo)}
    assert got == {"stages/__init__.py", "stages/s.py", "stages/helper.py", "src/dahash/__init__.py",
                   "src/dahash/a/__init__.py", "src/dahash/a/x.py", "src/dahash/a/y.py", "src/dahash/b/__init__.py",
                   "src/dahash/b/reg.py"}
    assert folded({Path(p) for p in got}, repo) == [
        "src/dahash/__init__.py", "src/dahash/a", "src/dahash/b/__init__.py", "src/dahash/b/reg.py", "stages/__init__.py",
        "stages/helper.py", "stages/s.py"]


def test_covered_means_the_file_or_a_folder_above_it() -> None:
    assert covered(Path("src/dahash/eval/metrics.py"), ["src/dahash/eval"])
    assert covered(Path("src/dahash/eval/metrics.py"), ["src/dahash/eval/metrics.py"])
    assert not covered(Path("src/dahash/eval/metrics.py"), ["src/dahash/ev", "src/dahash/eval/metrics"])


def test_the_evaluate_stage_does_not_reach_the_downloader_or_the_networks() -> None:
    """Stages import only what they use: scoring a run needs neither the downloader, the digits builder, the
    backbones nor the training loops."""
    closure = {p.as_posix() for p in import_closure("stages.evaluate", REPO)}
    assert "src/dahash/eval/_hamming_kernel.py" in closure
    reached = sorted(p for p in closure if p.startswith(("src/dahash/data/download", "src/dahash/data/digits",
                                                         "src/dahash/nn/", "src/dahash/train/",
                                                         "src/dahash/baselines/")))
    assert reached == []


def test_the_head_mode_baseline_stage_does_not_reach_the_fine_tuning_code() -> None:
    """baseline@M (baselines.methods, cached features) imports none of the fine-tuning path, so an edit of it
    reruns only baseline_finetune@M; the fine-tuned stage reaches both."""
    head = {p.as_posix() for p in import_closure("stages.baseline", REPO)}
    finetune = {p.as_posix() for p in import_closure("stages.baseline_finetune", REPO)}
    fine_tuning = {"stages/baseline_finetune.py", "stages/resume.py", "stages/finetune.py", "stages/image_cache.py",
                   "src/dahash/train/finetune.py", "src/dahash/baselines/objectives.py"}
    assert head & fine_tuning == set() and fine_tuning <= finetune
    assert "stages/baseline.py" in finetune and "src/dahash/baselines/registry.py" in head
