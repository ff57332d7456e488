"""MNIST / USPS readers, verified sources and the digits image tree (dahash.data.digits)."""

from __future__ import annotations

import gzip
import hashlib
import json
import struct
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from dahash.data.datasets import RemoteFile
from dahash.data.digits import (
    AUTHORS_MNIST_COUNTS,
    AUTHORS_USPS_COUNTS,
    DEFAULT_SOURCES,
    DIGITS_BOOST_SIZE,
    DIGITS_SETTINGS,
    DigitsFile,
    DigitsSources,
    digits_items,
    prepare_digits,
    read_idx,
    read_usps_h5,
    verify_digits_file,
)
from dahash.data.download import DownloadError
from dahash.train.head import DAHConfig

MNIST_TEST_HIST = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
USPS_ALL_HIST = [1553, 1269, 929, 824, 852, 716, 834, 792, 708, 821]


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def idx_bytes(arr: np.ndarray, type_code: int = 0x08, big_endian_dtype: str = ">u1") -> bytes:
    """Hand-written IDX: 00 00 type ndim, big-endian uint32 sizes, big-endian data."""
    header = bytes([0, 0, type_code, arr.ndim]) + b"".join(struct.pack(">I", s) for s in arr.shape)
    return header + arr.astype(big_endian_dtype).tobytes()


def write_usps(path: Path, n_train: int, n_test: int, seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    data = {}
    with h5py.File(path, "w") as h:
        for split, n in (("train", n_train), ("test", n_test)):
            x = rng.random((n, 256), dtype=np.float32)
            y = (np.arange(n) % 10).astype(np.int32)
            h.create_dataset(f"{split}/data", data=x)
            h.create_dataset(f"{split}/target", data=y)
            data[split] = (x.reshape(n, 16, 16), y)
    return data


def md5(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()


class TinySources:
    """Tiny MNIST test files + usps.h5 in ``root/mnist`` and ``root/usps``, and matching DigitsSources.

    The images .gz is registered with a WRONG archive md5 but the right decoded md5 (a re-gzipped
    copy); the labels .gz with its right archive md5; usps.h5 with its sha256.
    """

    def __init__(self, root: Path, n_mnist: int = 30, n_usps: tuple[int, int] = (20, 10)) -> None:
        rng = np.random.default_rng(3)
        self.root = root
        self.mnist_x = rng.integers(0, 256, (n_mnist, 28, 28), dtype=np.uint8)
        self.mnist_y = (np.arange(n_mnist) % 10).astype(np.uint8)
        (root / "mnist").mkdir(parents=True)
        (root / "usps").mkdir(parents=True)
        raw_x, raw_y = idx_bytes(self.mnist_x), idx_bytes(self.mnist_y)
        gz_x, gz_y = gzip.compress(raw_x, mtime=0), gzip.compress(raw_y, mtime=0)
        (root / "mnist" / "t10k-images-idx3-ubyte.gz").write_bytes(gz_x)
        (root / "mnist" / "t10k-labels-idx1-ubyte.gz").write_bytes(gz_y)
        self.usps = write_usps(root / "usps" / "usps.h5", *n_usps)
        usps_sha = hashlib.sha256((root / "usps" / "usps.h5").read_bytes()).hexdigest()
        base = "http://127.0.0.1:9/"  # never contacted in these tests

        def rf(name: str, known: str) -> RemoteFile:
            return RemoteFile(url=base + name, filename=name, known_hash=known, size=None, note="test")

        mnist = dict(DEFAULT_SOURCES.mnist)
        mnist["test-images"] = DigitsFile(rf("t10k-images-idx3-ubyte.gz", "md5:" + md5(b"other gzip")),
                                          decoded_md5=md5(raw_x),
                                          decoded_sha256=hashlib.sha256(raw_x).hexdigest(), domain="mnist")
        mnist["test-labels"] = DigitsFile(rf("t10k-labels-idx1-ubyte.gz", "md5:" + md5(gz_y)),
                                          decoded_md5=md5(raw_y), domain="mnist")
        self.sources = DigitsSources(
            mnist=mnist, usps=DigitsFile(rf("usps.h5", "sha256:" + usps_sha), domain="usps"))


def leftovers(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(name) and p.name != name)


# ---------------------------------------------------------------------------------------------
# readers
# ---------------------------------------------------------------------------------------------
def test_read_idx_raw_and_gzipped(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    raw = tmp_path / "imgs-idx3-ubyte"
    raw.write_bytes(idx_bytes(arr))
    assert raw.read_bytes()[:4] == bytes.fromhex("00000803")
    np.testing.assert_array_equal(read_idx(raw), arr)
    gz = tmp_path / "imgs-idx3-ubyte.gz"
    gz.write_bytes(gzip.compress(raw.read_bytes()))
    out = read_idx(gz)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, arr)
    ints = np.array([1, -2, 70000], dtype=np.int32)
    p = tmp_path / "ints-idx1"
    p.write_bytes(idx_bytes(ints, 0x0C, ">i4"))
    got = read_idx(p)
    np.testing.assert_array_equal(got, ints)
    assert got.dtype.byteorder in ("=", "<", "|")  # native, not big-endian


def test_read_idx_rejects_bad_magic_and_truncation(tmp_path):
    bad = tmp_path / "bad-magic.idx"
    bad.write_bytes(bytes.fromhex("01000803") + b"\x00" * 20)
    with pytest.raises(ValueError, match="bad-magic.idx.*magic"):
        read_idx(bad)
    unknown_type = tmp_path / "type.idx"
    unknown_type.write_bytes(bytes.fromhex("00000701") + struct.pack(">I", 1) + b"\x00")
    with pytest.raises(ValueError, match="type.idx"):
        read_idx(unknown_type)
    short = tmp_path / "short.idx"
    short.write_bytes(idx_bytes(np.zeros((3, 2, 2), np.uint8))[:-1])
    with pytest.raises(ValueError, match="short.idx.*truncated"):
        read_idx(short)


def test_read_usps_h5(tmp_path):
    path = tmp_path / "usps.h5"
    data = write_usps(path, 12, 5)
    got = read_usps_h5(path)
    assert set(got) == {"train", "test"}
    for split in ("train", "test"):
        x, y = got[split]
        assert x.shape == (len(data[split][1]), 16, 16) and x.dtype == np.float32 and y.dtype == np.int64
        np.testing.assert_array_equal(x, data[split][0])
        np.testing.assert_array_equal(y, data[split][1])
    broken = tmp_path / "broken.h5"
    with h5py.File(broken, "w") as h:
        h.create_dataset("train/data", data=np.zeros((2, 256), np.float32))
        h.create_dataset("train/target", data=np.zeros(2, np.int32))
    with pytest.raises(ValueError, match="broken.h5.*test/data"):
        read_usps_h5(broken)


# ---------------------------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------------------------
def test_default_sources_and_settings():
    m = DEFAULT_SOURCES.mnist
    assert m["train-images"].remote.url == "https://ossci-datasets.s3.amazonaws.com/mnist/train-images-idx3-ubyte.gz"
    assert m["train-images"].remote.known_hash == "md5:f68b3c2dcbeaaa9fbdd348bbdeb94873"
    assert m["train-labels"].remote.known_hash == "md5:d53e105ee54ea40749a09fcbcd1e9432"
    assert m["test-images"].remote.known_hash == "md5:9fb629c4189551a2d022fa330f9573f3"
    assert m["test-labels"].remote.known_hash == "md5:ec29112dd5afa0611ce80d1b7f02629c"
    assert all(f.decoded_md5 for f in m.values())
    assert DEFAULT_SOURCES.usps.remote.known_hash == (
        "sha256:734f88c541104a956d88be2c95d03b4a463ffd74ccc2ba9c80841fb98e3fcb36")
    cfg = DAHConfig(**DIGITS_SETTINGS)
    assert (cfg.similar_weight, cfg.k_per_class, cfg.eta) == (100.0, 20, 0.1)


def test_digits_preset_holds_the_authors_values():
    """cnn_digit_da.m / cnn_digit_dah_init.m / test_dah.m, read from one place (dahash.data.digits): hashSize 10,
    K 20, gamma 1e2, entpW 0.1, supHashW 100, beta 1, 40 epochs of logspace(-4, -5), weight decay 5e-4, no fc6/fc7,
    MMD on relu3 and fc4, lr multipliers [1 1] with bias decay, boostSize 200, the first 10k MNIST training
    images -- the preset trains and evaluates with exactly these, and the stage config takes them as they are."""
    import yaml

    from stages.runs import dah_config

    root = Path(__file__).resolve().parents[1]
    preset = yaml.safe_load((root / "workflow" / "presets" / "digits.yaml").read_text())
    params = yaml.safe_load((root / "params.yaml").read_text())
    train = {**params["train"], **preset["train"], **(preset["methods"]["dah"] or {})}
    config = dah_config(train)
    for key, value in DIGITS_SETTINGS.items():
        got = tuple(train[key]) if isinstance(value, tuple) else train[key]
        assert got == value, key
        assert getattr(config, key) == value, key
    assert preset["backbone"]["name"] == "smallcnn" and train["mode"] == "finetune"
    assert preset["eval"]["db_per_class"] == preset["eval"]["max_per_class"] == DIGITS_BOOST_SIZE == 200
    assert preset["data"]["digits_mnist"] == "authors"
    assert AUTHORS_USPS_COUNTS == tuple(USPS_ALL_HIST)  # the authors' USPS = all of it


def test_authors_mnist_list_is_the_first_10k_training_images(tmp_path):
    """mnist-imdbStats_Val.mat's per-class counts are those of MNIST training images 0..9999; a training file whose
    first 10k labels have other counts is refused (it is not MNIST's)."""
    from dahash.data.digits import _mnist_arrays

    labels = np.repeat(np.arange(10), AUTHORS_MNIST_COUNTS)
    labels = np.concatenate([np.random.default_rng(0).permutation(labels), np.full(20, 7)])  # 10,020 images
    images = (np.arange(labels.size) % 251).astype(np.uint8)[:, None, None] * np.ones((1, 28, 28), np.uint8)
    (tmp_path / "x").write_bytes(idx_bytes(images))
    (tmp_path / "y").write_bytes(idx_bytes(labels.astype(np.uint8)))
    paths = {"train-images": tmp_path / "x", "train-labels": tmp_path / "y"}
    x, y = _mnist_arrays(paths, "authors")
    assert x.shape == (10_000, 28, 28) and np.array_equal(y, labels[:10_000])
    assert np.array_equal(x[:, 0, 0], images[:10_000, 0, 0])  # training-file order
    i = int(np.flatnonzero(labels[:10_000] != 7)[0])
    labels[i], labels[-1] = labels[-1], labels[i]  # a 7 among the first 10k instead of another digit
    (tmp_path / "y").write_bytes(idx_bytes(labels.astype(np.uint8)))
    with pytest.raises(ValueError, match="not the MNIST training file"):
        _mnist_arrays(paths, "authors")


def test_usps_is_upsampled_bicubic_as_the_authors(tmp_path):
    src = TinySources(tmp_path / "mirror")
    out = {}
    for interp in ("bicubic", "bilinear"):
        out[interp] = prepare_digits(tmp_path / interp, mirror=src.root, cache_dir=tmp_path / "cache", manual_dir=None,
                                     offline=True, sources=src.sources, interpolation=interp)
        assert json.loads((out[interp] / "SOURCE.json").read_text())["interpolation"] == interp
    first = sorted((out["bicubic"] / "usps" / "0").glob("*.png"))[0]
    x = src.usps["train"][0][0]  # the first USPS training image, a digit 0
    want = Image.fromarray(x.astype(np.float32), "F").resize((28, 28), Image.Resampling.BICUBIC)
    want = np.clip(np.rint(np.asarray(want) * 255.0), 0, 255).astype(np.uint8)
    assert np.array_equal(np.asarray(Image.open(first)), want)
    assert not np.array_equal(np.asarray(Image.open(out["bilinear"] / "usps" / "0" / first.name)), want)
    with pytest.raises(ValueError, match="interpolation"):
        prepare_digits(tmp_path / "z", mirror=src.root, cache_dir=tmp_path / "cache", manual_dir=None, offline=True,
                       sources=src.sources, interpolation="nearest")


# ---------------------------------------------------------------------------------------------
# prepare_digits
# ---------------------------------------------------------------------------------------------
def test_prepare_digits_from_mirror(tmp_path):
    src = TinySources(tmp_path / "mirror")
    out = tmp_path / "data" / "digits"
    got = prepare_digits(out, mirror=src.root, cache_dir=tmp_path / "cache", manual_dir=None, offline=True,
                         sources=src.sources)
    assert got == out
    meta = json.loads((out / "SOURCE.json").read_text())
    assert meta["counts"] == {"mnist": 30, "usps": 30}
    assert meta["class_counts"]["mnist"] == {str(c): 3 for c in range(10)}
    files = meta["files"]
    assert files["t10k-images-idx3-ubyte.gz"]["verified"] == "decoded md5+sha256"  # re-gzipped copy
    assert files["t10k-labels-idx1-ubyte.gz"]["verified"] == "archive md5"
    assert files["usps.h5"]["verified"] == "archive sha256"
    assert {f["kind"] for f in files.values()} == {"mirror"}
    # MNIST images are written unchanged, in class folders, named by their index
    p = out / "mnist" / "7" / "00017.png"
    with Image.open(p) as im:
        assert im.mode == "L" and im.size == (28, 28)
        np.testing.assert_array_equal(np.asarray(im), src.mnist_x[17])
    # USPS: train then test, 16x16 -> 28x28; a constant-free check: mean brightness is kept
    paths, labels = digits_items(out, "usps")
    assert len(paths) == 30 and sorted(np.bincount(labels).tolist()) == [3] * 10
    x_test0 = src.usps["test"][0][0]
    with Image.open(out / "usps" / "0" / "00020.png") as im:
        assert im.size == (28, 28)
        assert abs(np.asarray(im, dtype=np.float64).mean() / 255.0 - x_test0.mean()) < 0.03
    assert leftovers(out.parent, "digits") == []
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())


def test_prepare_digits_splits_limit_and_replace(tmp_path):
    src = TinySources(tmp_path / "mirror")
    out = tmp_path / "digits"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    prepare_digits(out, mirror=None, cache_dir=tmp_path / "cache", manual_dir=src.root, offline=True,
                   sources=src.sources, usps_split="test", limit_per_class=2, size=32)
    meta = json.loads((out / "SOURCE.json").read_text())
    assert meta["counts"] == {"mnist": 20, "usps": 10}
    assert {f["kind"] for f in meta["files"].values()} == {"manual"}
    assert not (out / "stale.txt").exists()
    with Image.open(next((out / "mnist" / "3").iterdir())) as im:
        assert im.size == (32, 32)
    assert leftovers(tmp_path, "digits") == []
    with pytest.raises(ValueError, match="usps_split"):
        prepare_digits(out, mirror=src.root, cache_dir=tmp_path / "c", manual_dir=None, offline=True,
                       sources=src.sources, usps_split="val")


def test_prepare_digits_offline_names_every_missing_file(tmp_path):
    out = tmp_path / "digits"
    with pytest.raises(DownloadError) as err:
        prepare_digits(out, mirror=None, cache_dir=tmp_path / "cache", manual_dir=tmp_path / "manual",
                       offline=True)
    msg = str(err.value)
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "usps.h5", "offline",
                 "ossci-datasets.s3.amazonaws.com", str(tmp_path / "manual")):
        assert name in msg
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_prepare_digits_rejects_a_wrong_file(tmp_path):
    src = TinySources(tmp_path / "mirror")
    labels = src.root / "mnist" / "t10k-labels-idx1-ubyte.gz"
    labels.chmod(0o644)
    labels.write_bytes(gzip.compress(idx_bytes(np.zeros(30, np.uint8))))  # right format, wrong content
    out = tmp_path / "digits"
    with pytest.raises(DownloadError, match="t10k-labels-idx1-ubyte.gz.*does not match"):
        prepare_digits(out, mirror=src.root, cache_dir=tmp_path / "cache", manual_dir=None, offline=True,
                       sources=src.sources)
    assert not out.exists() and leftovers(tmp_path, "digits") == []
    with pytest.raises(DownloadError, match="decoded md5"):
        verify_digits_file(labels, src.sources.mnist["test-labels"])


@pytest.mark.realdata
def test_prepare_digits_from_shared_data(shared_data, tmp_path):
    out = prepare_digits(tmp_path / "digits", mirror=shared_data, cache_dir=tmp_path / "cache", manual_dir=None,
                         offline=True)
    meta = json.loads((out / "SOURCE.json").read_text())
    assert meta["counts"] == {"mnist": 10000, "usps": 9298}
    assert [meta["class_counts"]["mnist"][str(c)] for c in range(10)] == MNIST_TEST_HIST
    assert [meta["class_counts"]["usps"][str(c)] for c in range(10)] == USPS_ALL_HIST
    files = meta["files"]
    # the shared MNIST copy is re-gzipped: accepted through the published decoded md5 (+ pinned sha256)
    assert files["t10k-images-idx3-ubyte.gz"]["verified"] == "decoded md5+sha256"
    assert files["usps.h5"]["verified"] == "archive sha256"
    paths, labels = digits_items(out, "mnist")
    assert len(paths) == 10000 and np.bincount(labels).tolist() == MNIST_TEST_HIST
    assert (out / "usps" / "9" / "07291.png").is_file()  # the first USPS test image (after 7291 train) is a 9
    with Image.open(paths[0]) as im:
        assert im.mode == "L" and im.size == (28, 28)


# ----------------------------------------------------------------------------- fast path: decode once
def test_decoded_images_train_exactly_as_their_files(tmp_path):
    # the digits fast path hands dahash.train.finetune decoded images instead of paths: same history, weights, codes
    import torch

    from dahash.nn.augment import EvalTransform, TrainTransform, channel_moments
    from dahash.nn.backbones.smallcnn import SmallCNN
    from dahash.data.digits import decode_images
    from dahash.train.finetune import encode_images, train_dah_finetune
    from dahash.nn.model import DAHHead
    from dahash.train.head import DAHConfig

    rng = np.random.default_rng(0)
    paths, ys = [], []
    for i in range(24):
        x = rng.integers(0, 60, (28, 28)).astype(np.uint8)
        x[:, 4 + 8 * (i % 3): 10 + 8 * (i % 3)] = 220  # the class is the bar position
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(x, "L").save(paths[-1])
        ys.append(i % 3)
    source, target, ys = paths[:12], paths[12:], np.array(ys[:12])
    decoded = decode_images(paths)
    assert [im.mode for im in decoded] == ["L"] * 24
    np.testing.assert_array_equal(np.asarray(decoded[5]), np.asarray(Image.open(paths[5])))

    def run(src, tgt):
        g = torch.Generator().manual_seed(0)
        trunk = SmallCNN(in_channels=1, feature_dim=32, input_size=28, fc3_groups=1, init_std=None, generator=g)
        head = DAHHead(32, (16, 16), 8, generator=g)
        cfg = DAHConfig(hash_bits=8, hidden_dims=(16, 16), k_per_class=2, epochs=2)
        tf = TrainTransform(28, mean=70.0, std=70.0, channels=1, flip=False, brightness=4.0)
        res = train_dah_finetune(src, ys, tgt, 3, cfg, trunk=trunk, head=head, trunk_pretrained=False,
                                 train_transform=tf, seed=0)
        codes = encode_images(res.trunk, res.head, tgt, EvalTransform(28, 70.0, 70.0, channels=1, crop_fraction=1.0))
        return res, codes, channel_moments(list(src) + list(tgt), 28, channels=1)

    (a, ca, ma), (b, cb, mb) = run(source, target), run(decoded[:12], decoded[12:])
    assert a.history == b.history
    sa, sb = {**a.trunk.state_dict(), **a.head.state_dict()}, {**b.trunk.state_dict(), **b.head.state_dict()}
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    np.testing.assert_array_equal(ca, cb)
    np.testing.assert_array_equal(ma.mean, mb.mean)


def test_decode_images_names_a_broken_file(tmp_path):
    from dahash.data.digits import decode_images

    bad = tmp_path / "7" / "00012.png"
    bad.parent.mkdir()
    bad.write_bytes(b"not a png")
    with pytest.raises(OSError, match="00012.png"):
        decode_images([bad])
