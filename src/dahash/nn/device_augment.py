"""Augmentation of whole batches on the training device, fed from the decode-once image cache.

What runs where (per fine-tuning step of ``N`` images, e.g. 650 for the paper's VGG-F recipe):

* loader workers (:meth:`CachedCrops.__getitems__`): for item ``(domain, row, seed key)`` the draws
  of :class:`~dahash.nn.augment.TrainTransform` with ``numpy.random.default_rng(seed key)`` on the CACHED
  image's ``W x H`` (:func:`draw_train`: the authors' box of whole pixels, flip, brightness shift), then the box's
  bytes copied out of the memory map (:class:`~dahash.data.image_cache.ImageCache`). No decoding, no
  arithmetic: a batch is one flat uint8 tensor plus ``(N, 2)`` crop sizes, ``(N,)`` flips, ``(N, C)`` shifts;
* the training device (:func:`crops_to_batch`): each crop ``(C, h, w)`` resized to ``size x size`` by
  ``torch.nn.functional.interpolate(..., antialias=True)`` with the recipe's filter (bicubic: Keys ``a = -0.5``
  with the kernel widened by the reduction factor, as PIL's and MatConvNet's resizers; bilinear likewise),
  whole grey levels in ``[0, 255]`` as PIL's output (CPU: torch's uint8 kernel, ~1,000 crops/s per core;
  CUDA: float32, clamped and rounded), mirrored where drawn, then ``y = (x + shift - mean) / std`` on the
  whole ``(N, C, size, size)`` batch.

The crops have different sizes, so the resize is one ``interpolate`` call per image (on a GPU: one small kernel
each, ~10 us per image); everything else is batched. Results depend only on the seed key and the cached pixels:
not on the batch's composition, the number of workers, or where a run was resumed (CPU: bit-identical).

Evaluation (:func:`draw_eval`): the centred square of side ``round(crop_fraction min(W, H))`` at offset
``((W - side) // 2, (H - side) // 2)`` (MatConvNet's ``cropCenter``), no flip, no shift.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from dahash.data.image_cache import CachedImages
from dahash.nn.augment import EvalTransform, TrainTransform, sample_crop_box

__all__ = ["CachedCrops", "collate_crops", "crops_to_batch", "draw_eval", "draw_train", "cached_loader",
           "CropBatch"]

Recipe = Union[TrainTransform, EvalTransform]
#: ``(flat uint8 pixels, (N, 2) int64 crop (h, w), (N,) bool flips, (N, C) float32 shifts)``
CropBatch = tuple[Tensor, Tensor, Tensor, Tensor]


def draw_train(width: int, height: int, t: TrainTransform,
               rng: np.random.Generator) -> tuple[tuple[int, int, int, int], bool, np.ndarray]:
    """The draws of ``t.raw`` for a ``width x height`` image, in its order: box (:func:`sample_crop_box`), flip
    (``rng.random() < 0.5``, drawn even when ``t.flip`` is False), brightness ``B w`` float32 ``(C,)``."""
    x0, y0, x1, y1 = sample_crop_box(width, height, rng, aspect=t.aspect, scale=t.scale)
    flip = bool(rng.random() < 0.5) and t.flip
    shift = (t._b @ rng.standard_normal(t.channels)).astype(np.float32)
    return (int(x0), int(y0), int(x1), int(y1)), flip, shift


def draw_eval(width: int, height: int, t: EvalTransform) -> tuple[int, int, int, int]:
    """The evaluation box: centred square of side ``round(crop_fraction min(W, H))`` (whole pixels)."""
    side = max(1, min(int(np.floor(t.crop_fraction * min(width, height) + 0.5)), width, height))
    x0, y0 = (width - side) // 2, (height - side) // 2
    return x0, y0, x0 + side, y0 + side


class CachedCrops(Dataset):
    """``dataset[(domain, position, seed key)]`` -> ``(crop uint8 (h, w, C), flip, shift (C,))``.

    ``domains``: :class:`~dahash.data.image_cache.CachedImages` (0 = source, 1 = target); ``transform``: a
    :class:`TrainTransform` (draws from ``default_rng(seed key)``) or an :class:`EvalTransform` (centred box).
    """

    def __init__(self, domains: Sequence[CachedImages], transform: Recipe) -> None:
        if not isinstance(transform, (TrainTransform, EvalTransform)):
            raise ValueError(f"cached images need a TrainTransform or EvalTransform (the recipe), got "
                             f"{type(transform).__name__}")
        for d in domains:
            if d.cache.channels != transform.channels:
                raise ValueError(f"{d.cache.folder}: cache of {d.cache.channels} channel(s), the recipe needs "
                                 f"{transform.channels}; re-run the image_cache stage")
        self.domains, self.transform = list(domains), transform

    def __len__(self) -> int:
        return sum(len(d) for d in self.domains)

    def _draw(self, key: tuple[int, int, tuple[int, ...]]) -> tuple[np.ndarray, tuple[int, int, int, int], bool,
                                                                       np.ndarray]:
        """``(the cached image (H, W, C) view, box, flip, shift)`` of one key."""
        domain, position, seed_key = key
        cache, row = self.domains[domain][position]
        pixels = cache[row]
        h, w = pixels.shape[:2]
        t = self.transform
        if isinstance(t, TrainTransform):
            box, flip, shift = draw_train(w, h, t, np.random.default_rng(list(seed_key)))
        else:
            box, flip, shift = draw_eval(w, h, t), False, np.zeros(t.channels, np.float32)
        return pixels, box, flip, shift

    def __getitem__(self, key: tuple[int, int, tuple[int, ...]]) -> tuple[np.ndarray, bool, np.ndarray]:
        pixels, (x0, y0, x1, y1), flip, shift = self._draw(key)
        return np.ascontiguousarray(pixels[y0:y1, x0:x1]), flip, shift

    def __getitems__(self, keys: list[tuple[int, int, tuple[int, ...]]]) -> CropBatch:
        """A whole batch packed as :func:`collate_crops` packs it, each crop copied ONCE, straight from the memory
        map into the batch's buffer (the DataLoader calls this instead of ``__getitem__`` per key)."""
        draws = [self._draw(k) for k in keys]
        sizes = np.array([[y1 - y0, x1 - x0] for _, (x0, y0, x1, y1), _, _ in draws], dtype=np.int64).reshape(-1, 2)
        c = self.transform.channels
        flat = np.empty(int((sizes[:, 0] * sizes[:, 1]).sum()) * c, dtype=np.uint8)
        pos = 0
        for (pixels, (x0, y0, x1, y1), _, _), (h, w) in zip(draws, sizes.tolist()):
            np.copyto(flat[pos:pos + h * w * c].reshape(h, w, c), pixels[y0:y1, x0:x1])
            pos += h * w * c
        flips = torch.tensor([d[2] for d in draws], dtype=torch.bool)
        shifts = torch.from_numpy(np.stack([d[3] for d in draws]).astype(np.float32, copy=False))
        return torch.from_numpy(flat), torch.from_numpy(sizes), flips, shifts


def collate_crops(items: list[tuple[np.ndarray, bool, np.ndarray]]) -> CropBatch:
    """Pack crops of different sizes into one flat uint8 tensor (``(h, w, C)`` row-major each, in order)."""
    flat = torch.from_numpy(np.concatenate([c.reshape(-1) for c, _, _ in items]))
    sizes = torch.tensor([c.shape[:2] for c, _, _ in items], dtype=torch.int64).reshape(-1, 2)
    flips = torch.tensor([f for _, f, _ in items], dtype=torch.bool)
    shifts = torch.from_numpy(np.stack([s for _, _, s in items]).astype(np.float32, copy=False))
    return flat, sizes, flips, shifts


def crops_to_batch(batch: CropBatch, t: Recipe, device: torch.device | str,
                   memory_format: torch.memory_format = torch.contiguous_format) -> Tensor:
    """A packed batch -> float32 ``(N, C, size, size)`` network input on ``device`` (module docstring).

    Per crop ``x`` (``(C, h, w)`` uint8): ``r = round(clamp(interpolate(x, (size, size), mode, antialias=True),
    0, 255))``; ``r <- r[..., ::-1]`` where flipped; ``y = (r + (shift - mean)) / std`` (float32).
    """
    flat, sizes, flips, shifts = batch
    device = torch.device(device)
    c, size = t.channels, t.size
    flat = flat.to(device, non_blocking=True)
    on_cpu = device.type == "cpu"
    # (N, size, size, C) storage viewed as (N, C, size, size): each resized crop (channels-last) copies straight in
    out = torch.empty((len(sizes), size, size, c), dtype=torch.uint8 if on_cpu else torch.float32,
                      device=device).permute(0, 3, 1, 2)
    pos = 0
    for i, ((h, w), flip) in enumerate(zip(sizes.tolist(), flips.tolist())):
        n = h * w * c
        x = flat[pos:pos + n].view(1, h, w, c).permute(0, 3, 1, 2)  # channels-last view, no copy
        if on_cpu:  # torch's uint8 kernel: fixed-point weights, rounded and clamped to 0..255 as PIL's
            r = F.interpolate(x, size=(size, size), mode=t.interpolation, antialias=True, align_corners=False)[0]
        else:  # CUDA resizes float32: clamped and rounded to the same whole grey levels
            r = F.interpolate(x.to(torch.float32), size=(size, size), mode=t.interpolation, antialias=True,
                              align_corners=False)[0].clamp_(0.0, 255.0).round_()
        out[i] = r.flip(-1) if flip else r
        pos += n
    m = torch.as_tensor(t.mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    s = torch.as_tensor(t.std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
    y = out.to(torch.float32)  # keeps the channels-last strides
    y.add_(shifts.to(device=device, dtype=torch.float32)[:, :, None, None] - m)
    if bool((s != 1.0).any()):
        y.div_(s)
    return y.contiguous(memory_format=memory_format)


def cached_loader(dataset: CachedCrops, batches, num_workers: int, device: torch.device) -> DataLoader:
    """DataLoader over ``batches`` (lists of keys) whose workers only gather crop bytes (:class:`CachedCrops`).

    Workers persist across epochs and prefetch 2 batches each (a VGG-F batch of 650 crops is ~0.2 GB of bytes);
    pinned memory on a GPU."""
    workers = int(num_workers)
    extra = {"persistent_workers": True, "prefetch_factor": 2} if workers > 0 else {}
    return DataLoader(dataset, batch_sampler=batches, num_workers=workers, collate_fn=_packed,
                      pin_memory=torch.device(device).type == "cuda", **extra)


def _packed(batch: CropBatch) -> CropBatch:
    """The DataLoader's collate step: :meth:`CachedCrops.__getitems__` already packed the batch."""
    return batch
