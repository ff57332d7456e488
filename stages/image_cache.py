"""Decode-once image cache of one domain (fine-tuning's input; :mod:`dahash.data.image_cache`).

Every usable manifest image of the domain is decoded once with the recipe's EXIF policy
(:func:`dahash.nn.recipes.exif_orientation`: the paper's VGG-F recipe ignores the orientation tag as the authors'
reader; the user's own images and the other recipes keep it), downsized to the shorter side
``image_cache.short_side`` (``auto``: the recipe's :meth:`~dahash.nn.recipes.InputRecipe.cache_side`, VGG-F 336)
and stored as uint8 in ``data/image_cache/<dataset>/<backbone>/<domain>/`` (``pixels.u8`` + ``index.json``),
written into a temporary folder and renamed. ``short_side: 0`` writes an empty cache (head mode only: nothing
reads it; check_cross_keys refuses fine-tuning with it).
"""

from __future__ import annotations

import os

from stages.common import domain_args, StageError, atomic_path, load_params, main_wrapper
from stages.features import domain_rows
from stages.paths import image_cache_dir, raw_dir, shown


def cache_settings(params: dict) -> tuple[int, int, bool]:
    """``(S, channels, exif)`` for params.yaml: ``S = 0`` when no images are cached (``image_cache.short_side: 0``
    or a backbone without image input, e.g. surf800)."""
    from dahash.nn.recipes import RECIPE_BACKBONES, cache_settings as recipe_cache

    backbone, dataset = params["backbone"]["name"], params["data"]["dataset"]
    setting = params["image_cache"]["short_side"]
    if backbone not in RECIPE_BACKBONES or setting == 0:
        return 0, 3, True
    side, channels, exif = recipe_cache(backbone, dataset)
    if setting != "auto" and int(setting) < side:
        print(f"WARNING: image_cache.short_side = {setting} is below the {backbone} recipe's {side}: some training "
              f"crops are upsampled from the cache (auto avoids it)", flush=True)
    return (side if setting == "auto" else int(setting)), channels, exif


def open_cached(params: dict, domain: str, names: list[str]):  # -> dahash.data.image_cache.CachedImages
    """The cached images ``names`` (manifest paths) of ``domain``, for fine-tuning."""
    from dahash.data.image_cache import CachedImages, ImageCache

    folder = image_cache_dir(params["data"]["dataset"], params["backbone"]["name"], domain)
    try:
        cache = ImageCache(folder)
        if len(cache) == 0 and names:
            raise ValueError(f"{folder}: the image cache is empty (image_cache.short_side: 0); set "
                             "image_cache.short_side: auto to fine-tune")
        return CachedImages.of(cache, names)
    except ValueError as exc:
        raise StageError(str(exc)) from exc


@main_wrapper
def main(argv: list[str] | None = None) -> None:
    args = domain_args(argv, __doc__)
    params = load_params()
    dataset, backbone = params["data"]["dataset"], params["backbone"]["name"]
    from dahash.data.image_cache import build_image_cache
    from dahash.progress import progress

    side, channels, exif = cache_settings(params)
    rows = domain_rows(dataset, args.domain) if side else None
    names = rows["path"].tolist() if side else []
    raw = raw_dir(dataset)
    out = image_cache_dir(dataset, backbone, args.domain)
    threads = max(1, min(8, os.cpu_count() or 1))
    with atomic_path(out) as tmp, progress(total=len(names), desc=f"{args.domain} (S={side})", unit="img") as bar:
        build_image_cache([raw / p for p in names], names, tmp, short_side=max(side, 1), channels=channels,
                          exif=exif, num_threads=threads, progress=bar)
    size = (out / "pixels.u8").stat().st_size
    print(f"{args.domain}: {len(names)} images, shorter side {side}, EXIF {'applied' if exif else 'ignored'}, "
          f"{size / 1e6:.1f} MB ({size / max(1, len(names)) / 1e3:.0f} kB per image) -> {shown(out)}")


if __name__ == "__main__":
    main()
