"""The mirror's content, not the value of data.mirror, decides whether download reruns (issue 23 points 6 and 12).

Before: download depended on the VALUE of ``data.mirror``: fixing or adding images in the mirror never reran it
(the same error came back although it said to fix the mirror), and pointing ``data.mirror`` at a byte-identical
copy reran everything (SOURCE.json held the mirror's path and a creation time). Now download depends on
data/mirror-state/<dataset>.json (stages/mirror_state.py): the mirror's content digest, rewritten only when it
changes; SOURCE.json holds neither path nor time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import write_image
from test_dag_configs import _env, make_project

pytestmark = pytest.mark.pipeline

SETS = ["data.dataset=custom", "data.domains=[day, night]", "tasks={D_N: {source: day, target: night}}",
        "analysis.tasks=[]", "baselines.methods={}", "methods={dah: {}}"]


def _mirror(root: Path, make_image_tree) -> Path:
    make_image_tree(root, ["day", "night"], ["car", "person"], n_per_class=2)
    return root


def _run(proj: Path, *cmd: str) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(cmd, cwd=proj, env=_env(proj), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, f"{' '.join(cmd)}:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    return res


def _ran(res: subprocess.CompletedProcess[str]) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", res.stdout))


def _planned(proj: Path, target: str) -> bool:
    """Whether `snakemake -n <target>` plans a job (the Snakefile refreshes the mirror state when it plans)."""
    out = _run(proj, "snakemake", "-n", target).stdout
    return "Nothing to be done" not in out and "download" in out


def _set_mirror(proj: Path, mirror: Path) -> None:
    params = yaml.safe_load((proj / "params.yaml").read_text())
    params["data"]["mirror"] = str(mirror)
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_the_mirrors_content_decides_in_both_tools(tmp_path: Path, make_image_tree) -> None:
    mirror = _mirror(tmp_path / "mirror", make_image_tree)
    proj = make_project(tmp_path, "quickstart", [f"data.mirror={mirror}", *SETS])
    raw = proj / "data" / "raw" / "custom"

    first = _run(proj, "dvc", "repro", "download")
    assert "download" in _ran(first)
    source = (raw / "SOURCE.json").read_bytes()
    assert b"created" not in source and str(mirror).encode() not in source

    # nothing changed: DVC reruns the mirror's state only, Snakemake plans nothing
    assert "download" not in _ran(_run(proj, "dvc", "repro", "download"))
    assert not _planned(proj, str(raw.relative_to(proj)))

    # a byte-identical copy elsewhere: nothing reruns, the output is the same
    copy = tmp_path / "elsewhere" / "copy of the mirror"
    shutil.copytree(mirror, copy)
    _set_mirror(proj, copy)
    assert not _planned(proj, str(raw.relative_to(proj)))
    assert "download" not in _ran(_run(proj, "dvc", "repro", "download"))
    assert (raw / "SOURCE.json").read_bytes() == source

    # an image fixed in the mirror, its mtime put back (only the content and ctime tell): download reruns
    img = copy / "night" / "person" / "img_001.jpg"
    st = img.stat()
    write_image(img, seed=99)
    os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert _planned(proj, str(raw.relative_to(proj)))
    assert "download" in _ran(_run(proj, "dvc", "repro", "download"))
    assert (raw / "night" / "person" / "img_001.jpg").read_bytes() == img.read_bytes()
    # an image added: again
    write_image(copy / "day" / "car" / "new.jpg", seed=7)
    assert "download" in _ran(_run(proj, "dvc", "repro", "download"))
    assert json.loads((raw / "SOURCE.json").read_text())["counts"]["day"] == 5
