"""Decode-once image cache: every image of a domain decoded once, downsized, stored as memory-mappable uint8.

Fine-tuning draws about 2.7 million augmented crops per paper task (300 epochs x ceil(n_t / 325) steps x 650
images); decoding a full-resolution JPEG for each is what limited it (benchmarks/README.md). The cache moves
that decode out of the loop: :func:`build_image_cache` decodes every image once (with the recipe's EXIF
policy), resizes it so that its SHORTER side is ``short_side = S`` (anti-aliased Lanczos; an image whose
shorter side is already ``<= S`` is stored as decoded, never upsampled) and appends its ``(H, W, C)`` uint8
pixels to one flat file. Training then only gathers bytes from a memory map (:class:`ImageCache`).

Layout of a cache folder::

    pixels.u8    the images' uint8 pixels, row-major (H, W, C), one after the other (no header)
    index.json   {"version", "short_side", "channels", "exif", "filter", "names": [n],
                  "offsets": [n] (bytes), "shapes": [[H, W]] (cached), "original": [[H, W]] (decoded size)}

:class:`ImageCache` opens ``pixels.u8`` with ``numpy.memmap`` lazily in each process that reads it (DataLoader
workers included), so a reader's memory is the index (a few ints per image) plus the pages it touches: it does
not grow with the dataset. The index is written last; a folder without it is incomplete (the stage builds into
a temporary folder and renames it, :func:`stages.common.atomic_path`).

Choice of ``S`` (:func:`dahash.nn.recipes.cache_short_side`): a training crop of the authors' jitter is the largest box of
aspect ``A in [a_lo, a_hi]`` inside the image, scaled by ``s >= s_lo`` (:func:`dahash.nn.augment.sample_crop_box`);
its shorter side is at least ``s_lo min(1, a_lo, 1 / a_hi) m`` for an image of shorter side ``m``. Resizing the
image to shorter side ``S`` keeps every crop's shorter side ``>= size`` (no crop upsampled relative to full
resolution, where full resolution had the pixels) iff ``S >= size / (s_lo min(1, a_lo, 1 / a_hi))``; the eval
crop (a centred square of side ``eval_crop m``) needs ``S >= size / eval_crop``. VGG-F (``size = 224``,
``s = 1``, ``A in [2/3, 3/2]``, ``eval_crop = 1``): ``S = max(224 / (2/3), 224) = 336``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from dahash.data.images import load_image

__all__ = ["CACHE_VERSION", "CachedImages", "ImageCache", "build_image_cache", "cached_size"]

CACHE_VERSION = 1
PIXELS, INDEX = "pixels.u8", "index.json"
#: JPEGs are decoded at the DCT scale (1/2, 1/4, 1/8) that keeps their shorter side >= DRAFT_FACTOR x S, then
#: resized with the Lanczos filter: the draft's box-like downscale is followed by >= 2x anti-aliased reduction.
DRAFT_FACTOR = 2.0


def cached_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    """``(H', W')`` of an ``H x W`` image in a cache of shorter side ``S``: unchanged when ``min(H, W) <= S``,
    else scaled by ``S / min(H, W)`` with the longer side rounded (the shorter one is ``S`` exactly)."""
    m = min(height, width)
    if m <= short_side:
        return height, width
    r = short_side / m
    h = short_side if height == m else max(1, int(round(height * r)))
    w = short_side if width == m else max(1, int(round(width * r)))
    return h, w


def _decode(path: Path, short_side: int, channels: int, exif: bool) -> tuple[np.ndarray, tuple[int, int]]:
    """One image as cached: uint8 ``(H', W', C)`` and its decoded (upright or stored) size ``(H, W)``."""
    mode = "RGB" if channels == 3 else "L"
    with Image.open(path) as probe:  # the full size (EXIF-transposed if asked) before any draft decoding
        w0, h0 = probe.size
        if exif and probe.getexif().get(0x0112, 1) in (5, 6, 7, 8):
            w0, h0 = h0, w0
    img = load_image(path, mode, min_side=DRAFT_FACTOR * short_side, exif=exif)
    h, w = cached_size(h0, w0, short_side)
    if (img.height, img.width) != (h, w):
        img = img.resize((w, h), Image.Resampling.LANCZOS)
    x = np.asarray(img, dtype=np.uint8)
    return (x[:, :, None] if x.ndim == 2 else x), (h0, w0)


def build_image_cache(paths: Sequence[str | Path], names: Sequence[str], out: str | Path, *, short_side: int,
                      channels: int = 3, exif: bool = True, num_threads: int = 1,
                      progress: Iterable | None = None) -> Path:
    """Decode ``paths`` once into the cache folder ``out`` (created; module docstring for the layout).

    Args:
        paths: image files, in the order of ``names`` (e.g. a manifest's rows).
        names: one unique key per image (the manifest's relative path), stored in the index.
        short_side: ``S`` (:func:`dahash.nn.recipes.cache_short_side`). channels: 3 (RGB) or 1 (L).
        exif: apply EXIF orientation (:func:`dahash.data.images.load_image`).
        num_threads: images decoded at once (Pillow releases the GIL); the file is the same for any value.

    Raises:
        ValueError: bad arguments or duplicate names. OSError: an image cannot be decoded (named).
    """
    if len(paths) != len(names) or len(set(names)) != len(names):
        raise ValueError(f"image cache: {len(paths)} paths need as many unique names, got {len(set(names))}")
    if int(short_side) < 1 or channels not in (1, 3):
        raise ValueError(f"image cache: short_side must be >= 1 and channels 1 or 3, got {short_side}, {channels}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=False)
    offsets, shapes, original = [], [], []

    def one(path: str | Path) -> tuple[np.ndarray, tuple[int, int]]:
        try:
            return _decode(Path(path), int(short_side), channels, exif)
        except (OSError, ValueError) as exc:
            raise OSError(f"cannot decode image {path}: {exc}; remove or replace the file (then re-run "
                          f"the preprocess stage)") from exc

    with open(out / PIXELS, "wb") as fh, ThreadPoolExecutor(max(1, int(num_threads))) as pool:
        pos = 0
        for x, size in pool.map(one, paths):
            offsets.append(pos)
            shapes.append([int(x.shape[0]), int(x.shape[1])])
            original.append([int(size[0]), int(size[1])])
            fh.write(np.ascontiguousarray(x).tobytes())
            pos += x.size
            if progress is not None:
                progress.update(1)
        fh.flush()
        os.fsync(fh.fileno())
    index = {"version": CACHE_VERSION, "short_side": int(short_side), "channels": int(channels), "exif": bool(exif),
             "filter": "lanczos", "draft_factor": DRAFT_FACTOR, "names": [str(n) for n in names],
             "offsets": offsets, "shapes": shapes, "original": original, "bytes": pos}
    (out / INDEX).write_text(json.dumps(index))
    return out


class ImageCache:
    """A cache folder opened for reading: ``cache[i]`` -> uint8 ``(H, W, C)`` view into the memory map.

    Picklable (DataLoader workers): the memory map is opened on first access in each process.
    Attributes: ``names`` (list), ``shapes`` ``(n, 2)`` int64 ``(H, W)``, ``offsets`` ``(n,)`` int64,
    ``original`` ``(n, 2)`` decoded sizes, ``short_side``, ``channels``, ``exif``, ``folder``.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        try:
            index = json.loads((self.folder / INDEX).read_text())
            self.names: list[str] = list(index["names"])
            self.shapes = np.asarray(index["shapes"], dtype=np.int64).reshape(-1, 2)
            self.offsets = np.asarray(index["offsets"], dtype=np.int64)
            self.original = np.asarray(index["original"], dtype=np.int64).reshape(-1, 2)
            self.short_side, self.channels = int(index["short_side"]), int(index["channels"])
            self.exif, total = bool(index["exif"]), int(index["bytes"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{self.folder}: not a complete image cache ({exc}); re-run the image_cache "
                             f"stage (dvc repro image_cache)") from exc
        size = (self.folder / PIXELS).stat().st_size if (self.folder / PIXELS).exists() else -1
        if size != total or len(self.names) != len(self.offsets) != len(self.shapes):
            raise ValueError(f"{self.folder}: {PIXELS} has {size} bytes, the index says {total}; re-run the "
                             f"image_cache stage (dvc repro image_cache)")
        self._row = {n: i for i, n in enumerate(self.names)}
        self._map: np.ndarray | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_map": None}

    def __len__(self) -> int:
        return len(self.names)

    def _pixels(self) -> np.ndarray:
        if self._map is None:
            total = int(self.offsets[-1] + self.shapes[-1].prod() * self.channels) if len(self) else 0
            # a plain ndarray view of the map: slicing it skips numpy.memmap's per-slice bookkeeping
            self._map = np.memmap(self.folder / PIXELS, dtype=np.uint8, mode="r", shape=(max(total, 1),)).view(np.ndarray)
        return self._map

    def __getitem__(self, i: int) -> np.ndarray:
        h, w = (int(v) for v in self.shapes[i])
        o = int(self.offsets[i])
        return self._pixels()[o:o + h * w * self.channels].reshape(h, w, self.channels)

    def rows(self, names: Iterable[str]) -> np.ndarray:
        """Row numbers of ``names``. Raises ValueError naming the first missing name (stale cache)."""
        out = []
        for n in names:
            if n not in self._row:
                raise ValueError(f"{self.folder}: image {n!r} is not in the cache (built from another manifest?); "
                                 f"re-run the image_cache stage (dvc repro image_cache)")
            out.append(self._row[n])
        return np.asarray(out, dtype=np.int64)


@dataclass(frozen=True)
class CachedImages(Sequence):
    """Some rows of an :class:`ImageCache`, a sequence of ``(cache, row)`` items (e.g. a task's source images).

    :func:`dahash.train.finetune.train_dah_finetune` and :func:`~dahash.train.finetune.encode_images` take it in
    place of image paths: the loader then gathers cached bytes and the augmentation runs on the device
    (:mod:`dahash.nn.device_augment`).
    """

    cache: ImageCache
    rows: np.ndarray

    @classmethod
    def of(cls, cache: ImageCache, names: Iterable[str] | None = None) -> "CachedImages":
        """The cache's images named ``names`` (all of them, in cache order, when None)."""
        rows = np.arange(len(cache), dtype=np.int64) if names is None else cache.rows(names)
        return cls(cache, rows)

    def __len__(self) -> int:
        return int(len(self.rows))

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return CachedImages(self.cache, self.rows[i])
        return self.cache, int(self.rows[i])

    def __iter__(self) -> Iterator[tuple[ImageCache, int]]:
        return ((self.cache, int(r)) for r in self.rows)

    def subset(self, idx: Sequence[int] | np.ndarray) -> "CachedImages":
        """The items at positions ``idx`` (e.g. the pwcf protocol's training rows)."""
        return CachedImages(self.cache, self.rows[np.asarray(idx, dtype=np.int64)])

    def ids(self) -> list[str]:
        """``cache:<folder name>:S<short side>:<image name>`` per item (the checkpoint fingerprint's image ids)."""
        c = self.cache
        return [f"cache:{c.folder.name}:S{c.short_side}:{c.names[r]}" for r in self.rows]
