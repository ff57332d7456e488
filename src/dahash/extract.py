"""Backbone feature extraction, streamed in batches through a torch DataLoader.

``extract_features(paths, backbone)`` returns one float32 row per image, in the order of ``paths``:
``row_i = backbone.module.features(transform(load_rgb(paths[i]))[None])[0]``, computed in eval mode
(no dropout, BatchNorm running statistics) under ``torch.inference_mode``, with the batch in
channels-last memory format (same values up to float round-off, faster convolutions).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from dahash.backbones import Backbone
from dahash.images import load_rgb


class ImageFileDataset(Dataset):
    """``dataset[i] = transform(load_rgb(paths[i]))``: a float32 tensor (3, S, S)."""

    def __init__(self, paths: Sequence[str | Path],
                 transform: Callable[[Image.Image], torch.Tensor]) -> None:
        self.paths = [Path(p) for p in paths]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(load_rgb(self.paths[index]))


def _check_paths(paths: Sequence[Path]) -> None:
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        shown = ", ".join(missing[:5]) + (f" (+{len(missing) - 5} more)" if len(missing) > 5 else "")
        raise FileNotFoundError(f"{len(missing)} image file(s) not found: {shown}; re-run the "
                                f"preprocess stage or fix the manifest paths")


def extract_features(
    paths: Sequence[str | Path],
    backbone: Backbone,
    *,
    batch_size: int = 64,
    device: str = "cpu",
    num_workers: int = 0,
    progress: bool = True,
    desc: str = "",
) -> np.ndarray:
    """Backbone features of the images at ``paths``.

    Args:
        paths: image files (any mode PIL decodes: RGB, grayscale, CMYK, palette; all become RGB).
        backbone: from :func:`dahash.backbones.build_backbone`; ``backbone.module`` is moved to ``device``
            (in place) and run in eval mode; its previous train/eval mode is restored afterwards.
        batch_size: images per forward pass (does not change the result beyond float round-off).
        device: torch device string, ``"cpu"`` (default) or e.g. ``"cuda"`` / ``"cuda:1"``.
        num_workers: DataLoader worker processes decoding and resizing images.
        progress: show a tqdm bar (``desc`` is its label).

    Returns:
        float32 array (len(paths), backbone.feature_dim), row i for paths[i].

    Raises:
        FileNotFoundError: some paths do not exist (all missing ones are counted, the first few named).
        ValueError: bad batch_size, or the module's output width differs from ``feature_dim``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    dataset = ImageFileDataset(paths, backbone.transform)
    _check_paths(dataset.paths)
    out = np.empty((len(dataset), backbone.feature_dim), dtype=np.float32)
    if len(dataset) == 0:
        return out
    dev = torch.device(device)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=dev.type == "cuda")
    module = backbone.module.to(dev)
    was_training = module.training
    module.eval()
    start = 0
    try:
        with torch.inference_mode(), tqdm(total=len(dataset), desc=desc or None, unit="img",
                                          disable=not progress) as bar:
            for batch in loader:
                # channels_last: ~1.4x faster oneDNN convolutions on CPU (depthwise ones especially)
                batch = batch.to(dev, non_blocking=True).contiguous(memory_format=torch.channels_last)
                feats = module.features(batch)
                if feats.ndim != 2 or feats.shape[1] != backbone.feature_dim:
                    raise ValueError(f"backbone {backbone.name!r} returned features of shape "
                                     f"{tuple(feats.shape)}, expected (N, {backbone.feature_dim})")
                n = feats.shape[0]
                out[start:start + n] = feats.float().cpu().numpy()
                start += n
                bar.update(n)
    finally:
        module.train(was_training)
    return out
