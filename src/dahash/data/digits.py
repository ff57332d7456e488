"""MNIST <-> USPS: readers, verified sources, and the image-folder tree the pipeline trains on.

The authors' ``examples/digit_da`` (not in the paper) adapts MNIST -> USPS with ``W = 100`` for
similar pairs, ``K = 20`` items per class per batch and ``eta = 0.1`` (:data:`DIGITS_SETTINGS`,
``DAHConfig`` overrides) and a network trained from scratch
(:class:`dahash.nn.backbones.smallcnn.SmallCNN`, the layer list of ``cnn_digit_dah_init.m``). Their released
default model type is ``'vgg-daSfx'`` (softmax + entropy loss, "not included in the CVPR 2017 paper"; the
``hashSize = 10`` of ``cnn_digit_da.m`` belongs to it: "For daSfx it has to be the size of the class"); the
project keeps the paper's DAH hash loss (``'vgg-dah'``) at those settings.

**The authors' image lists** are recorded: the repository ships ``examples/digit_da/mnist-imdbStats_Val.mat``
and ``usps-imdbStats_Val.mat`` (``images.trainValNames``, ``images.actLabel``, ``images.set``):

* MNIST: 10,000 files ``mnist/<digit>/<digit>_<nnnnn>.jpg`` with per-class counts
  :data:`AUTHORS_MNIST_COUNTS` = [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978] (digits 0..9). These
  are NOT the MNIST test set's counts ([980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]); they are exactly
  the counts of the FIRST 10,000 MNIST TRAINING images (checked on ``train-labels-idx1-ubyte``, decoded md5
  ``a25bea73...``). So ``mnist_split="authors"`` = training images 0..9999, grouped by digit, each digit's files
  in training-file order (the natural reading of their numbering ``<digit>_00001``...; the lists hold names,
  not MNIST indices).
* USPS: 9,298 files with the counts of all of USPS (train 7,291 + test 2,007), :data:`AUTHORS_USPS_COUNTS`;
  their order within a digit is not recorded (here: train then test, file order).
* ``images.set`` in these files (6,995 / 3,005 train / val) belongs to a validation study; the training
  (``cnn_digit_da.m``: ``valSizeRatio = 0``) and ``test_dah.m`` use every image. ``test_dah.m`` caps the
  retrieval database and the classifier at the first ``boostSize = 200`` source items per class (the digits
  preset's ``eval.db_per_class`` and ``eval.max_per_class``).
* Images: they read JPEGs with ``vl_imreadjpeg(..., 'Interpolation', 'bicubic', 'Resize', [28 28])``
  (``getImageBatch.m``), so USPS (16 x 16) is upsampled bicubically (``interpolation="bicubic"``, the
  default here); the project writes lossless PNGs (their JPEG compression is not reproduced).

Sources and checksums (none invented):

* MNIST, IDX files from the mirror torchvision uses, ``https://ossci-datasets.s3.amazonaws.com/mnist/``.
  ``known_hash`` is the md5 of the ``.gz`` archive that torchvision publishes. Some copies (e.g. the
  one in this project's shared data folder) were RE-GZIPPED: their decoded bytes are identical but
  the archive md5 differs, because gzip headers hold a timestamp/file name and compressors differ.
  So a copy whose archive md5 does not match is accepted when its DECODED content (the raw IDX file
  after gunzip) matches ``decoded_md5``, the widely published md5 of the uncompressed IDX files
  (e.g. ``2646ac64...`` for ``t10k-images-idx3-ubyte``); for the test files we also pin
  ``decoded_sha256``, computed from the shared copy, whose decoded md5 matched the published one.
* USPS, ``usps.h5`` (the widely used Kaggle file: HDF5 groups ``train/{data,target}``,
  ``test/{data,target}``, 7,291 + 2,007 images of 16 x 16 floats in [0, 1]), sha256 of the file.

The prepared tree ``out_dir/<domain>/<class>/<idx>.png`` (domains ``mnist`` and ``usps``, classes
``"0"`` .. ``"9"``, 8-bit grayscale PNGs of one common size) plus ``SOURCE.json`` is built in a
temporary folder and renamed into place.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import shutil
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import MappingProxyType
from typing import Literal

import h5py
import numpy as np
from PIL import Image

from dahash.data.datasets import DIGITS_DOMAINS, RemoteFile
from dahash.atomic import mkdtemp
from dahash.data.download import DownloadError, _replace_dir, _write_json_atomic, fetch, hash_file, tree_digest

__all__ = [
    "DIGITS_CHANNELS",
    "DIGITS_CLASSES",
    "DIGITS_DOMAINS",
    "DIGITS_IMAGE_SIZE",
    "DIGITS_SETTINGS",
    "AUTHORS_MNIST_COUNTS",
    "AUTHORS_USPS_COUNTS",
    "DEFAULT_SOURCES",
    "DigitsFile",
    "DigitsSources",
    "MNIST_URL",
    "decode_images",
    "digits_items",
    "prepare_digits",
    "read_idx",
    "read_usps_h5",
    "verify_digits_file",
]

log = logging.getLogger(__name__)

#: The authors' digit setting (examples/digit_da): ``DAHConfig(**DIGITS_SETTINGS)`` overrides. cnn_digit_da.m:
#: hashSize 10, K 20, gamma 1e2, l1 1, entpW 0.1, beta 1, supHashW 100; cnn_digit_dah_init.m: 40 epochs of
#: logspace(-4, -5, 40), weightDecay 5e-4, conv layers without learningRate/weightDecay fields (MatConvNet's
#: [1 1]: biases at the weights' lr and decayed), no fc6/fc7 (relu3 -> fc4 = the hash layer), lmmd3 on relu3
#: and lmmd4 on fc4 (mmd_layers fc7 = the head's input, fc8). The single place the tests read them from.
DIGITS_SETTINGS: Mapping[str, object] = MappingProxyType(  # examples/digit_da/cnn_digit_da.m, *_init.m
    {"hash_bits": 10, "similar_weight": 100.0, "k_per_class": 20, "eta": 0.1, "gamma": 100.0, "beta": 1.0,
     "epochs": 40, "lr_start": 1e-4, "lr_end": 1e-5, "weight_decay": 5e-4, "hidden_dims": (),
     "mmd_layers": ("fc7", "fc8"), "new_lr_mult": (1.0, 1.0), "bias_decay": 1.0}
)
#: test_dah.m: boostSize = 200 source items per class for the classifier and the retrieval database
DIGITS_BOOST_SIZE = 200
#: per-class counts (digits 0..9) of the authors' lists (examples/digit_da/{mnist,usps}-imdbStats_Val.mat)
AUTHORS_MNIST_COUNTS: tuple[int, ...] = (1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978)
AUTHORS_USPS_COUNTS: tuple[int, ...] = (1553, 1269, 929, 824, 852, 716, 834, 792, 708, 821)
#: the authors' MNIST: the first this-many MNIST training images
AUTHORS_MNIST_FIRST = 10_000
DIGITS_CLASSES: tuple[str, ...] = tuple(str(i) for i in range(10))
#: Side of the prepared images (MNIST's own size; USPS 16 x 16 is upsampled).
DIGITS_IMAGE_SIZE = 28
DIGITS_CHANNELS = 1

MNIST_URL = "https://ossci-datasets.s3.amazonaws.com/mnist/"
USPS_URL = "https://raw.githubusercontent.com/niuers/Learning-From-Data-A-Short-Course/master/data/usps.h5"

Split = Literal["train", "test", "all", "authors"]
_SPLITS: tuple[str, ...] = ("train", "test", "all", "authors")
Interpolation = Literal["bicubic", "bilinear"]
_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}

# IDX element types: code -> big-endian numpy dtype
_IDX_TYPES: dict[int, str] = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


# ---------------------------------------------------------------------------------------------
# sources
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DigitsFile:
    """A source file and the checksums that accept a local copy.

    Attributes:
        remote: URL, file name and the published checksum of the file as downloaded.
        decoded_md5: published md5 of the decoded content (gunzipped IDX bytes), or ``None``.
        decoded_sha256: sha256 of the decoded content when pinned, or ``None``.
        domain: ``"mnist"`` or ``"usps"`` (also the sub-folder looked into in a mirror).
    """

    remote: RemoteFile
    decoded_md5: str | None = None
    decoded_sha256: str | None = None
    domain: str = "mnist"


@dataclass(frozen=True)
class DigitsSources:
    """The files :func:`prepare_digits` reads: MNIST ``{"train-images", "train-labels", "test-images",
    "test-labels"}`` and USPS."""

    mnist: Mapping[str, DigitsFile] = field(hash=False)
    usps: DigitsFile


_MNIST_NOTE = (
    "MNIST (LeCun et al.; CC BY-SA 3.0), mirror used by torchvision. known_hash is the md5 of the .gz "
    "published by torchvision; a re-gzipped copy is accepted when its decoded IDX content matches the "
    "published md5 of the uncompressed file. Place the .gz (or a folder mnist/ holding it) by hand."
)


def _mnist(filename: str, gz_md5: str, size: int, decoded_md5: str, decoded_sha256: str | None) -> DigitsFile:
    return DigitsFile(
        remote=RemoteFile(url=MNIST_URL + filename, filename=filename, known_hash=f"md5:{gz_md5}", size=size,
                          note=_MNIST_NOTE),
        decoded_md5=decoded_md5, decoded_sha256=decoded_sha256, domain="mnist",
    )


DEFAULT_SOURCES = DigitsSources(
    mnist={
        "train-images": _mnist("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873", 9912422,
                               "6bbc9ace898e44ae57da46a324031adb", None),
        "train-labels": _mnist("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432", 28881,
                               "a25bea736e30d166cdddb491f175f624", None),
        "test-images": _mnist("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3", 1648877,
                              "2646ac647ad5339dbf082846283269ea",
                              "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"),
        "test-labels": _mnist("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c", 4542,
                              "27ae3e4e09519cfbb04c329615203637",
                              "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"),
    },
    usps=DigitsFile(
        remote=RemoteFile(
            url=USPS_URL, filename="usps.h5",
            known_hash="sha256:734f88c541104a956d88be2c95d03b4a463ffd74ccc2ba9c80841fb98e3fcb36", size=2913522,
            note="USPS (Hull 1994), the widely used Kaggle usps.h5 (train 7291, test 2007, 16x16 floats in "
                 "[0, 1]). Place usps.h5 (or a folder usps/ holding it) by hand.",
        ),
        domain="usps",
    ),
)


# ---------------------------------------------------------------------------------------------
# readers
# ---------------------------------------------------------------------------------------------
def _raw_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when it starts with the gzip magic ``1f 8b``."""
    data = Path(path).read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise ValueError(f"{path}: corrupt or truncated gzip file ({exc}); download it again") from exc
    return data


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (MNIST's format), raw or gzipped, into a native-endian numpy array.

    Layout: magic ``00 00 TT NN`` (``TT`` element type: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
    0x0D float32, 0x0E float64; ``NN`` number of dimensions), ``NN`` big-endian uint32 sizes, then
    ``prod(sizes)`` big-endian elements. MNIST images are ``(n, 28, 28)`` uint8 (magic 0x00000803),
    labels ``(n,)`` uint8 (0x00000801).

    Raises:
        ValueError: bad magic number, unknown type, or a size that disagrees with the header; the
            message names the file.
    """
    path = Path(path)
    data = _raw_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_TYPES or data[3] == 0:
        raise ValueError(
            f"{path} is not an IDX file: bad magic number {data[:4].hex() or '(empty)'} (expected 00 00 "
            f"<type 08/09/0b/0c/0d/0e> <ndim>, e.g. 00000803 for MNIST images); is it the right, complete file?"
        )
    dtype, ndim = np.dtype(_IDX_TYPES[data[2]]), data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: IDX header truncated ({len(data)} bytes, need {header}); download it again")
    shape = tuple(int(v) for v in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        raise ValueError(
            f"{path}: IDX header announces shape {shape} of {dtype.str} ({expected} bytes in all) but the "
            f"file holds {len(data)} bytes; it is truncated or corrupt, download it again"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return arr.astype(dtype.newbyteorder("="))


def read_usps_h5(path: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read the Kaggle ``usps.h5``: ``{"train": (x, y), "test": (x, y)}``.

    ``x``: ``(n, 16, 16)`` float32 in [0, 1] (from ``<split>/data``, ``(n, 256)`` row-major);
    ``y``: ``(n,)`` int64 digits 0..9 (from ``<split>/target``).

    Raises:
        ValueError: a missing group/dataset, wrong shapes, values outside [0, 1] or labels outside
            0..9; the message names the file and the key.
        OSError: not an HDF5 file.
    """
    path = Path(path)
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise OSError(f"{path} is not a readable HDF5 file ({exc}); download usps.h5 again") from exc
    with h5:
        for split in ("train", "test"):
            for key in (f"{split}/data", f"{split}/target"):
                if key not in h5:
                    raise ValueError(f"{path}: missing HDF5 dataset {key!r} (expected train/{{data,target}} "
                                     f"and test/{{data,target}}: the Kaggle usps.h5)")
            x = np.asarray(h5[f"{split}/data"][()], dtype=np.float32)
            y = np.asarray(h5[f"{split}/target"][()]).reshape(-1)
            if x.ndim == 2 and x.shape[1] == 256:
                x = x.reshape(-1, 16, 16)
            if x.ndim != 3 or x.shape[1:] != (16, 16) or x.shape[0] != y.shape[0]:
                raise ValueError(f"{path}: {split}/data has shape {x.shape} and {split}/target {y.shape}; "
                                 f"expected (n, 256) and (n,)")
            if x.size and (not np.all(np.isfinite(x)) or x.min() < -1e-6 or x.max() > 1 + 1e-6):
                raise ValueError(f"{path}: {split}/data values must lie in [0, 1], got [{x.min()}, {x.max()}]")
            if y.size and (not np.issubdtype(y.dtype, np.integer) or y.min() < 0 or y.max() > 9):
                raise ValueError(f"{path}: {split}/target must hold integer digits 0..9, got dtype {y.dtype} "
                                 f"range [{y.min()}, {y.max()}]")
            out[split] = (np.clip(x, 0.0, 1.0), y.astype(np.int64))
    return out


# ---------------------------------------------------------------------------------------------
# locating and verifying the source files
# ---------------------------------------------------------------------------------------------
def verify_digits_file(path: Path, spec: DigitsFile) -> str:
    """How ``path`` matches ``spec``: ``"archive <alg>"`` when the file's own checksum matches
    ``spec.remote.known_hash``, else ``"decoded md5"`` / ``"decoded md5+sha256"`` when the decoded
    content matches; ``"unverified"`` when nothing is published.

    Raises:
        DownloadError: the file matches none of the published checksums (names file and checksums).
    """
    remote = spec.remote
    if remote.known_hash is None and spec.decoded_md5 is None and spec.decoded_sha256 is None:
        return "unverified"
    got = None
    if remote.known_hash is not None:
        got = hash_file(path, remote.hash_alg)
        if got == remote.hash_hex:
            return f"archive {remote.hash_alg}"
    if spec.decoded_md5 is not None or spec.decoded_sha256 is not None:
        try:
            raw = _raw_bytes(path)
        except ValueError:
            raw = b""
        ok_md5 = spec.decoded_md5 is None or hashlib.md5(raw).hexdigest() == spec.decoded_md5
        ok_sha = spec.decoded_sha256 is None or hashlib.sha256(raw).hexdigest() == spec.decoded_sha256
        if raw and ok_md5 and ok_sha:
            return "decoded " + "+".join(n for n, v in (("md5", spec.decoded_md5), ("sha256", spec.decoded_sha256))
                                         if v is not None)
    wanted = [remote.checksum_text] if remote.known_hash else []
    if spec.decoded_md5:
        wanted.append(f"decoded md5 {spec.decoded_md5}")
    if spec.decoded_sha256:
        wanted.append(f"decoded sha256 {spec.decoded_sha256}")
    raise DownloadError(
        f"{path} does not match {remote.filename!r}: it has {remote.hash_alg} {got}, but one of "
        f"{'; '.join(wanted)} is required. It is incomplete or a different file; replace it with the file "
        f"from {remote.url}."
    )


def _local_candidates(base: Path, spec: DigitsFile) -> list[Path]:
    return [base / spec.remote.filename, base / spec.domain / spec.remote.filename]


def _locate(spec: DigitsFile, *, mirror: Path | None, manual_dir: Path | None, cache_dir: Path,
            offline: bool) -> tuple[Path, str, str] | None:
    """``(path, kind, verified)`` of a usable copy, or ``None`` (offline and nothing local).

    Order: ``mirror`` and ``manual_dir`` (``<base>/<file>`` or ``<base>/<domain>/<file>``; a copy there
    that fails verification is an error), then ``cache_dir/<file>`` (reused if it verifies), then a
    download into ``cache_dir`` (:func:`dahash.data.download.fetch`, archive checksum verified by pooch).
    """
    for kind, base in (("mirror", mirror), ("manual", manual_dir)):
        if base is None:
            continue
        for cand in _local_candidates(Path(base), spec):
            if cand.is_file():
                return cand, kind, verify_digits_file(cand, spec)
    cached = Path(cache_dir) / spec.remote.filename
    if cached.is_file():
        try:
            return cached, "cache", verify_digits_file(cached, spec)
        except DownloadError:
            if offline:
                raise
            log.warning("cached %s fails its checksums; downloading it again", cached)
    if offline:
        return None
    path = fetch(spec.remote, Path(cache_dir), offline=False)
    return path, "download", verify_digits_file(path, spec)


def _missing_message(missing: list[DigitsFile], manual_dir: Path | None, mirror: Path | None) -> str:
    lines = [f"  {s.remote.filename} ({s.domain}) from {s.remote.url} ({s.remote.checksum_text})" for s in missing]
    where = (f"{manual_dir}/<file> (or {manual_dir}/<domain>/<file>)" if manual_dir is not None
             else "a folder passed as manual_dir (as <folder>/<file> or <folder>/<domain>/<file>)")
    seen = f" They are not in the mirror {mirror} either." if mirror is not None else ""
    return (
        f"offline mode: {len(missing)} digits source file(s) are not available locally and offline mode does "
        f"not download:\n" + "\n".join(lines) + f"\nDownload them by hand and put them at {where}, then run "
        f"again.{seen} Nothing was written."
    )


# ---------------------------------------------------------------------------------------------
# the image tree
# ---------------------------------------------------------------------------------------------
def _check_split(name: str, value: str) -> None:
    if value not in _SPLITS:
        raise ValueError(f"{name} must be one of {_SPLITS}, got {value!r}")


def _mnist_arrays(paths: dict[str, Path], split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(n, 28, 28)`` uint8 images and ``(n,)`` labels of ``split`` (train first for ``"all"``; ``"authors"``: the
    first :data:`AUTHORS_MNIST_FIRST` training images, whose per-class counts must be :data:`AUTHORS_MNIST_COUNTS`
    when the file holds that many)."""
    xs, ys = [], []
    parts = {"all": ("train", "test"), "authors": ("train",)}.get(split, (split,))
    for part in parts:
        x, y = read_idx(paths[f"{part}-images"]), read_idx(paths[f"{part}-labels"])
        if x.ndim != 3 or y.ndim != 1 or x.shape[0] != y.shape[0]:
            raise ValueError(f"MNIST {part}: images {paths[f'{part}-images']} have shape {x.shape} and labels "
                             f"{paths[f'{part}-labels']} {y.shape}; expected (n, 28, 28) and (n,)")
        if y.size and (y.min() < 0 or y.max() > 9):
            raise ValueError(f"{paths[f'{part}-labels']}: labels must be digits 0..9, got [{y.min()}, {y.max()}]")
        xs.append(x.astype(np.uint8))
        ys.append(y.astype(np.int64))
    x, y = np.concatenate(xs), np.concatenate(ys)
    if split == "authors":
        full = y.shape[0] >= AUTHORS_MNIST_FIRST
        x, y = x[:AUTHORS_MNIST_FIRST], y[:AUTHORS_MNIST_FIRST]
        counts = tuple(int(c) for c in np.bincount(y, minlength=10))
        if full and counts != AUTHORS_MNIST_COUNTS:
            raise ValueError(f"{paths['train-labels']}: the first {AUTHORS_MNIST_FIRST} training labels have per-class "
                             f"counts {list(counts)}, the authors' list {list(AUTHORS_MNIST_COUNTS)}: not the "
                             "MNIST training file")
    return x, y


def _usps_arrays(path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """``(n, 16, 16)`` float32 in [0, 1] and ``(n,)`` labels (train first for ``"all"``)."""
    data = read_usps_h5(path)
    parts = ("train", "test") if split == "all" else (split,)
    return np.concatenate([data[p][0] for p in parts]), np.concatenate([data[p][1] for p in parts])


def _select(labels: np.ndarray, limit_per_class: int | None) -> np.ndarray:
    """Indices kept: all, or the first ``limit_per_class`` of every class (file order kept)."""
    if limit_per_class is None:
        return np.arange(labels.shape[0])
    keep = np.zeros(labels.shape[0], dtype=bool)
    for c in np.unique(labels):
        keep[np.flatnonzero(labels == c)[: int(limit_per_class)]] = True
    return np.flatnonzero(keep)


def _to_pil(x: np.ndarray, size: int, interpolation: str = "bicubic") -> Image.Image:
    """uint8 image as is, or float [0, 1] image; resized (``interpolation``, in float) to ``size`` when needed;
    returned as 8-bit grayscale (``round(255 x)``, clipped to [0, 255]: bicubic overshoots)."""
    if x.dtype == np.uint8 and x.shape == (size, size):
        return Image.fromarray(x, "L")
    f = x.astype(np.float32) / (255.0 if x.dtype == np.uint8 else 1.0)
    img = Image.fromarray(np.ascontiguousarray(f), "F")
    if f.shape != (size, size):
        img = img.resize((size, size), _RESAMPLE[interpolation])
    out = np.clip(np.rint(np.asarray(img, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)
    return Image.fromarray(out, "L")


def _write_domain(root: Path, images: np.ndarray, labels: np.ndarray, keep: np.ndarray, size: int,
                  interpolation: str = "bicubic") -> dict[str, int]:
    width = max(5, len(str(max(int(images.shape[0]) - 1, 0))))
    for c in DIGITS_CLASSES:
        (root / c).mkdir(parents=True, exist_ok=True)

    def one(i: int) -> None:
        _to_pil(images[i], size, interpolation).save(root / str(int(labels[i])) / f"{i:0{width}d}.png", optimize=False)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(one, keep.tolist()))
    hist = np.bincount(labels[keep], minlength=10)
    return {c: int(hist[int(c)]) for c in DIGITS_CLASSES}


def _check_digits_args(mnist_split: Split, usps_split: Split, interpolation: Interpolation, size: int,
                       limit_per_class: int | None) -> None:
    """:func:`prepare_digits`'s argument checks: ``ValueError`` naming the argument and what it must be."""
    _check_split("mnist_split", mnist_split)
    _check_split("usps_split", usps_split)
    if usps_split == "authors":
        raise ValueError("usps_split must be train, test or all ('authors' is an MNIST list; the authors' USPS is all)")
    if interpolation not in _RESAMPLE:
        raise ValueError(f"interpolation must be one of {sorted(_RESAMPLE)}, got {interpolation!r}")
    if int(size) < 8:
        raise ValueError(f"size must be >= 8 pixels, got {size}")
    if limit_per_class is not None and int(limit_per_class) < 1:
        raise ValueError(f"limit_per_class must be >= 1 or None, got {limit_per_class}")


def _locate_all(needed: dict[str, DigitsFile], *, mirror: Path | None, manual_dir: Path | None, cache_dir: Path,
                offline: bool) -> dict[str, tuple[Path, str, str]]:
    """``{key: (path, how obtained, how verified)}`` for every needed file (:func:`_locate`); one
    :class:`DownloadError` listing every file that could not be found or fetched."""
    got = {k: _locate(f, mirror=mirror, manual_dir=manual_dir, cache_dir=cache_dir, offline=offline)
           for k, f in needed.items()}
    missing = [needed[k] for k, where in got.items() if where is None]
    if missing:
        raise DownloadError(_missing_message(missing, manual_dir, mirror))
    return {k: where for k, where in got.items() if where is not None}


def prepare_digits(
    out_dir: Path,
    *,
    mirror: Path | None,
    cache_dir: Path,
    manual_dir: Path | None,
    offline: bool,
    size: int = DIGITS_IMAGE_SIZE,
    mnist_split: Split = "test",
    usps_split: Split = "all",
    limit_per_class: int | None = None,
    interpolation: Interpolation = "bicubic",
    sources: DigitsSources = DEFAULT_SOURCES,
) -> Path:
    """Build ``out_dir/{mnist,usps}/<digit>/<idx>.png`` and ``out_dir/SOURCE.json``; returns ``out_dir``.

    * Sources: each needed file is taken from ``mirror`` or ``manual_dir`` (as ``<base>/<file>`` or
      ``<base>/<domain>/<file>``, e.g. the shared data folder's ``mnist/`` and ``usps/``), else from
      ``cache_dir``, else downloaded into ``cache_dir`` (unless ``offline``), and verified
      (:func:`verify_digits_file`: archive checksum, or decoded content for re-gzipped MNIST).
    * Splits: ``mnist_split`` / ``usps_split`` in ``{"train", "test", "all"}`` (``"all"`` = train then
      test); ``mnist_split="authors"``: the authors' MNIST list, the first 10,000 TRAINING images (module
      docstring; needs the training IDX files). Defaults: MNIST test (10,000), USPS all (9,298).
    * ``idx``: position of the image in its domain's selected splits (train first), zero-padded to
      5 digits; ``limit_per_class`` keeps only the first ``L`` images of each digit (for quick runs).
    * Images: 8-bit grayscale PNG, ``size x size``; MNIST (28 x 28, uint8) is written unchanged at
      ``size = 28``; USPS (16 x 16 floats) is resized in floating point with ``interpolation``
      (``"bicubic"``: the authors' ``vl_imreadjpeg`` setting; ``"bilinear"``), then ``round(255 x)`` clipped.
    * Atomic: built in a temporary folder beside ``out_dir`` and renamed over it only when complete.
      ``SOURCE.json`` records every file used (path, how it was obtained and verified), splits, size,
      per-domain and per-class counts and the tree digest (:func:`dahash.data.download.tree_digest`).

    Raises:
        DownloadError: offline and files missing (lists every missing file, its URL and checksum and
            where to place it), a download failure, or a local copy failing its checksums.
        ValueError: bad arguments, or a source file that is not valid IDX/HDF5 (names the file).
    """
    _check_digits_args(mnist_split, usps_split, interpolation, size, limit_per_class)
    out_dir, cache_dir = Path(out_dir), Path(cache_dir)
    mnist_parts = {"all": ("train", "test"), "authors": ("train",)}.get(mnist_split, (mnist_split,))
    mnist_keys = [f"{p}-{k}" for p in mnist_parts for k in ("images", "labels")]
    needed: dict[str, DigitsFile] = {k: sources.mnist[k] for k in mnist_keys}
    needed["usps"] = sources.usps

    found = _locate_all(needed, mirror=mirror, manual_dir=manual_dir, cache_dir=cache_dir, offline=offline)
    mnist_x, mnist_y = _mnist_arrays({k: found[k][0] for k in mnist_keys}, mnist_split)
    usps_x, usps_y = _usps_arrays(found["usps"][0], usps_split)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    build = mkdtemp(out_dir.parent, f"{out_dir.name}.tmp-")  # renamed onto out_dir: the umask's mode, not 0700
    try:
        class_counts: dict[str, dict[str, int]] = {}
        for domain, x, y in (("mnist", mnist_x, mnist_y), ("usps", usps_x, usps_y)):
            class_counts[domain] = _write_domain(build / domain, x, y, _select(y, limit_per_class), int(size),
                                                 interpolation)
        counts = {d: sum(c.values()) for d, c in class_counts.items()}
        source = {
            "dataset": "digits",
            "domains": list(DIGITS_DOMAINS),
            "classes": list(DIGITS_CLASSES),
            "size": int(size),
            "mnist_split": mnist_split,
            "usps_split": usps_split,
            "limit_per_class": limit_per_class,
            "interpolation": interpolation,
            "files": {
                needed[k].remote.filename: {"path": str(p.resolve()), "kind": kind, "verified": how,
                                            "url": needed[k].remote.url}
                for k, (p, kind, how) in found.items()
            },
            "counts": counts,
            "class_counts": class_counts,
            "tree_sha256": tree_digest(build, DIGITS_DOMAINS),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        _write_json_atomic(build / "SOURCE.json", source)
        _replace_dir(build, out_dir)
    except BaseException:
        shutil.rmtree(build, ignore_errors=True)
        raise
    log.info("prepared digits in %s (%s)", out_dir, counts)
    return out_dir


def digits_items(root: Path, domain: str) -> tuple[list[Path], np.ndarray]:
    """``(paths, labels)`` of ``root/<domain>/<digit>/*.png`` in sorted path order (label = digit).

    Raises:
        ValueError: unknown domain, or the domain folder is missing (run :func:`prepare_digits`).
    """
    if domain not in DIGITS_DOMAINS:
        raise ValueError(f"domain must be one of {DIGITS_DOMAINS}, got {domain!r}")
    ddir = Path(root) / domain
    if not ddir.is_dir():
        raise ValueError(f"{ddir} is missing: build the digits tree with prepare_digits first")
    paths = sorted(p for c in DIGITS_CLASSES for p in (ddir / c).glob("*.png") if not p.name.startswith("."))
    labels = np.array([int(p.parent.name) for p in paths], dtype=np.int64)
    return paths, labels


def decode_images(paths: Sequence[str | Path]) -> list[Image.Image]:
    """Every image decoded once, in its own mode, in the given order: ``[PIL image]``.

    The digits fast path: the training loop, the normalisation statistics and the final encoding then
    read these in-memory images instead of opening and decoding a PNG per item per epoch (about a
    quarter of a digits epoch on 2 cores). ``dahash.train.finetune`` and ``dahash.nn.augment`` treat a decoded
    image exactly as the file it came from (same pixels, same mode conversion), so results are unchanged.
    19,298 digit images of 28 x 28 take about 20 MB.

    Raises:
        OSError: a file cannot be read or decoded (the message names it).
    """
    out = []
    for p in paths:
        try:
            with Image.open(p) as img:
                img.load()
                out.append(img.copy())
        except OSError as exc:
            raise OSError(f"cannot decode image {p}: {exc}; remove or replace the file "
                          "(or rerun the download stage to rebuild the digits tree)") from exc
    return out
