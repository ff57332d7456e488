"""Stage `extract --domain D`: backbone features of every usable image of one domain.

Writes data/features/<dataset>/<backbone>/<D>/features.npy (N x F float32; VGG-F: pool5, 9216-d;
EfficientNet-Lite0: pooled 1280-d; VGG-16: fc7, 4096-d, with torchvision's ImageNet mean/std, shorter side 256,
centre 224; SURF-800: the GFK release's 800-d
bag of words, L1 + z-score per domain) and meta.json, streaming images in batches with a progress bar.
Images go through the backbone's input recipe (:mod:`dahash.nn.recipes`): VGG-F subtracts the mean of all
the dataset's images (data/moments, the authors' rgbMean) from the full central square, bicubic at 224.
Features are extracted whatever ``train.mode`` is (the comparison methods, the analysis and any head-mode
method read them). A network trained from scratch (smallcnn, digits) has no features before training:
F = 0 and only the list of images (meta.json) is written.

``extract.num_workers`` (a number or ``auto``: cores - 2 on a GPU, 0 on the CPU) DataLoader processes decode the
images; ``extract.draft`` (0 = full decode, exact; r >= 1: JPEG draft decoding at >= r x the side the recipe
needs, see :mod:`dahash.nn.extract` and benchmarks/README.md for the measured feature difference). The rows are
streamed into features.npy batch by batch, so memory does not grow with the number of images.
"""

from __future__ import annotations


from stages.common import domain_args, StageError, atomic_path, load_params, main_wrapper, write_json
from stages.features import domain_rows
from stages.gpu import resolve_device
from stages.paths import features_dir, raw_dir, shown, weights_file


@main_wrapper
def main(argv: list[str] | None = None) -> None:
    args = domain_args(argv, __doc__)
    params = load_params()
    dataset, name = params["data"]["dataset"], params["backbone"]["name"]
    import numpy as np  # heavy imports after argument parsing: `--help` stays fast

    from dahash.nn.backbones import build_backbone
    from dahash.nn.extract import auto_workers, extract_features

    rows = domain_rows(dataset, args.domain)
    raw = raw_dir(dataset)
    ep = params["extract"]
    device = resolve_device(ep["device"])
    out = features_dir(dataset, name, args.domain)
    meta = {"dataset": dataset, "domain": args.domain, "backbone": name, "device": device,
            "paths": rows["path"].tolist()}
    with atomic_path(out) as tmp:
        tmp.mkdir()
        if name == "surf800":  # the classic SURF-800 features: looked up by image name, L1 + z-score per domain
            from dahash.data.surf import surf_features_for

            try:
                feats = surf_features_for(weights_file(name), args.domain, rows["path"].tolist())
            except ValueError as exc:
                raise StageError(str(exc)) from exc
            np.save(tmp / "features.npy", feats.astype(np.float32, copy=False))
        elif name == "smallcnn":  # trained from scratch: nothing to extract; training reads the images
            feats = np.zeros((len(rows), 0), np.float32)
            np.save(tmp / "features.npy", feats)
        else:
            backbone = build_backbone(name, weights=weights_file(name))
            if name == "vggf":  # the authors' preprocessing: rgbMean of the dataset's images, full square, bicubic
                from dahash.nn.recipes import input_recipe
                from stages.moments import load_moments

                moments = load_moments(dataset, name, params["data"]["domains"])
                backbone.transform = input_recipe(name, moments, dataset=dataset).eval_transform()  # EXIF as the authors
            # streamed into the .npy file batch by batch: memory does not grow with the number of images
            feats = extract_features(
                [raw / p for p in rows["path"]],
                backbone,
                batch_size=ep["batch_size"],
                device=device,
                num_workers=auto_workers(ep["num_workers"], device),
                draft=ep.get("draft") or None,
                out=tmp / "features.npy",
                desc=f"{args.domain} ({name})",
            )
        write_json(tmp / "meta.json", {**meta, "shape": list(feats.shape), "draft": ep.get("draft") or None})
    print(f"{args.domain}: {feats.shape[0]} x {feats.shape[1]} features -> {shown(out)}")


if __name__ == "__main__":
    main()
