"""Fine-tuning input path, today's vs the decode-once cache + device augmentation: images/s per core (issue 21).

    python benchmarks/bench_loader.py [--real 300] [--n 24] [--rounds 2]

One process, one torch thread, no DataLoader workers: every figure is images/s of ONE core, measured side by
side in one run on the same images, for the VGG-F training recipe (the authors' crop draw, aspect [2/3, 3/2],
flip, brightness, bicubic to 224, mean subtraction):

* today:    decode each JPEG (draft decoding at the DCT scale the crop needs), crop + resize with PIL, float32
            normalisation (what train_dah_finetune did per image per epoch: TrainTransform(draft=True));
* new CPU:  what a loader worker does now: the draws + copying the crop's bytes out of the memory-mapped cache
            (dahash.nn.device_augment.CachedCrops.__getitems__: one copy into the batch buffer);
* new all:  new CPU + the device augmentation run on the CPU with torch (crops_to_batch: resize, flip,
            brightness, mean), i.e. the whole new path without a GPU;
* build:    the one-time cache build (decode + Lanczos to S = 336), images/s per core, for reference.

Image sets: the real Office-Caltech-10 images (``--real`` of them, evenly over the 4 domains; ../shared/data
or ``--real-dir``) and synthetic smooth JPEGs of 1, 3, 6 and 12 megapixels (Office-Home's photos reach
4384 x 2686; ``--n`` per size, 4 distinct + copies). Also printed: the cache's bytes per image, the projection
for Office-Home's 15,588 images, and the loader's anonymous (non file-backed) memory growth while it reads every
cached image (the memory map's pages are the page cache's, not the process's).
"""

from __future__ import annotations

import argparse
import resource  # noqa: F401 - Linux only, as /proc below
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from dahash.data.image_cache import CachedImages, ImageCache, build_image_cache, cached_size  # noqa: E402
from dahash.nn.augment import ChannelMoments, normalize_batch  # noqa: E402
from dahash.nn.device_augment import CachedCrops, crops_to_batch  # noqa: E402
from dahash.nn.recipes import input_recipe  # noqa: E402

REAL_DIR = ROOT.parent / "shared" / "data" / "office-caltech-10" / "images"  # ../shared/data beside the checkout
OFFICE_HOME_IMAGES = 15_588
BATCH = 64


def _photo(w: int, h: int, seed: int) -> Image.Image:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    chans = [127 + 100 * np.sin(xx / (40 + 9 * c + seed) + yy / (55 + 7 * c)) for c in range(3)]
    return Image.fromarray(np.clip(np.stack(chans, -1), 0, 255).astype(np.uint8))


def vggf_recipe():
    moments = ChannelMoments(mean=np.array([120.0, 115.0, 100.0], np.float32), std=np.ones(3, np.float32),
                             cov=np.array([[900.0, 600, 400], [600, 900, 600], [400, 600, 900]]), count=1, images=1)
    return input_recipe("vggf", moments, dataset="office_home")


def real_images(folder: Path, n: int) -> list[Path]:
    by_domain = [sorted(d.glob("*/*.jpg")) for d in sorted(folder.iterdir()) if d.is_dir()]
    per = max(1, n // max(1, len(by_domain)))
    return [p for paths in by_domain for p in paths[:: max(1, len(paths) // per)][:per]]


def synthetic(tmp: Path, w: int, h: int, n: int) -> list[Path]:
    paths = []
    for i in range(n):
        p = tmp / f"{w}x{h}_{i}.jpg"
        if i < 4:
            _photo(w, h, i).save(p, quality=90)
        else:  # copies: the decoding cost is what matters, not distinct content
            p.write_bytes((tmp / f"{w}x{h}_{i % 4}.jpg").read_bytes())
        paths.append(p)
    return paths


def _keys(n: int, rnd: int) -> list[list[tuple]]:
    keys = [(0, i, (0, rnd, i // BATCH, i % BATCH)) for i in range(n)]
    return [keys[s:s + BATCH] for s in range(0, n, BATCH)]


def today_rate(paths: list[Path], recipe, rounds: int) -> float:
    """TrainTransform(draft=True).raw per image + normalize_batch per batch (the loader's old work)."""
    t = recipe.train_transform(0, draft=True)
    t0, n = time.perf_counter(), 0
    for rnd in range(rounds):
        for batch in _keys(len(paths), rnd):
            raw = [t.raw(paths[i], np.random.default_rng(list(seed))) for _, i, seed in batch]
            normalize_batch(torch.stack([a for a, _ in raw]), torch.stack([b for _, b in raw]), t.mean, t.std)
            n += len(batch)
    return n / (time.perf_counter() - t0)


def new_rates(items: CachedImages, recipe, rounds: int) -> tuple[float, float]:
    """(gather only, gather + device augmentation on the CPU) images/s."""
    t = recipe.train_transform(0)
    ds = CachedCrops([items], t)
    gather = aug = 0.0
    n = 0
    for rnd in range(rounds):
        for batch in _keys(len(items), rnd):
            t0 = time.perf_counter()
            packed = ds.__getitems__(batch)  # what a loader worker runs per batch
            t1 = time.perf_counter()
            crops_to_batch(packed, t, "cpu", torch.channels_last)
            gather, aug, n = gather + (t1 - t0), aug + (time.perf_counter() - t1), n + len(batch)
    return n / gather, n / (gather + aug)


def anon_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1])
    return -1


def run_set(name: str, paths: list[Path], recipe, rounds: int, tmp: Path) -> dict:
    side = recipe.cache_side()
    t0 = time.perf_counter()
    folder = build_image_cache(paths, [str(p) for p in paths], tmp / f"cache_{name}", short_side=side,
                               exif=recipe.exif)
    build = len(paths) / (time.perf_counter() - t0)
    cache = ImageCache(folder)
    items = CachedImages.of(cache)
    today = today_rate(paths, recipe, rounds)
    gather, whole = new_rates(items, recipe, rounds)
    per_image = (folder / "pixels.u8").stat().st_size / len(paths)
    return {"set": name, "n": len(paths), "today": today, "gather": gather, "whole": whole, "build": build,
            "bytes_per_image": per_image, "mp": float(np.mean([np.prod(Image.open(p).size) for p in paths])) / 1e6}


def projection(paths: list[Path], side: int) -> float:
    """Mean cache bytes per image if every image were a photo at least S on its shorter side (the aspect ratios
    of ``paths``): the Office-Home estimate (its photos are mostly larger than S; smaller ones take less)."""
    sizes = []
    for p in paths:
        w, h = Image.open(p).size
        r = max(1.0, side / min(w, h))  # as if large enough to be reduced to S
        hh, ww = cached_size(int(round(h * r)), int(round(w * r)), side)
        sizes.append(hh * ww * 3)
    return float(np.mean(sizes))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real", type=int, default=300, help="Office-Caltech-10 images (0: none)")
    ap.add_argument("--real-dir", type=Path, default=REAL_DIR)
    ap.add_argument("--n", type=int, default=24, help="synthetic images per size")
    ap.add_argument("--rounds", type=int, default=2, help="epochs over each set (different draws)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    recipe = vggf_recipe()
    rows = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        real = real_images(args.real_dir, args.real) if args.real and args.real_dir.is_dir() else []
        sets = ([("office-caltech-10", real)] if real else []) + [
            (f"synthetic {w}x{h}", synthetic(tmp, w, h, args.n))
            for w, h in ((1152, 864), (2048, 1536), (3000, 2000), (4000, 3000))]
        print(f"VGG-F training recipe, S = {recipe.cache_side()}, EXIF {'applied' if recipe.exif else 'ignored'}; "
              f"images/s per core (1 torch thread, no workers)", flush=True)
        print(f"{'set':>24} {'n':>4} {'MP':>5} {'today':>7} {'new CPU':>8} {'x':>6} {'new all':>8} {'x':>5} "
              f"{'build':>6} {'kB/img':>7}", flush=True)
        for name, paths in sets:
            r = run_set(name.replace(" ", "_"), paths, recipe, args.rounds, tmp)
            rows.append(r)
            print(f"{name:>24} {r['n']:>4} {r['mp']:>5.1f} {r['today']:>7.1f} {r['gather']:>8.0f} "
                  f"{r['gather'] / r['today']:>5.0f}x {r['whole']:>8.1f} {r['whole'] / r['today']:>4.1f}x "
                  f"{r['build']:>6.1f} {r['bytes_per_image'] / 1e3:>7.0f}", flush=True)
        total = {k: sum(r["n"] for r in rows) / sum(r["n"] / r[k] for r in rows) for k in ("today", "gather", "whole")}
        print(f"{'all sets (harmonic)':>24} {sum(r['n'] for r in rows):>4} {'':>5} {total['today']:>7.1f} "
              f"{total['gather']:>8.0f} {total['gather'] / total['today']:>5.0f}x {total['whole']:>8.1f} "
              f"{total['whole'] / total['today']:>4.1f}x", flush=True)
        # cache size: measured per set, projected for Office-Home
        ref = real or [p for _, ps in sets for p in ps]
        mean = projection(ref, recipe.cache_side())
        worst = recipe.cache_side() * round(recipe.cache_side() * 1.5) * 3  # every image a 3:2 photo
        print(f"cache for Office-Home ({OFFICE_HOME_IMAGES:,} images): {mean / 1e3:.0f} kB per image "
              f"(Office-Caltech-10's aspect ratios, every image >= S) -> {OFFICE_HOME_IMAGES * mean / 1e9:.2f} GB; "
              f"all 3:2 photos: {worst / 1e3:.0f} kB -> {OFFICE_HOME_IMAGES * worst / 1e9:.2f} GB", flush=True)
        # loader memory: anonymous memory while gathering every image of the largest cache twice
        big = ImageCache(tmp / f"cache_{sets[-1][0].replace(' ', '_')}")
        ds = CachedCrops([CachedImages.of(big)], recipe.train_transform(0))
        before = anon_kib()
        for rnd in range(2):
            for batch in _keys(len(big), rnd):
                ds.__getitems__(batch)
        mb = big.folder.joinpath("pixels.u8").stat().st_size / 1e6
        print(f"loader anonymous memory growth over {2 * len(big)} gathers of a {mb:.0f} MB cache: {(anon_kib() - before) / 1e3:.1f} MB (index: {len(big)} entries; pixels memory-mapped)", flush=True)


if __name__ == "__main__":
    main()
