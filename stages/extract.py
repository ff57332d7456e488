"""Stage `extract --domain D`: backbone features of every usable image of one domain.

Writes data/features/<dataset>/<backbone>/<D>/features.npy (N x F float32; VGG-F: pool5, 9216-d;
EfficientNet-Lite0: pooled 1280-d; SURF-800: the GFK release's 800-d
bag of words, L1 + z-score per domain) and meta.json, streaming images in batches with a progress bar.
With ``train.mode: finetune`` the training stage reads the images itself: F = 0 and only the list of
images (meta.json) is written.
"""

from __future__ import annotations

import argparse

from stages.common import ROOT, StageError, atomic_path, load_params, main_wrapper, resolve_device, write_json
from stages.features import domain_rows, features_dir
from stages.weights import weights_file


@main_wrapper
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--domain", required=True)
    args = ap.parse_args(argv)
    params = load_params()
    dataset, name = params["data"]["dataset"], params["backbone"]["name"]
    import numpy as np  # heavy imports after argument parsing: `--help` stays fast

    from dahash.backbones import build_backbone
    from dahash.extract import extract_features

    rows = domain_rows(dataset, args.domain)
    raw = ROOT / "data" / "raw" / dataset
    device = resolve_device(params["extract"]["device"])
    if name == "surf800":  # the classic SURF-800 features: looked up by image name, L1 + z-score per domain
        from dahash.surf import surf_features_for

        try:
            feats = surf_features_for(weights_file(name), args.domain, rows["path"].tolist())
        except ValueError as exc:
            raise StageError(str(exc)) from exc
    elif params["train"]["mode"] == "finetune":  # training reads the images; only the image list is recorded
        feats = np.zeros((len(rows), 0), np.float32)
    else:
        feats = extract_features(
            [raw / p for p in rows["path"]],
            build_backbone(name, weights=weights_file(name)),
            batch_size=params["extract"]["batch_size"],
            device=device,
            num_workers=params["extract"]["num_workers"],
            desc=f"{args.domain} ({name})",
        )
    out = features_dir(dataset, name, args.domain)
    with atomic_path(out) as tmp:
        tmp.mkdir()
        np.save(tmp / "features.npy", feats.astype(np.float32, copy=False))
        write_json(
            tmp / "meta.json",
            {"dataset": dataset, "domain": args.domain, "backbone": name, "shape": list(feats.shape),
             "device": device, "paths": rows["path"].tolist()},
        )
    print(f"{args.domain}: {feats.shape[0]} x {feats.shape[1]} features -> {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
