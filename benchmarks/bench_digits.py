"""Digits epoch time (issue 9, target 5): ``python benchmarks/bench_digits.py DIGITS_DIR [--epochs E]``.

``DIGITS_DIR`` is a prepared digits tree (``data/raw/digits`` of the pipeline, or ``dahash.data.digits.prepare_digits``).
Times M->U fine-tuning of the small CNN with the preset's settings (K = 20, W = 100, eta = 0.1, gamma = 5000) and
the final encoding of every image, twice in the same run: from the PNG paths (the previous path: every item decoded
per epoch) and from images decoded once (``dahash.data.digits.decode_images``, what the train stage now does), and
checks that both train identically. Not a test: figures depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from dahash.nn.augment import EvalTransform, TrainTransform, channel_moments
from dahash.nn.backbones.smallcnn import SmallCNN
from dahash.data.digits import DIGITS_SETTINGS, decode_images, digits_items
from dahash.train.finetune import encode_images, train_dah_finetune
from dahash.nn.model import DAHHead
from dahash.train.head import DAHConfig


def run(source: list, ys: np.ndarray, target: list, epochs: int) -> tuple[dict, list]:
    """Seconds for moments, training, encoding; and the history."""
    t0 = time.perf_counter()
    mom = channel_moments(source + target, 28, channels=1)
    std = np.where(mom.std > 0, mom.std, 1.0)
    t1 = time.perf_counter()
    g = torch.Generator().manual_seed(0)
    trunk = SmallCNN(in_channels=1, feature_dim=500, input_size=28, generator=g)
    cfg = DAHConfig(**{**DIGITS_SETTINGS, "epochs": epochs})  # the digits preset's (the authors') settings
    head = DAHHead(500, cfg.hidden_dims, cfg.hash_bits, generator=torch.Generator().manual_seed(0))
    res = train_dah_finetune(source, ys, target, 10, cfg, trunk=trunk, head=head, trunk_pretrained=False,
                             train_transform=TrainTransform(28, mom.mean, std, channels=1, flip=False), seed=0)
    t2 = time.perf_counter()
    encode_images(res.trunk, res.head, target, EvalTransform(28, mom.mean, std, channels=1, crop_fraction=1.0))
    t3 = time.perf_counter()
    return {"moments": t1 - t0, "epoch": (t2 - t1) / epochs, "encode target": t3 - t2}, res.history


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("digits_dir", type=Path)
    ap.add_argument("--epochs", type=int, default=1)
    args = ap.parse_args()
    src, ys = digits_items(args.digits_dir, "mnist")
    tgt, _ = digits_items(args.digits_dir, "usps")
    print(f"digits M->U: {len(src)} + {len(tgt)} images, {args.epochs} epoch(s), {torch.get_num_threads()} threads")
    t0 = time.perf_counter()
    dsrc, dtgt = decode_images(src), decode_images(tgt)
    t_decode = time.perf_counter() - t0
    fast, h_fast = run(dsrc, ys, dtgt, args.epochs)
    slow, h_slow = run(list(src), ys, list(tgt), args.epochs)
    print(f"  decode every image once: {t_decode:.1f} s")
    for k in fast:
        print(f"  {k:14s} files {slow[k]:6.1f} s   decoded once {fast[k]:6.1f} s   ratio {slow[k] / fast[k]:.2f}x")
    print(f"  -> 40 epochs: files {40 * slow['epoch'] / 60:.1f} min, decoded once {40 * fast['epoch'] / 60:.1f} min "
          f"(target <= 5 min); same history: {h_fast == h_slow}")


if __name__ == "__main__":
    main()
