"""A custom data.mirror may not smuggle in files from outside it through symbolic links (issue 10 point 3)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from dahash.data.datasets import folder_dataset
from dahash.data.download import DownloadError, prepare_dataset
from dahash.data.links import links_leaving


@pytest.fixture
def mirror(tmp_path: Path, make_image_tree) -> Path:
    root = tmp_path / "mirror"
    make_image_tree(root, ["day", "night"], ["car", "person"], n_per_class=2)
    return root


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    p = tmp_path / "outside" / "secret.txt"
    p.parent.mkdir()
    p.write_text("not an image, not yours to publish\n")
    return p


def _prepare(mirror: Path, tmp_path: Path) -> Path:
    spec = folder_dataset(mirror, ["day", "night"])
    return prepare_dataset(spec, tmp_path / "data" / "custom", mirror=mirror, cache_dir=tmp_path / "cache",
                           progress=False, offline=True)


def _assert_refused(mirror: Path, tmp_path: Path, *names: str) -> None:
    with pytest.raises(DownloadError, match="symlink") as ei:
        _prepare(mirror, tmp_path)
    for n in names:
        assert n in str(ei.value)
    data = tmp_path / "data"
    assert not data.exists() or os.listdir(data) == [], "something was written (or temp debris left)"


def test_file_link_leaving_the_mirror_is_refused_and_named(mirror: Path, secret: Path, tmp_path: Path) -> None:
    (mirror / "day" / "car" / "stolen.jpg").symlink_to(secret)
    _assert_refused(mirror, tmp_path, "day/car/stolen.jpg", str(secret))


def test_relative_dotdot_link_is_refused(mirror: Path, secret: Path, tmp_path: Path) -> None:
    (mirror / "night" / "person" / "x.jpg").symlink_to(Path("../../../outside/secret.txt"))
    _assert_refused(mirror, tmp_path, "night/person/x.jpg")


def test_class_folder_link_leaving_the_mirror_is_refused(mirror: Path, secret: Path, tmp_path: Path) -> None:
    shutil.rmtree(mirror / "day" / "car")
    (mirror / "day" / "car").symlink_to(secret.parent, target_is_directory=True)
    _assert_refused(mirror, tmp_path, "day/car")


def test_domain_folder_link_leaving_the_mirror_is_refused(mirror: Path, tmp_path: Path, make_image_tree) -> None:
    elsewhere = tmp_path / "elsewhere"
    make_image_tree(elsewhere, ["night"], ["car", "person"])
    shutil.rmtree(mirror / "night")
    (mirror / "night").symlink_to(elsewhere / "night", target_is_directory=True)
    _assert_refused(mirror, tmp_path, "night")


def test_dangling_link_is_refused(mirror: Path, tmp_path: Path) -> None:
    (mirror / "day" / "car" / "gone.jpg").symlink_to(tmp_path / "nothing-here.jpg")
    _assert_refused(mirror, tmp_path, "day/car/gone.jpg")


def test_links_inside_the_mirror_are_followed(mirror: Path, tmp_path: Path) -> None:
    """A link to another image of the same mirror is fine; a mirror reached through a link is fine too."""
    target = mirror / "night" / "car" / "img_000.jpg"
    (mirror / "day" / "car" / "alias.jpg").symlink_to(target)
    via = tmp_path / "via-link"
    via.symlink_to(mirror, target_is_directory=True)
    assert links_leaving(via, [via / "day", via / "night"]) == []
    out = _prepare(via, tmp_path)
    assert (out / "day" / "car" / "alias.jpg").read_bytes() == target.read_bytes()
    assert not (out / "day" / "car" / "alias.jpg").is_symlink()
