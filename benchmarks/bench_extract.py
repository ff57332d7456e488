"""Feature extraction speed (before / after in the same run), JPEG draft error, and peak memory vs dataset size.

``python benchmarks/bench_extract.py [--n 96] [--draft 2] [--data ../shared/data] [--skip speed draft memory]``

1. speed: EfficientNet-Lite0 (real ImageNet weights) on ``--n`` real Office-Caltech-10 images (every k-th of
   the 2,533, so the domains' mix of sizes is kept; synthetic JPEGs of the same sizes when the data is absent):
   the previous loop (float32 transform in the loader, no workers, module in its own memory format: the code
   as it was before issue 9 target 7, copied below) against ``dahash.nn.extract.extract_features`` with uint8
   batches, channels-last module, ``num_workers`` 0 and ``auto``, with and without draft decoding. Also the
   decode + resize rate alone (no network), full vs draft, on the large JPEGs (DSLR, 1000 x 1000).
2. draft error: on every real image the draft decoder actually shrinks (shorter side > r x the side needed),
   max / mean |difference| of the 224 x 224 uint8 network inputs and of the 1280-d EfficientNet-Lite0 features,
   full decode vs draft, for EfficientNet-Lite0's recipe (shorter side 256, centre 224, bilinear) and for
   VGG-F's geometry (full central square, bicubic to 224; no VGG-F weights here, so its feature difference is
   taken through EfficientNet-Lite0's network, normalised (x - 127) / 128: a proxy).
3. memory: peak RSS (``VmHWM``) of a fresh process extracting N and 4N tiny synthetic JPEGs with a stand-in
   backbone of VGG-F's pool5 width (9,216-d, so the features dominate), in memory vs streamed to a ``.npy``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from dahash.nn.augment import EvalTransform  # noqa: E402
from dahash.nn.backbones import build_backbone  # noqa: E402
from dahash.nn.extract import ImageFileDataset, auto_workers, draft_side, extract_features  # noqa: E402
from dahash.data.images import load_rgb  # noqa: E402


def previous_extract(paths, backbone, batch_size=64):
    """extract_features as it was before issue 9 target 7 (float32 transform in the loader, 0 workers)."""
    from torch.utils.data import DataLoader, Dataset

    class DS(Dataset):
        def __len__(self):
            return len(paths)

        def __getitem__(self, i):
            return backbone.transform(load_rgb(paths[i]))

    out = np.empty((len(paths), backbone.feature_dim), np.float32)
    module = backbone.module.eval()
    start = 0
    with torch.inference_mode():
        for batch in DataLoader(DS(), batch_size=batch_size, shuffle=False, num_workers=0):
            feats = module.features(batch.contiguous(memory_format=torch.channels_last))
            out[start:start + len(feats)] = feats.numpy()
            start += len(feats)
    return out


def real_images(data: Path) -> list[Path]:
    root = data / "office-caltech-10" / "images"
    return sorted(root.glob("*/*/*.jpg")) if root.is_dir() else []


def synthetic_images(folder: Path, sizes: list[tuple[int, int]]) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i, (w, h) in enumerate(sizes):
        base = rng.integers(0, 256, (h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
        img = Image.fromarray(base).resize((w, h), Image.Resampling.BICUBIC)
        p = folder / f"img{i:05d}.jpg"
        img.save(p, quality=90)
        paths.append(p)
    return paths


def timed(fn) -> tuple[float, object]:
    t = time.perf_counter()
    r = fn()
    return time.perf_counter() - t, r


def bench_speed(paths: list[Path], draft: float, batch: int, rounds: int) -> None:
    bb = build_backbone("efficientnet_lite0")
    warm = paths[:4]
    previous_extract(warm, bb, batch)
    extract_features(warm, bb, batch_size=batch, progress=False)
    auto = auto_workers("auto", "cpu")
    n = len(paths)
    variants = [("before: previous loop (float32 in loader, 0 workers)", None),
                ("after: uint8 + device normalisation, channels-last module, 0 workers", {"num_workers": 0}),
                ("after: ... 1 worker", {"num_workers": 1}),
                (f"after: ... 0 workers, draft {draft:g}", {"num_workers": 0, "draft": draft})]
    best = {label: float("inf") for label, _ in variants}
    feats = {}
    for _ in range(rounds):  # interleaved rounds, best of each: the machine's load moves between variants
        for label, kw in variants:
            if kw is None:
                t, f = timed(lambda: previous_extract(paths, bb, batch))
            else:
                t, f = timed(lambda: extract_features(paths, bb, batch_size=batch, progress=False, **kw))
            best[label], feats[label] = min(best[label], t), f
    ref, t0 = feats[variants[0][0]], best[variants[0][0]]
    print(f"\n== extraction speed, EfficientNet-Lite0, {n} images, batch {batch}, torch threads "
          f"{torch.get_num_threads()}, best of {rounds} interleaved rounds (auto workers on cpu = {auto}) ==")
    print(f"{'variant':<72} {'images/s':>9} {'x before':>9} {'max|df|':>9}")
    for label, _ in variants:
        print(f"{label:<72} {n / best[label]:9.1f} {t0 / best[label]:9.2f} "
              f"{float(np.abs(feats[label] - ref).max()):9.2e}")

    tr = bb.transform
    side = draft_side(tr, draft)
    big = [p for p in paths if min(Image.open(p).size) >= 2 * side]  # those the draft decodes at 1/2 or less
    print(f"{len(big)} of the {n} images are large enough (shorter side >= {2 * side:g}) to be drafted at r = {draft:g}")
    if big:
        for r in (None, draft):
            ds = ImageFileDataset(big, tr, draft_side(tr, r))
            t, _ = timed(lambda: [ds[i] for i in range(len(ds))])
            print(f"decode + resize only, those {len(big)} images, {'full' if r is None else f'draft {r:g}'}: "
                  f"{len(big) / t:.1f} images/s")


def bench_draft(images: list[Path], cap: int) -> None:
    bb = build_backbone("efficientnet_lite0")
    recipes = {"efficientnet_lite0 (shorter side 256, centre 224, bilinear)": bb.transform,
               "vggf geometry (full square, bicubic 224; features via EfficientNet-Lite0)":
                   EvalTransform(224, 127.0, 128.0, crop_fraction=1.0, interpolation="bicubic")}
    sizes = {p: min(Image.open(p).size) for p in images}
    print("\n== JPEG draft decoding vs full decode (real images the draft shrinks) ==")
    print(f"{'recipe':<76} {'r':>3} {'imgs':>5} {'pix max':>7} {'pix mean':>8} {'feat max':>9} "
          f"{'feat mean':>9} {'rel L2 max':>10} {'cos min':>9}")
    for name, tr in recipes.items():
        bb.transform = tr
        for r in (1.0, 1.5, 2.0):
            side = draft_side(tr, r)
            # the draft scale is 1/2 or finer only when the shorter side is >= 2 x side
            hit = [p for p in images if sizes[p] >= 2 * side]
            hit = hit[:: max(1, len(hit) // cap)][:cap]
            if not hit:
                print(f"{name:<76} {r:3g} {0:5d}  (no image large enough to be drafted)")
                continue
            full_ds, dr_ds = ImageFileDataset(hit, tr), ImageFileDataset(hit, tr, side)
            pix = np.array([(full_ds[i][0].int() - dr_ds[i][0].int()).abs().numpy() for i in range(len(hit))])
            f_full = extract_features(hit, bb, batch_size=32, progress=False)
            f_dr = extract_features(hit, bb, batch_size=32, draft=r, progress=False)
            d = np.abs(f_full - f_dr)
            rel = np.linalg.norm(f_full - f_dr, axis=1) / np.linalg.norm(f_full, axis=1)
            cos = (f_full * f_dr).sum(1) / np.linalg.norm(f_full, axis=1) / np.linalg.norm(f_dr, axis=1)
            print(f"{name:<76} {r:3g} {len(hit):5d} {pix.max():7d} {pix.mean():8.3f} {d.max():9.4f} "
                  f"{d.mean():9.5f} {rel.max():10.4f} {cos.min():9.5f}   (feature scale: mean |f| "
                  f"{np.abs(f_full).mean():.3f}, max {np.abs(f_full).max():.2f})")


_MEM_CHILD = r"""
import json, sys
from pathlib import Path
import numpy as np, torch
from dahash.nn.backbones import Backbone
from dahash.nn.extract import extract_features
from dahash.nn.preprocess_image import make_transform

class Stub(torch.nn.Module):
    '''features(x) = mean over pixels (N, 3) @ W (3, 9216): VGG-F pool5's width, negligible compute.'''
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(3, 9216))
    def features(self, x):
        return x.mean((2, 3)) @ self.w

paths = sorted(Path(sys.argv[1]).glob("*.jpg"))[: int(sys.argv[2])]
bb = Backbone("stub", Stub(), 9216, make_transform(32, 127.0, 128.0, resize=32), None)
out = sys.argv[4] if sys.argv[3] == "file" else None
f = extract_features(paths, bb, batch_size=64, progress=False, out=out)
if out is None:
    np.save(sys.argv[4], f)  # what the stage did with the in-memory array
status = dict(l.split(":", 1) for l in Path("/proc/self/status").read_text().splitlines() if ":" in l)
print(json.dumps({"rows": int(f.shape[0]), "hwm_kb": int(status["VmHWM"].split()[0])}))
"""


def bench_memory(n: int) -> None:
    print(f"\n== peak memory (VmHWM of a fresh process), stand-in 9216-d backbone, 32 x 32 JPEGs ==")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synthetic_images(tmp, [(40, 32)] * (4 * n))
        env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}", "OMP_NUM_THREADS": "1"}
        res = {}
        for mode in ("memory", "file"):
            for k in (n, 4 * n):
                out = subprocess.run([sys.executable, "-c", _MEM_CHILD, str(tmp), str(k), mode,
                                      str(tmp / f"f_{mode}_{k}.npy")],
                                     capture_output=True, text=True, env=env, check=True)
                res[mode, k] = json.loads(out.stdout.strip().splitlines()[-1])["hwm_kb"] / 1024
        feat_mb = 9216 * 4 / 2**20
        print(f"{'output':<44} {f'{n} images':>12} {f'{4 * n} images':>12} {'growth':>9} "
              f"{'features of 3N':>15}")
        for mode, label in (("memory", "before: in-memory array, then np.save"),
                            ("file", "after: streamed into the .npy (out=PATH)")):
            a, b = res[mode, n], res[mode, 4 * n]
            print(f"{label:<44} {a:9.0f} MiB {b:9.0f} MiB {b - a:5.0f} MiB {3 * n * feat_mb:11.0f} MiB")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=96, help="images for the speed comparison")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--draft", type=float, default=1.5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--draft-cap", type=int, default=48, help="images per recipe in the draft comparison")
    ap.add_argument("--mem-n", type=int, default=1000, help="N of the memory comparison (N and 4N images)")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--skip", nargs="*", default=[], choices=["speed", "draft", "memory"])
    args = ap.parse_args(argv)
    images = real_images(args.data)
    with tempfile.TemporaryDirectory() as tmp:
        if images:
            print(f"{len(images)} real Office-Caltech-10 images under {args.data}")
            sample = images[:: max(1, len(images) // args.n)][: args.n]
        else:
            print("real data absent: synthetic JPEGs of Office-Caltech-like sizes")
            sizes = [(300, 300), (1000, 1000), (640, 480), (568, 568)]
            sample = synthetic_images(Path(tmp), [sizes[i % 4] for i in range(args.n)])
        if "speed" not in args.skip:
            bench_speed(sample, args.draft, args.batch, args.rounds)
        if "draft" not in args.skip:
            bench_draft(images or sample, args.draft_cap)
    if "memory" not in args.skip:
        bench_memory(args.mem_n)


if __name__ == "__main__":
    main()
