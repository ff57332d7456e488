"""The images a fine-tuning step reads, in the order :func:`dahash.train.finetune.train_finetune` asks for them.

Two paths, one interface (:func:`_inputs` returns a DataLoader and a function that turns one of its batches into
the network input on the training device):

* paths or PIL images: each item decoded (upright, 8-bit) and augmented by the recipe's transform in the loader
  workers, with the generator ``np.random.default_rng([seed, epoch, batch, slot])`` of its key;
* :class:`~dahash.data.image_cache.CachedImages`: the workers only gather each crop's bytes from the decode-once
  cache; resize, flip, brightness and mean subtraction run on the device as batch operations
  (:mod:`dahash.nn.device_augment`).

The batches of an epoch are set by the training loop (:class:`_EpochBatches`) before it iterates the loader,
so results do not depend on the number of workers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from dahash.data.image_cache import CachedImages
from dahash.data.images import load_image, to_8bit
from dahash.nn.augment import ImageInput, normalize_batch
from dahash.nn.device_augment import CachedCrops, cached_loader, crops_to_batch

ImageTransformFn = Callable[..., Tensor]

def _open_native(item: ImageInput) -> Image.Image:
    """A decoded PIL image in its own mode (for transforms that do their own conversion)."""
    if isinstance(item, Image.Image):
        return to_8bit(item)
    try:
        return load_image(item, "native")  # upright (EXIF), 8-bit L or RGB (dahash.data.images)
    except (OSError, ValueError) as exc:
        raise OSError(f"cannot decode image {item}: {exc}; remove or replace the file") from exc


def _apply(transform: ImageTransformFn, item: ImageInput, rng: np.random.Generator) -> Tensor:
    """``transform(item, rng)`` for transforms with ``takes_rng`` (dahash.nn.augment), else
    ``transform(PIL image)`` (e.g. :class:`dahash.nn.preprocess_image.ImageTransform`)."""
    if getattr(transform, "takes_rng", False):
        return transform(item, rng)
    return transform(_open_native(item))


class _KeyedImages(Dataset):
    """``dataset[(domain, index, seed_key)]`` -> transformed image; domain 0 = source, 1 = target."""

    def __init__(self, domains: Sequence[Sequence[ImageInput]], transform: ImageTransformFn) -> None:
        self.domains, self.transform = domains, transform

    def __len__(self) -> int:  # not used by the batch sampler; informative only
        return sum(len(d) for d in self.domains)

    def __getitem__(self, key: tuple[int, int, tuple[int, ...]]) -> Tensor | tuple[Tensor, Tensor]:
        domain, index, seed_key = key
        item, rng = self.domains[domain][index], np.random.default_rng(list(seed_key))
        raw = getattr(self.transform, "raw", None)
        out = raw(item, rng) if callable(raw) else _apply(self.transform, item, rng)
        image = out[0] if isinstance(out, tuple) else out
        if not isinstance(image, Tensor) or image.dim() != 3:
            raise ValueError(
                f"the image transform must return a (C, H, W) tensor, got "
                f"{getattr(image, 'shape', type(image).__name__)} for item {index} of the "
                f"{'source' if domain == 0 else 'target'} set"
            )
        return out


def _stack(items: list) -> Tensor | tuple[Tensor, Tensor]:
    """Collate: ``(N, C, S, S)``; for raw items (uint8 image, shift) the pair ``(uint8 batch, (N, C) shifts)``."""
    raw = isinstance(items[0], tuple)
    images = [t[0] for t in items] if raw else items
    shapes = {tuple(t.shape) for t in images}
    if len(shapes) != 1:
        raise ValueError(f"the image transform produced tensors of different shapes {sorted(shapes)}; "
                         f"it must resize every image to one size")
    return (torch.stack(images), torch.stack([t[1] for t in items])) if raw else torch.stack(images)


class _EpochBatches:
    """A batch sampler whose batches are replaced every epoch, so that ONE DataLoader (and, with workers,
    the same persistent worker processes) serves the whole run: the loop sets ``.batches`` and iterates
    the loader again."""

    def __init__(self) -> None:
        self.batches: list[list] = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _loader(dataset: Dataset, batches: _EpochBatches | list[list], num_workers: int,
            device: torch.device) -> DataLoader:
    """Workers decode and crop (uint8 when the transform has ``raw``), keep running across epochs
    (``persistent_workers``) and prefetch 4 batches each; pinned memory for a GPU."""
    workers = int(num_workers)
    extra = {"persistent_workers": True, "prefetch_factor": 4} if workers > 0 else {}
    return DataLoader(dataset, batch_sampler=batches, num_workers=workers, collate_fn=_stack,
                      pin_memory=device.type == "cuda", **extra)


def _to_device(batch: Tensor | tuple[Tensor, Tensor], transform: ImageTransformFn, device: torch.device,
               memory_format: torch.memory_format) -> Tensor:
    """A collated batch as float32 network input on ``device``: raw (uint8, shifts) batches are copied as
    uint8 and normalised there (:func:`dahash.nn.augment.normalize_batch`)."""
    if isinstance(batch, tuple):
        u8, shifts = batch
        x = normalize_batch(u8.to(device, non_blocking=True), shifts.to(device, non_blocking=True),
                            transform.mean, transform.std)
    else:
        x = batch.to(device, non_blocking=True)
    return x.contiguous(memory_format=memory_format)


def _inputs(domains: Sequence[Sequence[ImageInput] | CachedImages], transform: ImageTransformFn,
            batches: _EpochBatches | list[list], num_workers: int, device: torch.device,
            memory_format: torch.memory_format) -> tuple[DataLoader, Callable[[Any], Tensor]]:
    """The input side of a step: ``(loader over batches of keys (domain, index, seed key), batch -> float32
    (N, C, S, S) network input on device)``. Cached images (:class:`~dahash.data.image_cache.CachedImages`):
    workers gather crop bytes, the recipe's augmentation runs on the device (:mod:`dahash.nn.device_augment`);
    paths / PIL images: workers decode and transform each image (:class:`_KeyedImages`)."""
    cached = [isinstance(d, CachedImages) for d in domains]
    if all(cached):
        loader = cached_loader(CachedCrops(domains, transform), batches, num_workers, device)
        return loader, lambda b: crops_to_batch(b, transform, device, memory_format)
    if any(cached):
        raise ValueError("source and target must both be CachedImages (the image cache) or both image lists")
    loader = _loader(_KeyedImages(domains, transform), batches, num_workers, device)
    return loader, lambda b: _to_device(b, transform, device, memory_format)
