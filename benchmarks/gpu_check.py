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
3b. the input pipeline alone: images/s of the training recipe on 1-6 MP JPEGs through a DataLoader with
   0 / 8 / 14 workers (capped at the machine's cores), with and without JPEG draft decoding;
4. one fine-tune task of the stand-in (Art -> Clipart, 65 classes, the authors' preprocessing and
   batches, the real train_dah_finetune loop with its DataLoader) on the device: seconds per epoch,
   images/s, accuracy/mAP of the stand-in (meaningless values; it proves the path runs end to end).

Results: OUT_DIR/gpu_check.json and a printed table (paste it into benchmarks/README.md).
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
                   "tests/test_model_sampler.py", "tests/test_recipes.py", "tests/test_vggf.py"]


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


def loader_rates(dry: bool) -> dict:
    """images/s of the VGG-F training recipe (crop, aspect, flip, brightness, bicubic 224) through a DataLoader
    on synthetic 1-6 MP JPEGs, for 0/8/14 workers (capped at the cores) with and without draft decoding."""
    from bench_loader import _photo, _rate

    from dahash.nn.augment import ChannelMoments
    from dahash.nn.recipes import input_recipe

    moments = ChannelMoments(mean=np.array([120.0, 115.0, 100.0], np.float32), std=np.ones(3, np.float32),
                             cov=np.eye(3) * 900.0, count=1, images=1)
    recipe = input_recipe("vggf", moments)
    cores = os.cpu_count() or 1
    workers = sorted({min(w, cores) for w in ((0, 2) if dry else (0, 8, 14))})
    sizes = ((400, 300),) if dry else ((1152, 864), (2048, 1536), (3000, 2000))
    n = 8 if dry else 64
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for w, h in sizes:
            paths = []
            for i in range(n):
                p = Path(tmp) / f"{w}_{i}.jpg"
                if i < 4:
                    _photo(w, h, i).save(p, quality=90)
                else:
                    p.write_bytes((Path(tmp) / f"{w}_{i % 4}.jpg").read_bytes())
                paths.append(p)
            for nw in workers:
                full = _rate(paths, recipe.train_transform(0), False, nw)
                draft = _rate(paths, recipe.train_transform(0, draft=True), True, nw)
                out[f"{w * h / 1e6:.1f}MP_w{nw}"] = {"full_decode": round(full, 1), "draft_uint8": round(draft, 1)}
    return out


def standin_task(device: torch.device, dry: bool, mat: Path, workers: int) -> dict:
    """Art -> Clipart of the Office-Home stand-in, fine-tuned with the authors' recipe on ``device``."""
    from standin import _image

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
        source, target = paths[0], paths[1]
        moments = channel_moments(source + target, 224, interpolation="bicubic", num_threads=max(1, workers))
        recipe = input_recipe("vggf", moments)
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
                         ("loader", lambda: loader_rates(args.dry)),
                         ("standin_task", lambda: standin_task(device, args.dry, mat, workers))):
            t0 = time.perf_counter()
            try:
                results[name] = fn()
            except Exception as exc:  # report and go on: one broken part must not hide the others' figures
                results[name] = {"error": f"{type(exc).__name__}: {exc}"}
            results[name]["wall_s"] = round(time.perf_counter() - t0, 1)
            print(f"{name}: {json.dumps(results[name])}", flush=True)
            (args.out / "gpu_check.json").write_text(json.dumps(results, indent=2) + "\n")
    failed = [k for k, v in results.items() if isinstance(v, dict) and "error" in v]
    if failed:
        print(f"FAILED parts: {failed}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
