from __future__ import annotations

import dataclasses
import re

import pytest

from dahash.data.datasets import (
    CUSTOM,
    DATASETS,
    WEIGHTS,
    DatasetSpec,
    RemoteFile,
    folder_dataset,
    get_dataset,
    get_weights,
)
from dahash.data.download import tree_digest, tree_files

HEX64 = re.compile(r"^[0-9a-f]{64}$")
KNOWN_HASH = re.compile(r"^(md5:[0-9a-f]{32}|sha1:[0-9a-f]{40}|sha256:[0-9a-f]{64})$")


def test_registry_names_and_shapes():
    assert set(DATASETS) == {"office_home", "office31", "office_caltech10"}
    expect = {
        "office_home": (("Art", "Clipart", "Product", "RealWorld"), 65),
        "office31": (("amazon", "dslr", "webcam"), 31),
        "office_caltech10": (("amazon", "caltech10", "dslr", "webcam"), 10),
    }
    for name, (domains, n_classes) in expect.items():
        spec = DATASETS[name]
        assert spec.name == name
        assert spec.domains == domains
        assert len(spec.classes) == n_classes
        assert list(spec.classes) == sorted(spec.classes), name
        assert set(spec.domain_dirs) == set(spec.domains)
        assert isinstance(spec.archive, RemoteFile)
        assert spec.archive.url.startswith("https://")
        assert spec.homepage and spec.citation
        assert spec.image_counts is not None and set(spec.image_counts) == set(domains)


def test_exact_class_folders():
    oh = DATASETS["office_home"]
    for c in ("Alarm_Clock", "Desk_Lamp", "Postit_Notes", "TV", "Table", "ToothBrush", "Webcam"):
        assert c in oh.classes
    assert oh.classes.index("TV") < oh.classes.index("Table")  # code-point order, like ImageFolder
    assert oh.domain_dirs["RealWorld"] == "Real World"
    assert oh.archive.filename == "OfficeHomeDataset_10072016.zip"

    o31 = DATASETS["office31"]
    assert o31.classes[:3] == ("back_pack", "bike", "bike_helmet")
    assert {"laptop_computer", "mobile_phone", "ring_binder", "tape_dispenser", "trash_can"} <= set(o31.classes)
    assert o31.domain_dirs == {d: f"{d}/images" for d in o31.domains}
    assert o31.archive.filename == "domain_adaptation_images.tar.gz"

    oc = DATASETS["office_caltech10"]
    assert oc.classes == ("backpack", "bike", "calculator", "headphones", "keyboard", "laptop",
                          "monitor", "mouse", "mug", "projector")
    assert "74f70487e1b975d1af05bb9a2ecfbf14a7000080" in oc.archive.url
    assert oc.archive.url.endswith(".zip")
    assert oc.domain_dirs == {d: f"images/{d}" for d in oc.domains}
    assert oc.image_counts == {"amazon": 958, "caltech10": 1123, "dslr": 157, "webcam": 295}


def test_checksums_are_real_or_documented_none():
    files = [s.archive for s in DATASETS.values()] + list(WEIGHTS.values())
    for f in files:
        if f.known_hash is None:
            assert "no checksum is published" in f.note.lower(), f.filename
            assert f.checksum_text == "no published checksum"
        else:
            assert KNOWN_HASH.match(f.known_hash), f.filename
            assert "published in public loaders" in f.note, f.filename
    # the values published for these exact files
    assert DATASETS["office_home"].archive.known_hash == "md5:b1c14819770c4448fd5b6d931031c91c"
    assert DATASETS["office31"].archive.known_hash == "sha1:7aa25a86f3880b6e79283227816f9d4d8506d636"
    assert DATASETS["office_home"].archive.checksum_text == "md5 b1c14819770c4448fd5b6d931031c91c"
    assert DATASETS["office_caltech10"].archive.known_hash is None
    assert "tree_sha256" in DATASETS["office_caltech10"].archive.note
    assert WEIGHTS["vggf"].known_hash is None
    assert HEX64.match(DATASETS["office_caltech10"].tree_sha256)


@pytest.mark.parametrize(
    "value, alg",
    [("md5:" + "ab" * 16, "md5"), ("sha1:" + "cd" * 20, "sha1"), ("sha256:" + "ef" * 32, "sha256"),
     ("sha1:" + "CD" * 20, "sha1")],
)
def test_known_hash_accepted(value, alg):
    f = RemoteFile("http://x.invalid/f", "f.bin", value, None, "")
    assert f.hash_alg == alg
    assert f.hash_hex == value.split(":")[1].lower()
    assert f.known_hash == f"{alg}:{f.hash_hex}"  # hex normalised to lower case
    assert f.checksum_text == f"{alg} {f.hash_hex}"


@pytest.mark.parametrize(
    "value",
    ["ab" * 32,  # no algorithm
     "sha256 " + "ab" * 32,  # wrong separator
     "crc32:deadbeef",  # unsupported algorithm
     "sha512:" + "ab" * 64,
     "md5:" + "ab" * 20,  # a sha1-length digest labelled md5
     "sha256:" + "a" * 63,
     "sha1:" + "g" * 40,  # not hex
     "md5:",
     ""],
)
def test_known_hash_rejected(value):
    with pytest.raises(ValueError, match=r"f\.bin.*'<alg>:<hex>'"):
        RemoteFile("http://x.invalid/f", "f.bin", value, None, "")


# ---------------------------------------------------------------------------------------------
# a user's own folders
# ---------------------------------------------------------------------------------------------
def test_folder_dataset(tmp_path, make_image_tree):
    root = tmp_path / "mine"
    make_image_tree(root, ["photos", "sketches"], ["dog", "Cat", "bird"], n_per_class=1)
    (root / "photos" / ".hidden_class").mkdir()  # hidden folders are ignored
    (root / "sketches" / ".git").mkdir()
    (root / "photos" / "notes.txt").write_text("a file, not a class")
    (root / "unused_domain" / "zebra").mkdir(parents=True)  # domains not asked for are ignored

    spec = folder_dataset(root, ["sketches", "photos"])

    assert CUSTOM == "custom" and spec.name == CUSTOM
    assert spec.domains == ("sketches", "photos")
    assert spec.classes == ("Cat", "bird", "dog")  # code-point order, like ImageFolder
    assert spec.label_of("dog") == 2
    assert spec.archive is None and spec.tree_sha256 is None and spec.image_counts is None
    assert spec.domain_dirs == {"sketches": "sketches", "photos": "photos"}
    hash(spec)
    assert folder_dataset(root, ("photos",), name="pets").name == "pets"


def test_folder_dataset_mismatching_classes(tmp_path, make_image_tree):
    root = tmp_path / "mine"
    make_image_tree(root, ["a"], ["cat", "dog", "owl"], n_per_class=1)
    make_image_tree(root, ["b"], ["cat", "dog", "yak"], n_per_class=1)
    with pytest.raises(ValueError) as ei:
        folder_dataset(root, ["a", "b"])
    msg = str(ei.value)
    assert f"{root / 'a'} lacks ['yak']" in msg
    assert f"{root / 'b'} lacks ['owl']" in msg
    assert "same <class> folders" in msg


def test_folder_dataset_missing_folders(tmp_path, make_image_tree):
    root = tmp_path / "mine"
    make_image_tree(root, ["a"], ["cat"], n_per_class=1)
    with pytest.raises(ValueError) as ei:
        folder_dataset(root, ["a", "b"])
    assert str(root / "b") in str(ei.value) and "missing" in str(ei.value)
    assert "['a']" in str(ei.value)  # what was found instead
    with pytest.raises(ValueError, match="not a folder"):
        folder_dataset(tmp_path / "nowhere", ["a"])
    (root / "empty").mkdir()
    with pytest.raises(ValueError, match="no class sub-folders"):
        folder_dataset(root, ["a", "empty"])
    with pytest.raises(ValueError, match="no domains"):
        folder_dataset(root, [])
    with pytest.raises(ValueError, match="repeat"):
        folder_dataset(root, ["a", "a"])
    with pytest.raises(ValueError, match="plain name"):
        folder_dataset(root, ["../mine/a"])


def test_weights_registry():
    vggf = WEIGHTS["vggf"]
    assert vggf.url == "https://www.vlfeat.org/matconvnet/models/imagenet-vgg-f.mat"
    assert vggf.filename == "imagenet-vgg-f.mat"
    assert get_weights("vggf") is vggf
    with pytest.raises(ValueError, match="vggf"):
        get_weights("resnet")


def test_get_dataset_and_errors():
    assert get_dataset("office31") is DATASETS["office31"]
    with pytest.raises(ValueError) as ei:
        get_dataset("office-31")
    msg = str(ei.value)
    assert "office-31" in msg
    for name in DATASETS:
        assert name in msg


def test_specs_are_frozen_and_validated():
    spec = DATASETS["office31"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "x"  # type: ignore[misc]
    hash(spec)  # dict fields are excluded from the hash
    assert spec.label_of("bike") == 1
    with pytest.raises(ValueError, match="office31"):
        spec.label_of("Bike")
    with pytest.raises(ValueError, match="domain_dirs"):
        DatasetSpec("t", ("a", "b"), ("x",), spec.archive, {"a": "a"}, "h", "c", None)
    with pytest.raises(ValueError, match="sorted"):
        DatasetSpec("t", ("a",), ("y", "x"), spec.archive, {"a": "a"}, "h", "c", None)


def test_tree_digest_definition(tmp_path, make_image_tree):
    import hashlib

    rels = make_image_tree(tmp_path, ["d1", "d2"], ["a", "b"], n_per_class=2)
    (tmp_path / "d1" / "a" / ".DS_Store").write_bytes(b"junk")  # hidden: ignored
    assert tree_files(tmp_path, ["d1", "d2"]) == rels
    lines = sorted(f"{r}\t{hashlib.sha256((tmp_path / r).read_bytes()).hexdigest()}\n" for r in rels)
    expect = hashlib.sha256("".join(lines).encode()).hexdigest()
    assert tree_digest(tmp_path, ["d1", "d2"]) == expect
    # any content change, rename or extra file changes it
    (tmp_path / "d2" / "b" / "img_000.jpg").write_bytes(b"x")
    assert tree_digest(tmp_path, ["d1", "d2"]) != expect


@pytest.mark.realdata
def test_office_caltech_tree_digest_matches_shared_copy(shared_data):
    spec = DATASETS["office_caltech10"]
    root = shared_data / "office-caltech-10" / "images"
    assert len(tree_files(root, spec.domains, spec.classes)) == 2533
    assert tree_digest(root, spec.domains, spec.classes) == spec.tree_sha256
    assert tree_digest(root, spec.domains) == spec.tree_sha256
