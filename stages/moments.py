"""Stage `moments`: per-domain pixel moments of every usable image, for the input recipes.

Writes data/moments/<dataset>/<backbone>.json: for each domain the per-channel mean, the covariance, the
pixel and image counts of the images as the network sees them without jitter (the full central square
resized to the backbone's input size, :func:`dahash.nn.recipes.moments_geometry`; the authors' getImageStats).
Labels are not read. Consumers merge domains exactly (:func:`dahash.nn.augment.merge_moments`): head-mode
extraction of VGG-F subtracts the mean over all domains; fine-tuning uses its task's source + target.
Backbones without image input (surf800) get a file that says so.
"""

from __future__ import annotations

import argparse
import os

from stages.common import StageError, load_params, main_wrapper, write_json
from stages.paths import moments_path, raw_dir, shown
from stages.features import domain_rows


def load_moments(dataset: str, backbone: str, domains: list[str]):  # -> dahash.nn.augment.ChannelMoments
    """The merged moments of ``domains`` (exact union) from the moments stage's file."""
    import json

    from dahash.nn.augment import merge_moments, moments_from_dict

    path = moments_path(dataset, backbone)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise StageError(f"{path}: missing; run the moments stage (dvc repro moments)") from exc
    missing = [d for d in domains if d not in data.get("domains", {})]
    if missing:
        raise StageError(f"{path}: no moments for domain(s) {missing}; re-run the moments stage (dvc repro moments)")
    try:
        return merge_moments(moments_from_dict(data["domains"][d]) for d in domains)
    except ValueError as exc:
        raise StageError(f"{path}: {exc}; re-run the moments stage (dvc repro moments)") from exc


@main_wrapper
def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(description=__doc__).parse_args(argv)
    params = load_params()
    dataset, backbone = params["data"]["dataset"], params["backbone"]["name"]
    out = moments_path(dataset, backbone)
    record: dict = {"dataset": dataset, "backbone": backbone, "domains": {}}
    from dahash.nn.recipes import RECIPE_BACKBONES

    if backbone in RECIPE_BACKBONES:
        from dahash.nn.augment import channel_moments, moments_to_dict
        from dahash.nn.recipes import exif_orientation, moments_geometry

        size, channels, interpolation = moments_geometry(backbone)
        exif = exif_orientation(backbone, dataset)  # the recipe's EXIF policy (VGG-F: ignored, as the authors)
        record.update(size=size, channels=channels, interpolation=interpolation, crop=1.0, exif=exif)
        raw = raw_dir(dataset)
        threads = max(1, min(8, os.cpu_count() or 1))
        for domain in params["data"]["domains"]:
            paths = [raw / p for p in domain_rows(dataset, domain)["path"]]
            m = channel_moments(paths, size, channels=channels, crop_fraction=1.0, interpolation=interpolation,
                                num_threads=threads, exif=exif, progress=f"moments {domain}")
            record["domains"][domain] = moments_to_dict(m)
            print(f"{domain}: {m.images} images, mean {[round(float(v), 2) for v in m.mean]}")
    else:
        record["note"] = f"backbone {backbone!r} takes no images: no moments"
    write_json(out, record)  # atomic
    print(f"moments -> {shown(out)}")


if __name__ == "__main__":
    main()
