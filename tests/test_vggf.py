"""VGG-F conversion from MatConvNet .mat files, checked against a plain numpy implementation of
MatConvNet's operators (vl_nnconv, vl_nnpool, vl_nnnormalize) on small synthetic files of both layouts."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image
from torch import nn

from dahash.nn.backbones import BACKBONE_NAMES, build_backbone
from dahash.nn.backbones.vggf import MatConvNetLRN, load_vggf, vggf_head_init, vggf_transform
from dahash.nn.extract import extract_features

IMAGE_SIZE = 24

# (name, type, params) in MatConvNet terms; filters are H x W x Cin x Cout, pads [top bottom left right].
ARCH = [
    ("conv1", "conv", dict(shape=(5, 5, 3, 8), stride=2, pad=[0, 0, 0, 0], scale=0.01)),  # 24 -> 10
    ("relu1", "relu", {}),
    ("norm1", "lrn", dict(param=[5, 1.0, 0.1, 0.75])),
    ("pool1", "pool", dict(method="max", pool=[3, 3], stride=2, pad=[0, 1, 0, 1])),  # 10 -> 5
    ("conv2", "conv", dict(shape=(3, 3, 8, 6), stride=1, pad=[1, 1, 1, 1], scale=0.3)),  # 5 -> 5
    ("relu2", "relu", {}),
    ("norm2", "lrn", dict(param=[4, 2.0, 0.05, 0.5])),  # even window: Q(k) = [k-1, k+2]
    ("pool2", "pool", dict(method="avg", pool=[2, 2], stride=1, pad=[0, 1, 0, 1])),  # 5 -> 5
    ("conv3", "conv", dict(shape=(3, 3, 6, 6), stride=1, pad=[1, 0, 1, 0], scale=0.3)),  # 5 -> 4
    ("relu3", "relu", {}),
    ("pool5", "pool", dict(method="max", pool=[3, 3], stride=2, pad=[0, 1, 0, 1])),  # 4 -> 2
    ("fc6", "conv", dict(shape=(2, 2, 6, 10), stride=1, pad=[0, 0, 0, 0], scale=0.3)),
    ("relu6", "relu", {}),
    ("fc7", "conv", dict(shape=(1, 1, 10, 10), stride=1, pad=0, scale=0.3)),
    ("relu7", "relu", {}),
    ("fc8", "conv", dict(shape=(1, 1, 10, 7), stride=1, pad=0, scale=0.3)),
    ("prob", "softmax", {}),
]
POOL5_DIM = 6 * 2 * 2


def _random_params(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return {name: ((rng.standard_normal(p["shape"]) * p["scale"]).astype(np.float32),
                   (rng.standard_normal(p["shape"][3]) * 0.1).astype(np.float32))
            for name, kind, p in ARCH if kind == "conv"}


def _cell(items: list) -> np.ndarray:
    cell = np.empty((1, len(items)), dtype=object)
    for i, item in enumerate(items):
        cell[0, i] = item
    return cell


def write_synthetic_mat(path: Path, params: dict, *, layout: str, average_image: np.ndarray) -> Path:
    """A small MatConvNet SimpleNN file: ``layout='new'`` (weights cell, meta.*) or ``'old'``."""
    layers = []
    for name, kind, p in ARCH:
        layer: dict = {"name": name, "type": kind}
        if kind == "conv":
            filters, biases = params[name]
            if layout == "new":
                layer["weights"] = _cell([filters, biases.reshape(1, -1)])
            else:
                layer["filters"], layer["biases"] = filters, biases.reshape(1, -1)
            layer["stride"] = np.array([p["stride"], p["stride"]], dtype=float)
            layer["pad"] = np.array(p["pad"], dtype=float)
        elif kind == "pool":
            layer.update(method=p["method"], pool=np.array(p["pool"], float),
                         stride=np.array([p["stride"]] * 2, float), pad=np.array(p["pad"], float))
        elif kind == "lrn":
            layer["param"] = np.array(p["param"], dtype=float)
            if layout == "old":
                layer["type"] = "normalize"
        elif kind == "relu":
            layer["leak"] = 0.0
        layers.append(layer)
    classes = {"name": _cell([f"n{i:08d}" for i in range(7)]),
               "description": _cell([f"class {i}" for i in range(7)])}
    normalization = {"averageImage": average_image, "imageSize": np.array([IMAGE_SIZE, IMAGE_SIZE, 3.0]),
                     "interpolation": "bilinear", "keepAspect": True, "border": np.array([8.0, 8.0])}
    if layout == "new":
        content = {"layers": _cell(layers), "meta": {"normalization": normalization, "classes": classes}}
    else:
        del normalization["border"], normalization["keepAspect"]
        content = {"layers": _cell(layers), "normalization": normalization, "classes": classes}
    scipy.io.savemat(str(path), content)
    return path


# ---- independent numpy reference of the MatConvNet operators (H x W x C layout, float64) ----

def np_conv(x: np.ndarray, f: np.ndarray, b: np.ndarray, stride: int, pad) -> np.ndarray:
    t, bo, l, r = (pad,) * 4 if np.isscalar(pad) else pad
    xp = np.pad(x, ((t, bo), (l, r), (0, 0)))
    kh, kw = f.shape[:2]
    ho, wo = (xp.shape[0] - kh) // stride + 1, (xp.shape[1] - kw) // stride + 1
    out = np.empty((ho, wo, f.shape[3]))
    for i in range(ho):
        for j in range(wo):
            win = xp[i * stride:i * stride + kh, j * stride:j * stride + kw, :]
            out[i, j] = np.einsum("hwc,hwco->o", win, f.astype(np.float64)) + b
    return out


def np_pool(x: np.ndarray, size, stride, pad, method: str) -> np.ndarray:
    t, bo, l, r = pad
    sy, sx = (stride, stride) if np.isscalar(stride) else stride
    h, w, _ = x.shape
    ho, wo = (h + t + bo - size[0]) // sy + 1, (w + l + r - size[1]) // sx + 1
    out = np.empty((ho, wo, x.shape[2]))
    for i in range(ho):
        for j in range(wo):
            y1, x1 = i * sy - t, j * sx - l
            y2, x2 = min(y1 + size[0], h), min(x1 + size[1], w)
            win = x[max(y1, 0):y2, max(x1, 0):x2, :]
            out[i, j] = win.max(axis=(0, 1)) if method == "max" else win.mean(axis=(0, 1))
    return out


def np_lrn(x: np.ndarray, n: int, kappa: float, alpha: float, beta: float) -> np.ndarray:
    d = x.shape[2]
    out = np.empty_like(x)
    for k in range(d):
        lo, hi = max(0, k - (n - 1) // 2), min(d - 1, k + math.ceil((n - 1) / 2))
        out[..., k] = x[..., k] / (kappa + alpha * (x[..., lo:hi + 1] ** 2).sum(-1)) ** beta
    return out


def np_forward(x_hwc: np.ndarray, params: dict) -> tuple[np.ndarray, np.ndarray]:
    """(pool5 flattened in torch's C,H,W order, fc8 logits) for one H x W x 3 input."""
    x = x_hwc.astype(np.float64)
    pool5 = None
    for name, kind, p in ARCH:
        if kind == "conv":
            x = np_conv(x, *params[name], p["stride"], p["pad"])
        elif kind == "relu":
            x = np.maximum(x, 0)
        elif kind == "lrn":
            x = np_lrn(x, int(p["param"][0]), *p["param"][1:])
        elif kind == "pool":
            x = np_pool(x, p["pool"], p["stride"], p["pad"], p["method"])
        if name == "pool5":
            pool5 = x.transpose(2, 0, 1).reshape(-1)
    return pool5, x.reshape(-1)


@pytest.fixture(scope="module")
def params() -> dict:
    return _random_params(0)


@pytest.fixture(scope="module")
def new_mat(tmp_path_factory, params) -> Path:
    return write_synthetic_mat(tmp_path_factory.mktemp("vggf") / "new.mat", params, layout="new",
                               average_image=np.array([[[120.0, 110.0, 100.0]]]))


@pytest.fixture(scope="module")
def old_mat(tmp_path_factory, params) -> Path:
    avg = np.random.default_rng(1).uniform(90, 130, size=(30, 30, 3)).astype(np.float32)
    return write_synthetic_mat(tmp_path_factory.mktemp("vggf") / "old.mat", params, layout="old",
                               average_image=avg)


def test_forward_matches_numpy_reference(new_mat, params):
    model = load_vggf(new_mat)
    x = np.random.default_rng(2).uniform(-128, 128, size=(3, 3, IMAGE_SIZE, IMAGE_SIZE)).astype(np.float32)
    with torch.no_grad():
        feats = model.features(torch.from_numpy(x)).numpy()
        logits = model.classify(torch.from_numpy(x)).numpy()
    assert feats.shape == (3, POOL5_DIM) and model.feature_dim == POOL5_DIM
    assert logits.shape == (3, 7)
    for i in range(3):
        ref_pool5, ref_logits = np_forward(x[i].transpose(1, 2, 0), params)
        np.testing.assert_allclose(feats[i], ref_pool5, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(logits[i], ref_logits, rtol=1e-5, atol=1e-5)
    assert np.abs(logits).max() > 0.05  # the comparison is not vacuous


def test_layer_structure_and_metadata(new_mat):
    model = load_vggf(new_mat)
    assert list(model.trunk._modules) == ["conv1", "relu1", "norm1", "pool1", "conv2", "relu2", "norm2",
                                          "pool2", "conv3", "relu3", "pool5"]
    assert list(model.head._modules) == ["fc6", "relu6", "fc7", "relu7", "fc8"]
    assert model.head.fc6.weight.shape == (10, POOL5_DIM)
    assert model.normalization.image_size == (IMAGE_SIZE, IMAGE_SIZE)
    assert model.normalization.border == (8, 8) and model.normalization.keep_aspect
    np.testing.assert_allclose(model.normalization.average_image, [120, 110, 100])
    assert model.class_names == [f"class {i}" for i in range(7)]
    assert not model.training


def test_old_layout_gives_the_same_network(new_mat, old_mat):
    new, old = load_vggf(new_mat), load_vggf(old_mat)
    for (kn, vn), (ko, vo) in zip(new.state_dict().items(), old.state_dict().items()):
        assert kn == ko and torch.equal(vn, vo)
    assert old.normalization.average_image.shape == (30, 30, 3)
    assert old.normalization.border == (32, 32)  # default when the file has none
    x = torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE) * 50
    with torch.no_grad():
        torch.testing.assert_close(new.classify(x), old.classify(x))


def test_fc6_linear_equals_the_6x6_convolution(new_mat, params):
    """Linear on torch's (C,H,W) flattening == MatConvNet conv over the whole pool5 map."""
    model = load_vggf(new_mat)
    pool5 = np.random.default_rng(3).standard_normal((2, 2, 6))  # H x W x C
    ref = np_conv(pool5, *params["fc6"], 1, 0).reshape(-1)
    got = model.head.fc6(torch.from_numpy(pool5.transpose(2, 0, 1).reshape(1, -1)).float())
    np.testing.assert_allclose(got.detach().numpy()[0], ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method", ["max", "avg"])
def test_pool_on_signed_input_matches_numpy(method):
    """Padded cells never win a max (even over negative values) and are not counted in an average."""
    from dahash.nn.backbones.vggf import MatConvNetPool
    x = np.random.default_rng(5).standard_normal((1, 2, 7, 6)) - 3.0  # mostly negative
    pool = MatConvNetPool(method, (3, 2), (2, 1), (1, 2, 0, 1))
    got = pool(torch.from_numpy(x))[0].numpy().transpose(1, 2, 0)
    ref = np_pool(x[0].transpose(1, 2, 0), (3, 2), (2, 1), (1, 2, 0, 1), method)
    assert got.shape == (4, 6, 2)
    np.testing.assert_allclose(got, ref, rtol=1e-12)


def test_lrn_hand_computed():
    # one pixel, channels x = [1, 2, 3, 4], N = 3 (window k-1..k+1), kappa 2, alpha 0.5, beta 0.75
    lrn = MatConvNetLRN(3, kappa=2.0, alpha=0.5, beta=0.75)
    y = lrn(torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64).view(1, 4, 1, 1)).view(-1)
    expected = [1 / (2 + 0.5 * (1 + 4)) ** 0.75, 2 / (2 + 0.5 * (1 + 4 + 9)) ** 0.75,
                3 / (2 + 0.5 * (4 + 9 + 16)) ** 0.75, 4 / (2 + 0.5 * (9 + 16)) ** 0.75]
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-12)
    # even N = 2: MatConvNet's window is [k, k+1] (torch's would be [k-1, k])
    y2 = MatConvNetLRN(2, kappa=1.0, alpha=1.0, beta=1.0)(
        torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64).view(1, 3, 1, 1)).view(-1)
    np.testing.assert_allclose(y2.numpy(), [1 / (1 + 1 + 4), 2 / (1 + 4 + 9), 3 / (1 + 9)])


def test_lrn_equals_torch_localresponsenorm_with_alpha_times_n():
    x = torch.randn(2, 9, 4, 5, dtype=torch.float64) * 3
    ours = MatConvNetLRN(5, kappa=1.0, alpha=2e-5 * 1000, beta=0.75)(x)
    theirs = nn.LocalResponseNorm(5, alpha=5 * 2e-5 * 1000, beta=0.75, k=1.0)(x)
    torch.testing.assert_close(ours, theirs)
    ref = np.stack([np_lrn(xi.numpy().transpose(1, 2, 0), 5, 1.0, 0.02, 0.75) for xi in x])
    np.testing.assert_allclose(ours.numpy(), ref.transpose(0, 3, 1, 2), rtol=1e-12)


def test_head_init_is_a_copy_of_fc6_fc7(new_mat):
    model = load_vggf(new_mat)
    init = vggf_head_init(model)
    assert set(init) == {"fc6.weight", "fc6.bias", "fc7.weight", "fc7.bias"}
    assert init["fc6.weight"].shape == (10, POOL5_DIM) and init["fc7.weight"].shape == (10, 10)
    assert torch.equal(init["fc7.bias"], model.head.fc7.bias)
    init["fc6.weight"].zero_()
    assert model.head.fc6.weight.abs().sum() > 0


def test_transform_uses_the_file_normalization(new_mat, old_mat):
    img = Image.new("RGB", (40, 32), (200, 150, 100))
    x = vggf_transform(load_vggf(new_mat).normalization)(img)
    assert x.shape == (3, IMAGE_SIZE, IMAGE_SIZE) and x.dtype == torch.float32
    np.testing.assert_allclose(x[:, 5, 7].numpy(), [80, 40, 0], atol=1e-4)
    old = load_vggf(old_mat).normalization  # per-pixel 30x30 mean image, resized to the 24x24 crop
    y = vggf_transform(old)(img).numpy()
    assert y.shape == (3, IMAGE_SIZE, IMAGE_SIZE)
    mean_img = np.array([200, 150, 100], np.float32) - y.transpose(1, 2, 0)
    assert 90 <= mean_img.min() and mean_img.max() <= 130 and mean_img.std() > 1


def test_missing_file_names_the_path(tmp_path):
    missing = tmp_path / "nowhere" / "imagenet-vgg-f.mat"
    with pytest.raises(FileNotFoundError, match="imagenet-vgg-f.mat") as info:
        load_vggf(missing)
    assert str(missing) in str(info.value) and "download" in str(info.value)


def test_unsupported_layer_type_is_named(tmp_path, params):
    path = write_synthetic_mat(tmp_path / "bad.mat", params, layout="new",
                               average_image=np.array([1.0, 2.0, 3.0]))
    mat = scipy.io.loadmat(str(path))
    mat["layers"][0, 1]["type"][0, 0] = np.array(["bnorm"])
    scipy.io.savemat(str(path), {k: v for k, v in mat.items() if not k.startswith("__")})
    with pytest.raises(ValueError, match="relu1.*bnorm"):
        load_vggf(path)


def test_build_backbone_vggf_and_extraction(new_mat, tmp_path):
    backbone = build_backbone("vggf", weights=new_mat)
    assert backbone.name == "vggf" and backbone.feature_dim == POOL5_DIM
    assert set(backbone.head_init) == {"fc6.weight", "fc6.bias", "fc7.weight", "fc7.bias"}
    rng = np.random.default_rng(4)
    paths = []
    for i, size in enumerate([(40, 30), (30, 45), (24, 24)]):
        p = tmp_path / f"img{i}.jpg"
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(p)
        paths.append(p)
    feats = extract_features(paths, backbone, batch_size=2, progress=False)
    assert feats.shape == (3, POOL5_DIM) and feats.dtype == np.float32
    from dahash.data.images import load_rgb
    with torch.no_grad():
        one = backbone.module.features(backbone.transform(load_rgb(paths[1]))[None]).numpy()[0]
    np.testing.assert_allclose(feats[1], one, rtol=1e-5, atol=1e-6)


def test_build_backbone_rejects_unknown_names_and_missing_weights():
    with pytest.raises(ValueError, match="vggf, efficientnet_lite0"):
        build_backbone("resnet50")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="imagenet-vgg-f.mat"):
        build_backbone("vggf")
    assert BACKBONE_NAMES == ("vggf", "efficientnet_lite0", "vgg16")
