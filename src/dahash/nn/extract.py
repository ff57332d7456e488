"""Backbone feature extraction, streamed in batches through a torch DataLoader.

``extract_features(paths, backbone)`` returns one float32 row per image, in the order of ``paths``:
``row_i = backbone.module.features(transform(load_rgb(paths[i]))[None])[0]``, computed in eval mode
(no dropout, BatchNorm running statistics) under ``torch.inference_mode``, with the batch AND the module's
weights in channels-last memory format (same values up to float round-off; oneDNN's convolutions are
about 1.3-1.8x faster that way on CPU, depthwise ones especially).

Input pipeline (what runs where):

* the DataLoader (``num_workers`` processes, or this one) decodes each image and applies the transform's
  GEOMETRY only (resize / crop), producing a uint8 ``(C, S, S)`` tensor: 4x fewer bytes between processes;
* the normalisation ``y = (x + shift - mean) / std`` runs on the batch, on the extraction device
  (:func:`dahash.nn.augment.normalize_batch`, as the fine-tuning loader does). It is the same float32
  arithmetic in the same order as the transform's own, so the inputs are bit-identical to
  ``transform(load_rgb(path))``. This holds for the two transform types of the project
  (:class:`dahash.nn.preprocess_image.ImageTransform`, :class:`dahash.nn.augment.EvalTransform`); any other
  callable is applied as is in the loader (float32 batches, no draft decoding).

JPEG draft decoding (``draft=r``): a JPEG whose shorter side exceeds ``r`` times the shorter side the recipe
resizes FROM (``s_need = transform.resize`` for an ImageTransform: its shorter side is resized to that;
``s_need = size / crop_fraction`` for an EvalTransform: its centred square is resized to ``size``) is
decoded by libjpeg at the largest 1/2, 1/4 or 1/8 DCT scale that keeps its shorter side ``>= r s_need``
(:func:`dahash.data.images.load_image`'s ``min_side``), and then goes through the same resize. With ``r >= 1`` no
image is ever upsampled; the features differ slightly from a full decode (benchmarks/README.md states the
measured difference on Office-Caltech-10); ``draft=None`` (the default) decodes fully and is exact.

Output: an in-memory array, or (``out=PATH``) a ``.npy`` file written batch by batch (header first, then the
rows in order, through a temporary file renamed at the end) and returned memory-mapped read-only, so the
process never holds more than one batch of features: its peak memory does not grow with the dataset.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from dahash.atomic import sweep_stale_temps, temp_prefix
from dahash.nn.augment import EvalTransform, normalize_batch
from dahash.nn.backbones import Backbone
from dahash.data.images import load_image, load_rgb
from dahash.nn.preprocess_image import ImageTransform, center_crop, resize_shorter_side
from dahash.progress import progress as progress_bar

__all__ = ["ImageFileDataset", "auto_workers", "draft_side", "extract_features"]


def draft_side(transform: Callable, draft: float | None) -> float | None:
    """``min_side`` for :func:`dahash.data.images.load_image`: ``draft x`` the shorter side the transform resizes
    from (module docstring), or ``None`` (full decode) when ``draft`` is ``None`` / 0 or the transform is
    of an unknown type.

    Raises:
        ValueError: ``0 < draft < 1`` (the image would be upsampled more than without draft decoding).
    """
    if not draft:
        if isinstance(transform, EvalTransform) and transform.draft:  # the transform's own setting: r = 1
            return transform.size / transform.crop_fraction
        return None
    if draft < 1:
        raise ValueError(f"draft must be >= 1 (a multiple of the side the recipe needs) or 0/None, got {draft}")
    if isinstance(transform, ImageTransform):
        return float(draft) * transform.resize
    if isinstance(transform, EvalTransform):
        return float(draft) * transform.size / transform.crop_fraction
    return None


class ImageFileDataset(Dataset):
    """``dataset[i]``: image ``paths[i]`` decoded and brought to the transform's geometry.

    For an :class:`ImageTransform` or :class:`EvalTransform`: ``(uint8 (C, S, S), float32 (C,) shift)``,
    normalised later by :meth:`normalize`; for any other transform: ``(float32 (C, S, S), empty shift)``,
    already the transform's output.
    """

    def __init__(self, paths: Sequence[str | Path], transform: Callable[[Image.Image], torch.Tensor],
                 min_side: float | None = None) -> None:
        self.paths = [Path(p) for p in paths]
        self.transform = transform
        self.min_side = min_side

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        t, path = self.transform, self.paths[index]
        if isinstance(t, ImageTransform):
            img = load_image(path, "RGB", min_side=self.min_side)
            img = center_crop(resize_shorter_side(img, t.resize, keep_aspect=t.keep_aspect), t.image_size)
            x = torch.from_numpy(np.ascontiguousarray(np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)))
            return x, torch.zeros(3)
        if isinstance(t, EvalTransform):
            mode = "RGB" if t.channels == 3 else "L"
            return t.raw(load_image(path, mode, min_side=self.min_side, exif=t.exif))  # a PIL image: no second draft
        return t(load_rgb(path)), torch.zeros(0)

    def normalize(self, images: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
        """A collated batch of ``__getitem__`` -> the transform's float32 ``(N, C, S, S)`` output, computed
        on ``images.device``; bit-identical to applying the transform image by image."""
        t = self.transform
        if isinstance(t, EvalTransform):
            return normalize_batch(images, shifts, t.mean, t.std)
        if isinstance(t, ImageTransform):
            # ImageTransform: (x - mean) / std with mean (3,) or a per-pixel (S, S, 3) image, in float32
            m = torch.as_tensor(np.asarray(t.mean, np.float32), device=images.device)
            m = m.view(1, 3, 1, 1) if m.ndim == 1 else m.permute(2, 0, 1)[None]
            s = torch.as_tensor(np.asarray(t.std, np.float32), device=images.device).view(1, 3, 1, 1)
            return (images.to(torch.float32) - m) / s
        return images


def _check_paths(paths: Sequence[Path]) -> None:
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        shown = ", ".join(missing[:5]) + (f" (+{len(missing) - 5} more)" if len(missing) > 5 else "")
        raise FileNotFoundError(f"{len(missing)} image file(s) not found: {shown}; re-run the "
                                f"preprocess stage or fix the manifest paths")


def auto_workers(setting: int | str, device: str) -> int:
    """``extract.num_workers``: a number, or ``"auto"``: ``cores - 2`` on a GPU (decoding must keep up with
    it), 0 on the CPU. On the CPU the forward pass uses every core and decoding is a small share of the
    time (EfficientNet-Lite0 at ~7-15 images/s on 2 cores vs ~50-120 images/s for decode + resize on one
    core), so a worker process only competes with it: measured 0.8x with 1 worker on the 2-core machine
    (benchmarks/README.md)."""
    if setting != "auto":
        n = int(setting)
        if n < 0:
            raise ValueError(f"num_workers must be >= 0 or 'auto', got {setting!r}")
        return n
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, cores - 2) if torch.device(device).type == "cuda" else 0


class _NpyWriter:
    """Rows appended, in order, to a ``.npy`` file of known shape (a temporary renamed on :meth:`close`)."""

    def __init__(self, path: Path, shape: tuple[int, int]) -> None:
        self.path, self.shape, self.rows = path, shape, 0
        sweep_stale_temps(path)
        fd, self.tmp = tempfile.mkstemp(dir=path.parent, prefix=temp_prefix(path), suffix=".tmp")
        self.fh = os.fdopen(fd, "wb")
        np.lib.format.write_array_header_1_0(
            self.fh, {"descr": np.lib.format.dtype_to_descr(np.dtype("<f4")), "fortran_order": False,
                      "shape": shape})

    def write(self, rows: np.ndarray) -> None:
        self.fh.write(np.ascontiguousarray(rows, dtype="<f4").tobytes())
        self.rows += rows.shape[0]

    def close(self) -> None:
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()
        if self.rows != self.shape[0]:
            raise RuntimeError(f"wrote {self.rows} rows to {self.path}, expected {self.shape[0]}")
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        self.fh.close()
        Path(self.tmp).unlink(missing_ok=True)


def _conv_channels_last(module: torch.nn.Module) -> bool:
    """Whether the module's first 4-d parameter is stored channels-last."""
    for p in module.parameters():
        if p.ndim == 4:
            return p.is_contiguous(memory_format=torch.channels_last)
    return False


def extract_features(
    paths: Sequence[str | Path],
    backbone: Backbone,
    *,
    batch_size: int = 64,
    device: str = "cpu",
    num_workers: int = 0,
    draft: float | None = None,
    out: str | Path | None = None,
    progress: bool = True,
    desc: str = "",
) -> np.ndarray:
    """Backbone features of the images at ``paths``.

    Args:
        paths: image files (any mode PIL decodes: RGB, grayscale, CMYK, palette; all become RGB).
        backbone: from :func:`dahash.nn.backbones.build_backbone`; ``backbone.module`` is moved to ``device``
            (in place) and run in eval mode, channels-last; its previous train/eval mode and memory format
            are restored afterwards.
        batch_size: images per forward pass (does not change the result beyond float round-off).
        device: torch device string, ``"cpu"`` (default) or e.g. ``"cuda"`` / ``"cuda:1"``.
        num_workers: DataLoader worker processes decoding and resizing images (:func:`auto_workers`
            turns the ``"auto"`` setting into a number). The rows do not depend on it.
        draft: JPEG draft decoding at ``>= draft x`` the side the recipe resizes from (module docstring);
            ``None`` or 0: full decode (exact).
        out: a ``.npy`` path: the features are streamed there (atomically replaced at the end) and returned
            as a read-only memory map; ``None``: returned in memory.
        progress: show a bar (``desc`` is its label; :mod:`dahash.progress`: one line per 30 s in a log,
            none with ``DAHASH_PROGRESS=0``).

    Returns:
        float32 array (len(paths), backbone.feature_dim), row i for paths[i].

    Raises:
        FileNotFoundError: some paths do not exist (all missing ones are counted, the first few named).
        ValueError: bad batch_size / draft, or the module's output width differs from ``feature_dim``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    dataset = ImageFileDataset(paths, backbone.transform, draft_side(backbone.transform, draft))
    _check_paths(dataset.paths)
    shape = (len(dataset), backbone.feature_dim)
    writer = _NpyWriter(Path(out), shape) if out is not None else None
    buf = np.empty(shape, dtype=np.float32) if writer is None else None
    dev = torch.device(device)
    module = backbone.module
    was_training, was_cl = module.training, _conv_channels_last(module)
    start = 0
    try:
        if len(dataset):
            loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                                pin_memory=dev.type == "cuda")
            module.to(dev, memory_format=torch.channels_last).eval()
            with torch.inference_mode(), progress_bar(total=len(dataset), desc=desc or None, unit="img",
                                                      enabled=progress) as bar:
                for images, shifts in loader:
                    images = images.to(dev, non_blocking=True)
                    batch = dataset.normalize(images, shifts).contiguous(memory_format=torch.channels_last)
                    feats = module.features(batch)
                    if feats.ndim != 2 or feats.shape[1] != backbone.feature_dim:
                        raise ValueError(f"backbone {backbone.name!r} returned features of shape "
                                         f"{tuple(feats.shape)}, expected (N, {backbone.feature_dim})")
                    n = feats.shape[0]
                    rows = feats.float().cpu().numpy()
                    if writer is None:
                        buf[start:start + n] = rows
                    else:
                        writer.write(rows)
                    start += n
                    bar.update(n)
        if writer is not None:
            writer.close()
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        module.train(was_training)
        if not was_cl:
            module.to(memory_format=torch.contiguous_format)
    if writer is None:
        return buf
    return np.load(writer.path, mmap_mode="r")
