"""Faithful stand-ins for the paper's inputs that cannot be downloaded here (test and benchmark helper).

* :func:`write_vggf_mat`: a MatConvNet ``imagenet-vgg-f.mat`` with the REAL file's layer list (names,
  types, filter shapes up to a width factor, strides, pads, LRN ``param``, pools, ``meta.normalization``
  and ``meta.classes`` fields, the newer ``weights`` layout), random weights. ``width=1`` gives the real
  sizes (61 M parameters, ~245 MB); tests use a small width.
* :func:`write_office_home_zip`: ``OfficeHomeDataset_10072016.zip`` laid out as the real archive
  (``OfficeHomeDataset_10072016/{Art,Clipart,Product,Real World}/<65 classes>/*.jpg``, the space in
  "Real World" included) with a few small images per class whose content depends on the class (so the
  pipeline has something to learn) and on the domain (a shift).

Used by tests/test_paper_standin.py and benchmarks/gpu_check.sh (which puts tests/ on ``sys.path``).
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import scipy.io
from PIL import Image

# imagenet-vgg-f.mat (MatConvNet beta): (name, type, options). conv filters H x W x Cin x Cout with the
# channel counts of the real file; pads [top bottom left right]; LRN param [N kappa alpha beta].
VGGF_LAYERS: list[tuple[str, str, dict]] = [
    ("conv1", "conv", dict(shape=(11, 11, 3, 64), stride=4, pad=[0, 0, 0, 0])),
    ("relu1", "relu", {}),
    ("norm1", "lrn", dict(param=[5, 1, 0.0001 / 5, 0.75])),
    ("pool1", "pool", dict(method="max", pool=[3, 3], stride=2, pad=[0, 1, 0, 1])),
    ("conv2", "conv", dict(shape=(5, 5, 64, 256), stride=1, pad=[2, 2, 2, 2])),
    ("relu2", "relu", {}),
    ("norm2", "lrn", dict(param=[5, 1, 0.0001 / 5, 0.75])),
    ("pool2", "pool", dict(method="max", pool=[3, 3], stride=2, pad=[0, 0, 0, 0])),
    ("conv3", "conv", dict(shape=(3, 3, 256, 256), stride=1, pad=[1, 1, 1, 1])),
    ("relu3", "relu", {}),
    ("conv4", "conv", dict(shape=(3, 3, 256, 256), stride=1, pad=[1, 1, 1, 1])),
    ("relu4", "relu", {}),
    ("conv5", "conv", dict(shape=(3, 3, 256, 256), stride=1, pad=[1, 1, 1, 1])),
    ("relu5", "relu", {}),
    ("pool5", "pool", dict(method="max", pool=[3, 3], stride=2, pad=[0, 0, 0, 0])),
    ("fc6", "conv", dict(shape=(6, 6, 256, 4096), stride=1, pad=[0, 0, 0, 0])),
    ("relu6", "relu", {}),
    ("fc7", "conv", dict(shape=(1, 1, 4096, 4096), stride=1, pad=[0, 0, 0, 0])),
    ("relu7", "relu", {}),
    ("fc8", "conv", dict(shape=(1, 1, 4096, 1000), stride=1, pad=[0, 0, 0, 0])),
    ("prob", "softmax", {}),
]

OFFICE_HOME_DOMAIN_DIRS = {"Art": "Art", "Clipart": "Clipart", "Product": "Product", "RealWorld": "Real World"}


def _cell(items: list) -> np.ndarray:
    cell = np.empty((1, len(items)), dtype=object)
    for i, item in enumerate(items):
        cell[0, i] = item
    return cell


def _scaled(shape: tuple[int, int, int, int], name: str, width: float) -> tuple[int, int, int, int]:
    """Channel counts times ``width`` (at least 2), except the 3 input colours and fc8's 1000 classes."""
    h, w, cin, cout = shape
    s = lambda c: max(2, int(round(c * width)))  # noqa: E731
    return h, w, (cin if name == "conv1" else s(cin)), (cout if name == "fc8" else s(cout))


def vggf_fc_width(width: float) -> int:
    """fc6/fc7 width of :func:`write_vggf_mat` with ``width`` (4096 for the real file)."""
    return _scaled((1, 1, 4096, 4096), "fc7", width)[3]


def write_vggf_mat(path: Path, *, width: float = 1.0, seed: int = 0) -> Path:
    """Write a VGG-F .mat with the real layer list and ``width`` x the real channel counts.

    Weights: He-scaled normal filters (so activations neither vanish nor explode through 8 layers),
    small biases; ``meta.normalization`` as the real file (imageSize 224 x 224 x 3, a 224 x 224 x 3
    averageImage, keepAspect, border [32 32], interpolation bicubic, cropSize 0.875).
    """
    rng = np.random.default_rng(seed)
    layers = []
    for name, kind, opts in VGGF_LAYERS:
        layer: dict = {"name": name, "type": kind, "precious": False}
        if kind == "conv":
            h, w, cin, cout = _scaled(opts["shape"], name, width)
            filters = (rng.standard_normal((h, w, cin, cout)) * np.sqrt(2.0 / (h * w * cin))).astype(np.float32)
            biases = (rng.standard_normal((1, cout)) * 0.01).astype(np.float32)
            layer.update(weights=_cell([filters, biases]), size=np.array([h, w, cin, cout], float),
                         stride=np.array([opts["stride"]] * 2, float), pad=np.array(opts["pad"], float),
                         dilate=np.array([1.0, 1.0]), opts=_cell([]))
        elif kind == "pool":
            layer.update(method=opts["method"], pool=np.array(opts["pool"], float),
                         stride=np.array([opts["stride"]] * 2, float), pad=np.array(opts["pad"], float),
                         opts=_cell([]))
        elif kind == "lrn":
            layer["param"] = np.array(opts["param"], float)
        elif kind == "relu":
            layer["leak"] = 0.0
        layers.append(layer)
    average = np.broadcast_to(np.array([122.8, 114.8, 101.8], np.float32), (224, 224, 3)).copy()
    normalization = {"imageSize": np.array([224.0, 224.0, 3.0]), "averageImage": average, "keepAspect": True,
                     "border": np.array([32.0, 32.0]), "interpolation": "bicubic", "cropSize": 0.875}
    classes = {"name": _cell([f"n{i:08d}" for i in range(1000)]),
               "description": _cell([f"class {i}" for i in range(1000)])}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(path), {"layers": _cell(layers), "meta": {"normalization": normalization,
                                                                    "classes": classes}})
    return path


def _image(cls: int, domain: int, i: int, size: tuple[int, int]) -> Image.Image:
    """A small JPEG-able RGB image: a class-specific stripe pattern and colour, domain-specific background."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    freq = 0.15 + 0.05 * (cls % 13)
    angle = (cls // 13) * np.pi / 5
    wave = np.sin(freq * (np.cos(angle) * xx + np.sin(angle) * yy) + 0.7 * i)
    base = np.array([40 + 45 * domain, 90, 160 - 30 * domain], np.float64)
    colour = np.array([(37 * cls) % 200 + 30, (91 * cls) % 200 + 30, (53 * cls) % 200 + 30], np.float64)
    img = base + wave[..., None] * colour[None, None] * 0.5
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))


def write_office_home_zip(path: Path, classes: list[str], *, per_class: int = 2,
                          size: tuple[int, int] = (40, 32)) -> Path:
    """``OfficeHomeDataset_10072016.zip`` in the real archive's layout with ``per_class`` JPEGs per class
    and domain (``classes``: the 65 real class names, from :data:`dahash.data.datasets.OFFICE_HOME`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for d_i, domain_dir in enumerate(OFFICE_HOME_DOMAIN_DIRS.values()):
            for c_i, cls in enumerate(classes):
                for i in range(per_class):
                    buf = io.BytesIO()
                    _image(c_i, d_i, i, size).save(buf, format="JPEG", quality=92)
                    zf.writestr(f"OfficeHomeDataset_10072016/{domain_dir}/{cls}/{i + 1:05d}.jpg", buf.getvalue())
        zf.writestr("OfficeHomeDataset_10072016/ImageInfo.csv", "stand-in\n")
    return path
