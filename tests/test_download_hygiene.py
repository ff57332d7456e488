"""The download stage accepts only what the registry says (issue 23 point 9) and cleans up after a killed run
(point 13).

9. ``DAHASH_TEST_KNOWN_HASHES`` used to replace a published checksum in the PRODUCTION download stage: with it set,
   a fake archive was accepted and SOURCE.json recorded the fake hash as ``archive_known_hash``, so it looked
   verified. No environment variable changes what a real run accepts now; tests inject stand-ins through the
   library's API (a spec of their own) or a mirror.
13. ``kill -9`` of the download stage left ``data/raw/<dataset>.tmp-*`` (58 MB on the real mirror) that no later run
    removed. The build folders now carry the process id (``.<dataset>.pid<PID>.<x>.tmp``) and the next run removes
    those of processes that are gone (and the pid-less names of earlier versions), never a live run's.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dahash.data.datasets import OFFICE_HOME, folder_dataset
from dahash.data.download import prepare_dataset
from standin import write_office_home_zip

REPO_ROOT = Path(__file__).resolve().parents[1]


def _stage_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **data) -> Path:
    """A project root for stages.download run in-process (ROOT and load_params pointed at it)."""
    import stages.download as dl
    from stages import common

    root = tmp_path / "proj"
    root.mkdir()
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["data"].update(data)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    for name, mod in list(sys.modules.items()):
        if (name == "stages" or name.startswith("stages.")) and getattr(mod, "ROOT", None) == common.ROOT:
            monkeypatch.setattr(mod, "ROOT", root)
    monkeypatch.setattr(dl, "load_params", lambda: common.load_params(root / "params.yaml"))
    return root


def test_a_test_only_variable_cannot_make_the_download_stage_accept_a_fake_archive(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import stages.download as dl

    root = _stage_project(tmp_path, monkeypatch, dataset="office_home", mirror=None, manual_dir="downloads",
                          cache_dir="data/cache")
    fake = write_office_home_zip(root / "downloads" / OFFICE_HOME.archive.filename, list(OFFICE_HOME.classes),
                                 per_class=1, size=(8, 8))
    monkeypatch.setenv("DAHASH_OFFLINE", "1")
    monkeypatch.setenv("DAHASH_TEST_KNOWN_HASHES",
                       json.dumps({fake.name: "md5:" + hashlib.md5(fake.read_bytes()).hexdigest()}))
    with pytest.raises(SystemExit) as ei:
        dl.main([])
    assert ei.value.code == 1
    err = capsys.readouterr().err
    assert "placed by hand" in err and OFFICE_HOME.archive.known_hash.split(":")[1] in err, err
    assert not (root / "data" / "raw" / "office_home").exists()


def test_no_production_code_reads_a_test_only_switch() -> None:
    hits = [str(p.relative_to(REPO_ROOT)) for d in ("src", "stages", "workflow") for p in (REPO_ROOT / d).rglob("*.py")
            if "DAHASH_TEST" in p.read_text()]
    assert hits == []


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_killed_runs_build_folders_are_swept_and_a_live_ones_kept(tmp_path: Path, make_image_tree) -> None:
    mirror = tmp_path / "mirror"
    make_image_tree(mirror, ["day", "night"], ["car", "person"])
    raw = tmp_path / "data" / "raw"
    raw.mkdir(parents=True)
    dead, live = _dead_pid(), os.getppid()  # the parent process (pytest's runner or shell) is alive
    debris = [raw / f".custom.pid{dead}.abcd1234.tmp", raw / f".custom.pid{dead}.xabcd1234.tmp",  # this version's
              raw / "custom.tmp-k2j3h4g5", raw / ".custom.extract-a1b2c3d4", raw / ".custom.old-z9y8x7w6"]  # earlier
    for d in debris:
        (d / "day" / "car").mkdir(parents=True)
        (d / "day" / "car" / "img.jpg").write_bytes(b"x" * 1000)
    running = raw / f".custom.pid{live}.efgh5678.tmp"
    running.mkdir()
    other = raw / "office31.tmp-k2j3h4g5"  # another dataset's: not ours to judge here
    other.mkdir()

    out = prepare_dataset(folder_dataset(mirror, ["day", "night"]), raw / "custom", mirror=mirror,
                          cache_dir=tmp_path / "cache", progress=False, offline=True)

    assert sorted(p.name for p in raw.iterdir()) == sorted(["custom", running.name, other.name])
    assert (out / "day" / "car").is_dir()


def test_a_killed_download_stage_leaves_nothing_the_next_run_keeps(tmp_path: Path, make_image_tree) -> None:
    """kill -9 in the middle of the copy (a real process, killed while it copies), then a normal run."""
    mirror = tmp_path / "mirror"
    make_image_tree(mirror, ["day", "night"], ["car", "person"], n_per_class=3)
    raw = tmp_path / "raw"
    code = f"""
import os, signal, sys
sys.path[:0] = {[str(REPO_ROOT / 'src')]!r}
import dahash.data.mirror as m
from pathlib import Path
from dahash.data.datasets import folder_dataset
from dahash.data.download import prepare_dataset
real = m.Beneath.open
def open_then_die(self, rel, *, directory):
    if not directory and rel.endswith("img_001.jpg"):
        os.kill(os.getpid(), signal.SIGKILL)
    return real(self, rel, directory=directory)
m.Beneath.open = open_then_die
mirror = Path({str(mirror)!r})
prepare_dataset(folder_dataset(mirror, ["day", "night"]), Path({str(raw / 'custom')!r}), mirror=mirror,
                cache_dir=Path({str(tmp_path / 'cache')!r}), progress=False, offline=True)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    left = [p.name for p in raw.iterdir()]
    assert left and all(n.startswith(".custom.pid") and n.endswith(".tmp") for n in left), left
    prepare_dataset(folder_dataset(mirror, ["day", "night"]), raw / "custom", mirror=mirror,
                    cache_dir=tmp_path / "cache", progress=False, offline=True)
    assert [p.name for p in raw.iterdir()] == ["custom"]
