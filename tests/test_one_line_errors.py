"""One line instead of a traceback (issue 23 point 14, the data side; the index/export/--html cases are
tests/test_fuzz.py's and the codes' own):

* a features.npy or codes.npz holding a pickled object array: refused before, but with numpy's ValueError
  traceback; now a StageError naming the file and the command that rewrites it;
* a folder nested ~1,100 levels deep (in a dataset tree, an archive, a build folder left behind): Python 3.11's
  os.walk, shutil.rmtree and os.makedirs recurse once per level and raised RecursionError.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest

from conftest import write_image
from dahash.atomic import remove_tree
from dahash.data.datasets import folder_dataset
from dahash.data.download import DownloadError, safe_extract
from dahash.data.manifest import build_manifest
from stages.common import StageError, load_arrays

DEEP = 1100


def _object_array() -> np.ndarray:
    a = np.empty(2, dtype=object)
    a[0], a[1] = {"x": 1}, [1, 2]
    return a


def test_a_pickled_features_file_is_one_line_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import stages.features as features

    d = tmp_path / "feats"
    d.mkdir()
    np.save(d / "features.npy", _object_array(), allow_pickle=True)
    (d / "meta.json").write_text('{"paths": ["a.jpg", "b.jpg"]}')
    monkeypatch.setattr(features, "features_dir", lambda dataset, backbone, domain: d)
    with pytest.raises(StageError) as ei:
        features.load_features("custom", "vggf", "day")
    msg = str(ei.value)
    assert "\n" not in msg and str(d / "features.npy") in msg and "pickled" in msg
    assert "dvc repro extract@day" in msg


def test_a_pickled_codes_file_is_one_line_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "codes.npz"
    np.savez(path, u_source=np.zeros((2, 4), np.float32), u_target=_object_array())
    with pytest.raises(StageError) as ei:
        load_arrays(path, redo="dvc repro train@dah-A_W-0")
    msg = str(ei.value)
    assert "\n" not in msg and str(path) in msg and "pickled" in msg and "dvc repro train@dah-A_W-0" in msg
    np.savez(path, u_source=np.ones((2, 4), np.float32))
    assert load_arrays(path, redo="-")["u_source"].sum() == 8  # a genuine file reads


def _deep(base: Path, depth: int = DEEP) -> Path:
    """``base/n/n/.../n`` (``depth`` levels), made without recursion."""
    base.mkdir(parents=True, exist_ok=True)
    fd = os.open(base, os.O_RDONLY)
    try:
        for _ in range(depth):
            os.mkdir("n", dir_fd=fd)
            new = os.open("n", os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = new
        with open(os.open("x.jpg", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "wb") as fh:
            fh.write(b"not reached")
    finally:
        os.close(fd)
    return base


@pytest.fixture
def cleanup(tmp_path: Path):
    """Remove deep trees before pytest's own (recursive) cleanup of tmp_path meets them."""
    yield
    for p in list(tmp_path.iterdir()):
        remove_tree(p)


def test_a_deeply_nested_folder_in_a_dataset_is_listed_not_a_crash(tmp_path: Path, cleanup) -> None:
    root = tmp_path / "raw"
    for d in ("day", "night"):
        write_image(root / d / "car" / "img_000.jpg")
    _deep(root / "day" / "car")
    df = build_manifest(root, folder_dataset(root, ["day", "night"]))
    nested = df[df["path"].str.endswith("x.jpg")]
    assert len(nested) == 1 and nested.iloc[0]["status"] == "excluded"
    assert "nested below class folder 'car'" in nested.iloc[0]["reason"]
    assert (df["status"] == "ok").sum() == 2


def test_a_deeply_nested_archive_is_refused_in_one_line(tmp_path: Path, cleanup) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tf:
        info = tarfile.TarInfo("/".join(["n"] * DEEP) + "/x.jpg")
        info.size = 3
        tf.addfile(info, io.BytesIO(b"abc"))
    archive = tmp_path / "deep.tar.gz"
    archive.write_bytes(buf.getvalue())
    with pytest.raises(DownloadError, match=f"nested {DEEP + 1} folders deep"):
        safe_extract(archive, tmp_path / "out" / "x")
    assert os.listdir(tmp_path / "out") == []


def test_a_deep_tree_is_removed(tmp_path: Path, cleanup) -> None:
    """What the next run sweeps (a killed build holding such a tree) or an extraction removes."""
    _deep(tmp_path / "gone")
    remove_tree(tmp_path / "gone")
    assert not (tmp_path / "gone").exists()
