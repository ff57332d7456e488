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


# --- the race (issue 23 point 2): a link swapped in AFTER the check is never followed -----------------------------
def _swap_after_check(monkeypatch: pytest.MonkeyPatch, swap) -> list[bool]:
    """Make :func:`links_leaving` (the up-front check) call ``swap`` once it has looked: the worst timing."""
    import dahash.data.links as links

    real, swapped = links.links_leaving, []

    def check_then_swap(*args, **kwargs):
        out = real(*args, **kwargs)
        swap()
        swapped.append(True)
        return out

    monkeypatch.setattr(links, "links_leaving", check_then_swap)
    return swapped


def _nothing_of(secret: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    leaked = [p for p in data.rglob("*") if p.is_file() and p.read_bytes() == secret.read_bytes()] if data.exists() else []
    assert not leaked, f"the outside file was copied: {leaked}"
    assert not data.exists() or os.listdir(data) == [], "something was written (or temp debris left)"


def test_a_file_swapped_for_an_outside_link_after_the_check_is_not_copied(
        mirror: Path, secret: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    victim = mirror / "day" / "car" / "img_000.jpg"
    assert victim.is_file()

    def swap() -> None:
        victim.unlink()
        victim.symlink_to(secret)

    swapped = _swap_after_check(monkeypatch, swap)
    with pytest.raises(DownloadError, match="outside") as ei:
        _prepare(mirror, tmp_path)
    assert swapped and "day/car/img_000.jpg" in str(ei.value)
    _nothing_of(secret, tmp_path)


def test_a_class_folder_swapped_for_an_outside_link_after_the_check_is_not_copied(
        mirror: Path, secret: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (secret.parent / "img_000.jpg").write_bytes(secret.read_bytes())  # looks like an image of the class

    def swap() -> None:
        shutil.rmtree(mirror / "night" / "person")
        (mirror / "night" / "person").symlink_to(secret.parent, target_is_directory=True)

    swapped = _swap_after_check(monkeypatch, swap)
    with pytest.raises(DownloadError, match="outside"):
        _prepare(mirror, tmp_path)
    assert swapped
    _nothing_of(secret, tmp_path)


def test_a_chain_of_inside_links_climbing_out_is_refused(mirror: Path, secret: Path, tmp_path: Path) -> None:
    """Each link looks harmless alone; followed beneath the mirror, the chain leaves it and is refused."""
    from dahash.data.mirror import Beneath, MirrorEscape

    (mirror / "day" / "up").symlink_to(Path(".."), target_is_directory=True)  # a hidden-free name, not a class
    (mirror / "day" / "car" / "x.jpg").symlink_to(Path("../up/../../outside/secret.txt"))
    with Beneath(mirror) as bn:
        with pytest.raises(MirrorEscape):
            bn.open("day/car/x.jpg", directory=False)
        fd = bn.open("day/car/img_000.jpg", directory=False)  # an ordinary file opens
        os.close(fd)


def test_a_fifo_in_the_mirror_is_skipped_without_blocking(mirror: Path, tmp_path: Path) -> None:
    os.mkfifo(mirror / "day" / "car" / "pipe.jpg")
    out = _prepare(mirror, tmp_path)
    assert not (out / "day" / "car" / "pipe.jpg").exists()
    assert (out / "day" / "car" / "img_000.jpg").is_file()


def test_mirror_digest_is_the_copys_tree_digest_and_sees_content_only(mirror: Path, tmp_path: Path) -> None:
    """The mirror's state (stages/mirror_state.py) is the digest the copy will have; its cache (by fstat) never
    hides a changed file, even one whose size and mtime were put back."""
    from dahash.data.download import tree_digest
    from dahash.data.mirror import mirror_digest

    out = _prepare(mirror, tmp_path)
    domains = {d: mirror / d for d in ("day", "night")}
    cache = tmp_path / "digests.json"
    digest, n = mirror_digest(mirror, domains, cache_file=cache)
    assert digest == tree_digest(out, ["day", "night"]) and n == 8 and cache.exists()
    assert mirror_digest(mirror, domains, cache_file=cache) == (digest, n)
    img = mirror / "night" / "car" / "img_000.jpg"
    data, st = bytearray(img.read_bytes()), img.stat()
    data[-3] ^= 0xFF  # same size
    img.write_bytes(bytes(data))
    os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime
    assert mirror_digest(mirror, domains, cache_file=cache)[0] != digest
    copy = tmp_path / "copy"
    shutil.copytree(mirror, copy)
    assert mirror_digest(copy, {d: copy / d for d in ("day", "night")}) == mirror_digest(mirror, domains)
