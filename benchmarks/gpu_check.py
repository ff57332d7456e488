"""The prepared GPU check: what a session lent a CUDA machine runs, in one command, in a few minutes.

    python benchmarks/gpu_check.py OUT_DIR            # on the CUDA machine (bash benchmarks/gpu_check.sh OUT_DIR)
    python benchmarks/gpu_check.py OUT_DIR --dry      # the same code paths on the CPU at toy sizes (CI runs it)

Needs only the repository and what a bare CUDA image has (torch, numpy, scipy, pillow, pandas, pytest):
the library is imported from ``src/``, the VGG-F .mat and the Office-Home-shaped images are built in memory
by ``tests/standin.py`` (the real layer list at full width; no network, no mlflow/dvc/snakemake). Steps:

1. the CUDA tests (``pytest -rs`` on the library test files; skipped where no CUDA);
2. paper-size head-mode steps: DAHHead 9216 -> 4096 -> 4096 -> 64 on a 650-item batch (K = 5, C = 65),
   ms/step after warm-up, synchronised;
3. paper-size fine-tune steps: full-width VGG-F + head on 650 preprocessed 224 x 224 images already on
   the device, ms/step, images/s, peak memory, with and without channels_last and cudnn.benchmark;
3b. the input path alone: loader workers gathering crop bytes from the decode-once cache of 1-12 MP photos
   (0 / 4 / 8 / 14 workers, capped at the cores) + the recipe's augmentation on the device, images/s;
3c. both together: the real train_dah_finetune loop on the cache at the paper's batch (650), images/s, and the
   projected minutes per paper task (300 epochs x ceil(n_t / 325) steps, Office-Home's targets);
4. one fine-tune task of the stand-in (Art -> Clipart, 65 classes, the authors' preprocessing and
   batches, the real train_dah_finetune loop on its image cache) on the device: seconds per epoch,
   images/s, accuracy/mAP of the stand-in (meaningless values; it proves the path runs end to end).

Results: OUT_DIR/gpu_check.json and SUMMARY lines: loader alone, model step alone, both together in images/s
and the projected minutes per paper task (paste them into benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests"), str(ROOT / "benchmarks")]

import numpy as np  # noqa: E402
import torch  # noqa: E402

CUDA_TEST_FILES = ["tests/test_finetune.py", "tests/test_train.py", "tests/test_losses.py", "tests/test_metrics.py",
                   "tests/test_model_sampler.py", "tests/test_recipes.py", "tests/test_vggf.py", "tests/test_image_cache.py"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed_steps(step, device: torch.device, warmup: int, steps: int) -> float:
    """Mean seconds per call of ``step()`` after ``warmup`` calls, synchronised around the timing."""
    for _ in range(warmup):
        step()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return (time.perf_counter() - t0) / max(1, steps)


def env_info(device: torch.device) -> dict:
    info = {"python": platform.python_version(), "torch": torch.__version__, "device": str(device),
            "cuda_available": torch.cuda.is_available(), "cpu_count": os.cpu_count()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def cuda_tests(out: Path) -> dict:
    """The library's test files (their CUDA tests run where CUDA exists); the log goes to OUT_DIR."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-k", "cuda", "-p", "no:cacheprovider",
                          *CUDA_TEST_FILES], cwd=ROOT, env=env, capture_output=True, text=True)
    (out / "cuda_tests.log").write_text(res.stdout + res.stderr)
    last = (res.stdout.strip().splitlines() or [""])[-1]
    return {"returncode": res.returncode, "summary": last, "seconds": round(time.perf_counter() - t0, 1)}


def head_steps(device: torch.device, dry: bool) -> dict:
    from dahash.nn.model import DAHHead
    from dahash.train.head import DAHConfig, batch_losses, sgd_step

    k, c = (1, 65) if dry else (5, 65)
    ns = k * c
    in_dim, hidden = (288, (128, 128)) if dry else (9216, (4096, 4096))
    config = DAHConfig(hidden_dims=hidden, k_per_class=k)
    g = torch.Generator().manual_seed(0)
    head = DAHHead(in_dim, hidden, 64, generator=g, bn_momentum=config.bn_momentum).to(device)
    opt = torch.optim.SGD(head.param_groups(1e-4, 5e-4, bias_decay=0.0), lr=1e-4, momentum=0.9)
    x = torch.randn(2 * ns, in_dim, generator=g).to(device)
    ys = torch.arange(ns, device=device) // k
    mmd_gen = torch.Generator().manual_seed(1)

    def step() -> None:
        terms = batch_losses(head(x), ns, ys, c, config, mmd_gen, True)
        sgd_step(terms, opt, config, ns, 1, 1)

    sec = _timed_steps(step, device, 1 if dry else 3, 1 if dry else 20)
    return {"batch": 2 * ns, "in_dim": in_dim, "ms_per_step": round(1000 * sec, 2)}


def finetune_steps(device: torch.device, dry: bool, mat: Path) -> dict:
    from dahash.nn.backbones.vggf import load_vggf, vggf_head_init
    from dahash.train.finetune import finetune_param_groups, freeze_batchnorm, trunk_features
    from dahash.nn.model import DAHHead
    from dahash.train.head import DAHConfig, batch_losses, sgd_step

    k, c = (1, 65) if dry else (5, 65)
    ns = k * c
    out = {"batch": 2 * ns}
    variants = [(False, True), (True, True), (True, False)]  # (channels_last, cudnn.benchmark)
    for channels_last, bench in variants:
        torch.backends.cudnn.benchmark = bench
        vggf = load_vggf(mat)
        head_init = vggf_head_init(vggf)
        hidden = tuple(int(head_init[f"fc{i}.weight"].shape[0]) for i in (6, 7))
        config = DAHConfig(hidden_dims=hidden, k_per_class=k)
        head = DAHHead(vggf.feature_dim, hidden, 64, head_init, generator=torch.Generator().manual_seed(0))
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        vggf.to(device=device, memory_format=fmt)
        head.to(device)
        opt = torch.optim.SGD(finetune_param_groups(vggf, head, config, trunk_pretrained=True), lr=1e-4,
                              momentum=0.9)
        x = (torch.rand(2 * ns, 3, 224, 224, generator=torch.Generator().manual_seed(2)) * 255 - 120).to(
            device=device, memory_format=fmt)
        ys = torch.arange(ns, device=device) // k
        mmd_gen = torch.Generator().manual_seed(1)
        vggf.train()
        head.train()
        freeze_batchnorm(vggf)

        def step() -> None:
            terms = batch_losses(head(trunk_features(vggf, x)), ns, ys, c, config, mmd_gen, True)
            sgd_step(terms, opt, config, ns, 1, 1)

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        sec = _timed_steps(step, device, 1 if dry else 2, 1 if dry else 10)
        key = ("channels_last" if channels_last else "contiguous") + ("" if bench else "_no_benchmark")
        out[key] = {"ms_per_step": round(1000 * sec, 1), "images_per_s": round(2 * ns / sec, 1)}
        if device.type == "cuda":
            out[key]["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        del vggf, head, opt, x
        if device.type == "cuda":
            torch.cuda.empty_cache()
    torch.backends.cudnn.benchmark = True
    return out


#: Office-Home's domain sizes (the paper's Table 1): a task's target is one of them, 3 tasks each
OFFICE_HOME_TARGETS = {"Art": 2427, "Clipart": 4365, "Product": 4439, "RealWorld": 4357}


def _cached_photos(tmp: Path, dry: bool):
    """A decode-once cache (the VGG-F recipe's S = 336) of synthetic photos of 1-12 MP (4 sizes x 2)."""
    from bench_loader import _photo

    from dahash.data.image_cache import ImageCache, build_image_cache

    sizes = ((400, 300), (640, 480)) if dry else ((1152, 864), (2048, 1536), (3000, 2000), (4000, 3000))
    paths = []
    for w, h in sizes:
        for i in range(2):
            p = tmp / f"{w}x{h}_{i}.jpg"
            _photo(w, h, i).save(p, quality=90)
            paths.append(p)
    return ImageCache(build_image_cache(paths, [p.name for p in paths], tmp / "cache", short_side=336, exif=False))


def loader_rates(device: torch.device, dry: bool) -> dict:
    """The input path alone, images/s: loader workers gathering crop bytes from the cache (0 / 4 / 8 / 14 workers,
    capped at the cores) for 650-image batches, then the VGG-F recipe's augmentation on ``device``
    (dahash.nn.device_augment.crops_to_batch), synchronised; plus today's path (decode + PIL per image,
    TrainTransform(draft=True)) on one core, for reference."""
    from bench_loader import vggf_recipe

    from dahash.data.image_cache import CachedImages
    from dahash.nn.device_augment import CachedCrops, cached_loader, crops_to_batch

    recipe = vggf_recipe()
    t = recipe.train_transform(0)
    cores = os.cpu_count() or 1
    batch, nbatches = (130, 2) if dry else (650, 6)
    out: dict = {"batch": batch}
    with tempfile.TemporaryDirectory() as tmp:
        cache = _cached_photos(Path(tmp), dry)
        items = CachedImages(cache, np.resize(np.arange(len(cache)), batch))
        ds = CachedCrops([items], t)
        for nw in sorted({min(w, cores) for w in ((0, 2) if dry else (0, 4, 8, 14))}):
            keys = [[(0, j, (0, 1, b, j)) for j in range(batch)] for b in range(nbatches)]
            loader = cached_loader(ds, keys, nw, device)
            t0, n = time.perf_counter(), 0
            for packed in loader:
                x = crops_to_batch(packed, t, device, torch.channels_last)
                n += x.shape[0]
            _sync(device)
            out[f"workers{nw}"] = {"images_per_s": round(n / (time.perf_counter() - t0), 1)}
        paths = sorted(Path(tmp).glob("*.jpg"))
        tt = recipe.train_transform(0, draft=True)
        t0 = time.perf_counter()
        for i in range(4 if dry else 16):
            tt(paths[i % len(paths)], np.random.default_rng(i))
        out["today_per_core"] = {"images_per_s": round((4 if dry else 16) / (time.perf_counter() - t0), 1)}
    return out


def together(device: torch.device, dry: bool, mat: Path, workers: int) -> dict:
    """Loader + device augmentation + model step: the real train_dah_finetune loop on cached 1-12 MP photos at the
    paper's batch (K = 5 per class x 65 classes + as many target images, full-width VGG-F + DAH head); images/s
    over the epochs after the first, and the projected minutes per paper task (300 epochs x ceil(n_t / 325)
    steps of 650 images, Office-Home's targets)."""
    from dahash.data.image_cache import CachedImages
    from dahash.nn.backbones.vggf import load_vggf, vggf_head_init
    from dahash.nn.model import DAHHead
    from dahash.train.finetune import train_dah_finetune
    from dahash.train.head import DAHConfig
    from bench_loader import vggf_recipe

    k, c = (1, 65) if dry else (5, 65)
    epochs, steps = (2, 1) if dry else (4, 2)
    with tempfile.TemporaryDirectory() as tmp:
        cache = _cached_photos(Path(tmp), dry)
        source = CachedImages(cache, np.resize(np.arange(len(cache)), k * c))
        target = CachedImages(cache, np.resize(np.arange(len(cache)), steps * k * c))
        labels = np.repeat(np.arange(c), k)
        vggf = load_vggf(mat)
        head_init = vggf_head_init(vggf)
        hidden = tuple(int(head_init[f"fc{i}.weight"].shape[0]) for i in (6, 7))
        config = DAHConfig(hidden_dims=hidden, k_per_class=k, epochs=epochs)
        head = DAHHead(vggf.feature_dim, hidden, 64, head_init, generator=torch.Generator().manual_seed(0))
        stamps: list[float] = []

        def on_epoch(_record: dict) -> None:
            _sync(device)
            stamps.append(time.perf_counter())

        train_dah_finetune(source, labels, target, c, config, trunk=vggf, head=head, trunk_pretrained=True,
                           train_transform=vggf_recipe().train_transform(0), device=device, seed=0,
                           num_workers=workers, channels_last=True, on_epoch=on_epoch)
    seconds = (stamps[-1] - stamps[0]) / max(1, len(stamps) - 1)
    rate = steps * 2 * k * c / seconds
    minutes = {d: 300 * -(-n // 325) * 650 / rate / 60 for d, n in OFFICE_HOME_TARGETS.items()}
    return {"batch": 2 * k * c, "steps_per_epoch": steps, "seconds_per_epoch": round(seconds, 2),
            "images_per_s": round(rate, 1), "paper_task_minutes_mean": round(float(np.mean(list(minutes.values()))), 1),
            "paper_task_minutes_max": round(max(minutes.values()), 1)}


def standin_task(device: torch.device, dry: bool, mat: Path, workers: int) -> dict:
    """Art -> Clipart of the Office-Home stand-in, fine-tuned with the authors' recipe on ``device``."""
    from standin import _image

    from dahash.data.image_cache import CachedImages, ImageCache, build_image_cache
    from dahash.nn.augment import channel_moments
    from dahash.nn.backbones.vggf import load_vggf, vggf_head_init
    from dahash.train.finetune import encode_images, train_dah_finetune
    from dahash.eval.metrics import accuracy, binarize, mean_average_precision, predict_eq6
    from dahash.nn.model import DAHHead
    from dahash.nn.recipes import input_recipe
    from dahash.train.head import DAHConfig

    c, per_class = 65, (2 if dry else 6)
    size = (40, 32) if dry else (320, 240)
    with tempfile.TemporaryDirectory() as tmp:
        paths: dict[int, list[Path]] = {0: [], 1: []}
        labels = np.repeat(np.arange(c), per_class)
        for dom in (0, 1):
            for cls in range(c):
                for i in range(per_class):
                    p = Path(tmp) / f"d{dom}_c{cls}_{i}.jpg"
                    _image(cls, dom, i, size).save(p, quality=90)
                    paths[dom].append(p)
        moments = channel_moments(paths[0] + paths[1], 224, interpolation="bicubic", num_threads=max(1, workers))
        recipe = input_recipe("vggf", moments)
        everything = paths[0] + paths[1]
        cache = ImageCache(build_image_cache(everything, [p.name for p in everything], Path(tmp) / "cache",
                                             short_side=recipe.cache_side(), exif=recipe.exif))
        source = CachedImages.of(cache, [p.name for p in paths[0]])
        target = CachedImages.of(cache, [p.name for p in paths[1]])
        vggf = load_vggf(mat)
        head_init = vggf_head_init(vggf)
        hidden = tuple(int(head_init[f"fc{i}.weight"].shape[0]) for i in (6, 7))
        config = DAHConfig(hidden_dims=hidden, k_per_class=1 if dry else 5, epochs=1 if dry else 2)
        head = DAHHead(vggf.feature_dim, hidden, 64, head_init, generator=torch.Generator().manual_seed(0),
                       bn_momentum=config.bn_momentum)
        t0 = time.perf_counter()
        res = train_dah_finetune(source, labels, target, c, config, trunk=vggf, head=head, trunk_pretrained=True,
                                 train_transform=recipe.train_transform(0), device=device, seed=0,
                                 num_workers=workers, channels_last=device.type == "cpu")
        _sync(device)
        train_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        us = encode_images(res.trunk, res.head, source, recipe.eval_transform(), device=device, num_workers=workers)
        ut = encode_images(res.trunk, res.head, target, recipe.eval_transform(), device=device, num_workers=workers)
        encode_s = time.perf_counter() - t0
    steps = int(np.ceil(len(target) / (config.k_per_class * c))) * config.epochs
    seen = steps * 2 * config.k_per_class * c
    pred = predict_eq6(ut, us, labels, c)
    mp = mean_average_precision(binarize(ut), binarize(us), labels, labels)
    return {"images_per_domain": len(target), "epochs": config.epochs, "steps": steps,
            "train_seconds": round(train_s, 1), "train_images_per_s": round(seen / train_s, 1),
            "encode_seconds": round(encode_s, 1), "final_total_loss": round(res.history[-1]["total"], 3),
            "standin_accuracy": round(accuracy(pred, labels), 3), "standin_map": round(float(mp.map), 3)}


def print_summary(results: dict) -> None:
    """Loader alone, model step alone, both together (images/s) and the projected minutes per paper task."""
    loader = {k: v["images_per_s"] for k, v in results.get("loader", {}).items() if k.startswith("workers")}
    model = results.get("finetune_steps", {}).get("channels_last", {}).get("images_per_s")
    both = results.get("together", {})
    if loader:
        best = max(loader, key=loader.get)
        print(f"SUMMARY loader alone (cache gather + device augmentation): {loader[best]} images/s ({best}); "
              f"today's decode path: {results['loader'].get('today_per_core', {}).get('images_per_s')} images/s per core")
    print(f"SUMMARY model step alone (VGG-F + DAH head, channels_last): {model} images/s")
    if "images_per_s" in both:
        print(f"SUMMARY together (train_dah_finetune on the cache): {both['images_per_s']} images/s -> "
              f"{both['paper_task_minutes_mean']} min per paper task (Office-Home mean; max "
              f"{both['paper_task_minutes_max']}), 24 runs (12 tasks x DAH, DAH-e): "
              f"{24 * both['paper_task_minutes_mean'] / 60:.1f} h")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="folder for gpu_check.json and the test log")
    ap.add_argument("--dry", action="store_true", help="CPU, toy sizes: checks the script itself (CI)")
    ap.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: cores - 2, 0 on --dry)")
    args = ap.parse_args(argv)
    from standin import write_vggf_mat

    args.out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cpu" if args.dry or not torch.cuda.is_available() else "cuda")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    workers = args.workers if args.workers is not None else (0 if args.dry else max(0, (os.cpu_count() or 2) - 2))
    results: dict = {"env": env_info(device), "dry": args.dry, "workers": workers}
    print(json.dumps(results["env"]), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        mat = write_vggf_mat(Path(tmp) / "imagenet-vgg-f.mat", width=1 / 32 if args.dry else 1.0)
        results["vggf_mat_seconds"] = round(time.perf_counter() - t0, 1)
        for name, fn in (("cuda_tests", lambda: cuda_tests(args.out)),
                         ("head_steps", lambda: head_steps(device, args.dry)),
                         ("finetune_steps", lambda: finetune_steps(device, args.dry, mat)),
                         ("loader", lambda: loader_rates(device, args.dry)),
                         ("together", lambda: together(device, args.dry, mat, workers)),
                         ("standin_task", lambda: standin_task(device, args.dry, mat, workers))):
            t0 = time.perf_counter()
            try:
                results[name] = fn()
            except Exception as exc:  # report and go on: one broken part must not hide the others' figures
                results[name] = {"error": f"{type(exc).__name__}: {exc}"}
            results[name]["wall_s"] = round(time.perf_counter() - t0, 1)
            print(f"{name}: {json.dumps(results[name])}", flush=True)
            (args.out / "gpu_check.json").write_text(json.dumps(results, indent=2) + "\n")
    print_summary(results)
    failed = [k for k, v in results.items() if isinstance(v, dict) and "error" in v]
    if failed:
        print(f"FAILED parts: {failed}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
