"""Files written atomically keep the mode the user's umask gives (issue 13): ``0o666 & ~umask`` for files,
``0o777 & ~umask`` for folders, as a plain ``open()`` / ``os.mkdir`` would give them.

The oracle is a file made by plain ``open()`` (and a folder by ``os.mkdir``) under the same umask, and the
hand-computed modes (0o644/0o755 under 022, 0o600/0o700 under 077). On the old code every writer below that
goes through ``tempfile.mkstemp`` produced 0o600 whatever the umask (a report folder served by a web server was
unreadable to it).
"""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest


@pytest.fixture(params=[0o022, 0o077, 0o002], ids=lambda m: f"umask{m:03o}")
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _write_bytes(d: Path) -> Path:
    from dahash.atomic import write_bytes_atomic

    return write_bytes_atomic(d / "model.bin", b"x")


def _write_text(d: Path) -> Path:
    from dahash.atomic import write_text_atomic

    write_text_atomic(d / "index.html", "<p>one</p>")
    return write_text_atomic(d / "index.html", "<p>two</p>")  # replacing an existing file too


def _atomic_path_file(d: Path) -> Path:
    from stages.common import atomic_path, write_json

    with atomic_path(d / "a.csv") as tmp:
        tmp.write_text("a\n")
    write_json(d / "seed0.json", {"accuracy": 0.5})
    return d / "seed0.json"


def _checkpoint(d: Path) -> Path:
    import torch

    from dahash.train.checkpoint import save_checkpoint

    return save_checkpoint(d, 1, {"fingerprint": "f", "w": torch.zeros(2)})


def _manifest(d: Path) -> Path:
    from dahash.data.manifest import COLUMNS, write_manifest

    row = {"path": "a/x/1.jpg", "domain": "a", "label": 0, "class_name": "x", "width": 8, "height": 8,
           "mode": "RGB", "status": "ok", "reason": ""}
    return write_manifest(pd.DataFrame([{c: row[c] for c in COLUMNS}]), d / "m.parquet")


def _download_json(d: Path) -> Path:
    from dahash.data.download import _write_json_atomic

    _write_json_atomic(d / "SOURCE.json", {"a": 1})
    return d / "SOURCE.json"


def _figure(d: Path) -> Path:
    from dahash.report.page import plot_pr_curve  # a report figure (write_bytes_atomic)

    pr = pd.DataFrame({"radius": [0, 1, 2], "precision": [1.0, 0.8, 0.5], "recall": [0.1, 0.5, 1.0]})
    plot_pr_curve(pr, d / "pr.png", title="t")
    return d / "pr.png"


WRITERS: dict[str, Callable[[Path], Path]] = {
    "write_bytes_atomic": _write_bytes, "write_text_atomic": _write_text, "atomic_path": _atomic_path_file,
    "save_checkpoint": _checkpoint, "write_manifest": _manifest, "download._write_json_atomic": _download_json,
    "report figure": _figure,
}


@pytest.mark.parametrize("writer", sorted(WRITERS))
def test_atomic_writers_keep_the_umask_mode(tmp_path: Path, umask: int, writer: str) -> None:
    plain = tmp_path / "plain.txt"
    plain.write_text("oracle")  # what open() gives under this umask
    out = WRITERS[writer](tmp_path)
    expected = {0o022: 0o644, 0o077: 0o600, 0o002: 0o664}[umask]
    assert mode(plain) == expected  # the oracle agrees with the hand-computed mode
    assert oct(mode(out)) == oct(expected), f"{writer} wrote {out.name} with {oct(mode(out))}"
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_folders_renamed_into_place_keep_the_umask_mode(tmp_path: Path, umask: int) -> None:
    from dahash.atomic import current_umask, mkdtemp
    from dahash.data.download import safe_extract
    from stages.common import atomic_path

    assert current_umask() == umask
    os.mkdir(tmp_path / "plain")
    expected = {0o022: 0o755, 0o077: 0o700, 0o002: 0o775}[umask]
    assert mode(tmp_path / "plain") == expected
    assert mode(mkdtemp(tmp_path, "build-")) == expected
    with atomic_path(tmp_path / "run") as tmp:  # a training's output folder
        tmp.mkdir()
        (tmp / "model.pt").write_bytes(b"m")
    assert mode(tmp_path / "run") == expected
    src = tmp_path / "src.txt"
    src.write_text("x")
    with tarfile.open(tmp_path / "a.tar", "w") as tf:
        tf.add(src, arcname="d/src.txt")
    out = safe_extract(tmp_path / "a.tar", tmp_path / "extracted")  # the download's folder, renamed into place
    assert mode(out) == expected


def test_mkstemp_helper_matches_open(tmp_path: Path, umask: int) -> None:
    from dahash.atomic import mkstemp

    fd, name = mkstemp(tmp_path, ".x.", ".tmp")
    os.close(fd)
    (tmp_path / "plain").touch()
    assert mode(Path(name)) == mode(tmp_path / "plain") == 0o666 & ~umask
