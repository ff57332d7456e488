"""Fine-tuning input pipeline speed on this machine's CPU: images/s before and after (issue 15).

    python benchmarks/bench_loader.py [--n 48] [--workers 0 2]

Synthetic smooth JPEGs of 1, 3 and 6 megapixels (Office-Home's photos reach 6500 x 4900) go through the
VGG-F training recipe (random crop, aspect, flip, brightness, bicubic to 224):
* before: full JPEG decode, float32 normalisation in the loader, float32 batches (the old path);
* after:  JPEG draft decoding at the scale the crop needs, uint8 batches (normalised on the device).
Per worker count, images/s through a DataLoader (batches of 16) and the ratio after/before. The same
numbers per core tell how many decoding workers a GPU consuming ~2,000-3,000 images/s needs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torch.utils.data import DataLoader, Dataset  # noqa: E402

from dahash.nn.augment import ChannelMoments  # noqa: E402
from dahash.nn.recipes import input_recipe  # noqa: E402


class _Images(Dataset):
    def __init__(self, paths, transform, raw: bool):
        self.paths, self.transform, self.raw = paths, transform, raw

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        rng = np.random.default_rng(i)
        return self.transform.raw(self.paths[i], rng) if self.raw else self.transform(self.paths[i], rng)


def _collate(items):
    if isinstance(items[0], tuple):
        return torch.stack([a for a, _ in items]), torch.stack([b for _, b in items])
    return torch.stack(items)


def _photo(w: int, h: int, seed: int) -> Image.Image:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    chans = [127 + 100 * np.sin(xx / (40 + 9 * c + seed) + yy / (55 + 7 * c)) for c in range(3)]
    return Image.fromarray(np.clip(np.stack(chans, -1), 0, 255).astype(np.uint8))


def _rate(paths, transform, raw: bool, workers: int) -> float:
    loader = DataLoader(_Images(paths, transform, raw), batch_size=16, num_workers=workers, collate_fn=_collate)
    t0 = time.perf_counter()
    n = sum(len(b[0] if isinstance(b, tuple) else b) for b in loader)
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=48, help="images per size")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    args = ap.parse_args()
    torch.set_num_threads(1)
    moments = ChannelMoments(mean=np.array([120.0, 115.0, 100.0], np.float32), std=np.ones(3, np.float32),
                             cov=np.eye(3) * 900.0, count=1, images=1)
    recipe = input_recipe("vggf", moments)
    before, after = recipe.train_transform(0), recipe.train_transform(0, draft=True)
    print(f"{'size':>8} {'workers':>7} {'before img/s':>13} {'after img/s':>12} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as tmp:
        for w, h in ((1152, 864), (2048, 1536), (3000, 2000)):
            paths = []
            for i in range(args.n):
                p = Path(tmp) / f"{w}_{i}.jpg"
                if i < 4:
                    _photo(w, h, i).save(p, quality=90)
                else:  # copies: decoding cost is what matters, not distinct content
                    p.write_bytes((Path(tmp) / f"{w}_{i % 4}.jpg").read_bytes())
                paths.append(p)
            for workers in args.workers:
                b = _rate(paths, before, False, workers)
                a = _rate(paths, after, True, workers)
                print(f"{w * h / 1e6:>6.1f}MP {workers:>7} {b:>13.1f} {a:>12.1f} {a / b:>6.2f}", flush=True)


if __name__ == "__main__":
    main()
