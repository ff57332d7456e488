"""Speed figures for the pipeline's hot paths (not a test: prints figures and ratios).

    python benchmarks/bench_core.py [--quick] [--device cpu|cuda]

1. feature extraction: EfficientNet-Lite0 images/s (real Office-Caltech images when ../shared/data is
   there, else generated 300x300 JPEGs);
2. DAH training: ms per SGD step and seconds per epoch at Office-Caltech-10 size (C = 10, K = 5,
   1280-d features, 1024-wide head) and at the paper's Office-Home size (C = 65, K = 5, VGG-F pool5
   9216-d features, 4096-wide fc6/fc7), with the projected 300-epoch time of one task;
3. evaluation: mAP + PR curve + eq. 6 accuracy at Office-Home size (4,357 target queries x 4,439 source
   items, 64 bits), and the speed-up of the vectorised Hamming ranking over a per-query Python loop.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dahash.nn.backbones import build_backbone
from dahash.nn.extract import extract_features
from dahash.eval.metrics import binarize, hamming_distance, mean_average_precision, precision_recall_curve, predict_eq6
from dahash.train.head import DAHConfig, train_dah

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "office-caltech-10" / "images" / "amazon"


def _images(n: int, tmp: Path) -> tuple[list[Path], str]:
    if SHARED.is_dir():
        return sorted(SHARED.rglob("*.jpg"))[:n], "real Office-Caltech amazon images"
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = tmp / f"{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (300, 300, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths, "generated 300x300 JPEGs"


def bench_extract(n: int, device: str) -> None:
    with tempfile.TemporaryDirectory() as td:
        paths, what = _images(n, Path(td))
        bb = build_backbone("efficientnet_lite0")
        extract_features(paths[:8], bb, batch_size=8, device=device, progress=False)  # warm-up
        t0 = time.perf_counter()
        extract_features(paths, bb, batch_size=32, device=device, progress=False)
        dt = time.perf_counter() - t0
    print(f"extract  EfficientNet-Lite0, {len(paths)} {what}, batch 32, {device}: {len(paths) / dt:.1f} images/s")
    print(f"         -> Office-Caltech-10 (2,533 images): {2533 / (len(paths) / dt) / 60:.1f} min")


def bench_train(name: str, c: int, f: int, hidden: int, ns: int, nt: int, epochs: int, device: str) -> None:
    g = torch.Generator().manual_seed(0)
    xs, xt = torch.randn(ns, f, generator=g), torch.randn(nt, f, generator=g)
    ys = torch.arange(ns) % c
    cfg = DAHConfig(hidden_dims=(hidden, hidden), epochs=epochs)
    steps = epochs * math.ceil(nt / (cfg.k_per_class * c))
    t0 = time.perf_counter()
    train_dah(xs, ys, xt, c, cfg, device=device, seed=0)
    dt = time.perf_counter() - t0
    per_epoch = dt / epochs
    print(f"train    {name}: batch {2 * cfg.k_per_class * c}, {f}-d -> {hidden} -> {hidden} -> 64 bits, {device}: "
          f"{1000 * dt / steps:.1f} ms/step, {per_epoch:.2f} s/epoch -> 300 epochs: {300 * per_epoch / 60:.1f} min/task")


def bench_eval(quick: bool) -> None:
    rng = np.random.default_rng(0)
    c, d, n_s, n_t = 65, 64, 4439, 4357
    ys, yt = rng.integers(0, c, n_s), rng.integers(0, c, n_t)
    protos = rng.normal(size=(c, d))
    us = np.tanh(protos[ys] + rng.normal(scale=1.5, size=(n_s, d))).astype(np.float32)
    ut = np.tanh(protos[yt] + rng.normal(scale=1.5, size=(n_t, d))).astype(np.float32)
    bs, bt = binarize(us), binarize(ut)
    t0 = time.perf_counter()
    m = mean_average_precision(bt, bs, yt, ys)
    t_map = time.perf_counter() - t0
    t0 = time.perf_counter()
    precision_recall_curve(bt, bs, yt, ys)
    t_pr = time.perf_counter() - t0
    t0 = time.perf_counter()
    predict_eq6(ut, us, ys, c)
    t_acc = time.perf_counter() - t0
    print(f"evaluate Office-Home size ({n_t} queries x {n_s} db, {d} bits): mAP {t_map:.2f} s (mAP={m.map:.3f}), "
          f"PR curve {t_pr:.2f} s, eq.6 accuracy {t_acc:.2f} s")
    k = 50 if quick else 200
    t0 = time.perf_counter()
    for i in range(k):
        np.array([np.count_nonzero(bt[i] != bs[j]) for j in range(n_s)])
    t_loop = (time.perf_counter() - t0) / k
    t0 = time.perf_counter()
    hamming_distance(bt, bs)
    t_vec = (time.perf_counter() - t0) / n_t
    print(f"         Hamming distances per query: vectorised {1e6 * t_vec:.1f} us vs Python loop "
          f"{1e6 * t_loop:.0f} us -> ratio {t_loop / t_vec:.0f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer images/epochs (about a minute on 2 cores)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, device {args.device}")
    bench_extract(64 if args.quick else 256, args.device)
    bench_train("Office-Caltech-10 A->W", 10, 1280, 1024, 958, 295, 3 if args.quick else 10, args.device)
    bench_train("Office-Home Ar->Cl (VGG-F head)", 65, 9216, 4096, 2427, 4365, 1 if args.quick else 2, args.device)
    bench_eval(args.quick)


if __name__ == "__main__":
    main()
