"""VGG-16 at full size (issue 12): ``python benchmarks/bench_vgg16.py [--batch 8] [--device cpu]``.

The real ``vgg16-397923af.pth`` is not needed: a full-size state dict with torchvision's keys and random
weights is written to a temporary folder (553 MB) and read back with :func:`dahash.nn.backbones.vgg16.load_vgg16`
(the path the real file takes: ``torch.load(weights_only=True)``, key/shape checks, meta-device build). Prints:

1. the load time of that file, and the head-mode fc7 output shape at 224 x 224;
2. head-mode extraction speed (ONE forward of ``--batch`` images, no warm-up: VGG-16 is slow on a CPU) beside
   EfficientNet-Lite0's on the same batch in the same run (the ratio is the figure to keep; absolute numbers
   depend on the machine's load).

Not a test.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from dahash.nn.backbones.efficientnet_lite import EfficientNetLite0  # noqa: E402
from dahash.nn.backbones.vgg16 import VGG16, VGG16Fc7, load_vgg16  # noqa: E402


def timed_forward(module: torch.nn.Module, x: torch.Tensor) -> tuple[float, torch.Tensor]:
    """Seconds of one ``module.features(x)`` under inference mode, and its output."""
    with torch.inference_mode():
        t0 = time.perf_counter()
        out = module.features(x)
        return time.perf_counter() - t0, out


def main(batch: int = 8, device: str = "cpu") -> dict[str, float]:
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "vgg16-random.pth"
        torch.save(VGG16().state_dict(), path)
        size_mb = path.stat().st_size / 1e6
        t0 = time.perf_counter()
        net = load_vgg16(path)
        load_s = time.perf_counter() - t0
    vgg = VGG16Fc7(net).eval().to(device)
    eff = EfficientNetLite0().eval().to(device)
    x = torch.randn(batch, 3, 224, 224, device=device).contiguous(memory_format=torch.channels_last)
    eff_s, eff_out = timed_forward(eff, x)
    vgg_s, vgg_out = timed_forward(vgg, x)
    fig = {"file_mb": size_mb, "load_s": load_s, "vgg16_img_per_s": batch / vgg_s,
           "efficientnet_img_per_s": batch / eff_s, "ratio": vgg_s / eff_s}
    print(f"full-size state dict: {size_mb:.0f} MB, load_vgg16 {load_s:.1f} s")
    print(f"fc7 output {tuple(vgg_out.shape)}, EfficientNet-Lite0 output {tuple(eff_out.shape)}")
    print(f"one forward of {batch} images at 224 on {device}: VGG-16 fc7 {vgg_s:.2f} s ({fig['vgg16_img_per_s']:.2f} "
          f"img/s), EfficientNet-Lite0 {eff_s:.2f} s ({fig['efficientnet_img_per_s']:.1f} img/s): "
          f"VGG-16 {fig['ratio']:.1f}x slower")
    return fig


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    main(a.batch, a.device)
