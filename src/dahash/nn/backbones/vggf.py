"""VGG-F (Chatfield et al., BMVC 2014) converted from MatConvNet's ``imagenet-vgg-f.mat``.

The torch network is built from the layer list stored in the file (no hard-coded shapes), operation by
operation with MatConvNet's semantics:

* ``conv``: cross-correlation ``y[o,i,j] = b[o] + sum_{c,u,v} F[u,v,c,o] x[c, s*i+u-t, s*j+v-l]`` with the
  file's filters ``F`` stored H x W x Cin x Cout (-> torch ``(Cout, Cin, H, W)``), stride ``s`` and zero
  padding ``pad = [top bottom left right]`` (asymmetric pads go through ``F.pad``).
* ``pool``: max or average over ``pool = [h w]`` windows with stride and ``[top bottom left right]``
  padding; padded cells never win a max and are *not counted* in an average (MatConvNet divides by the
  number of in-image cells of the window). Output size ``floor((H + t + b - h) / s) + 1``.
* ``lrn`` / ``normalize`` with ``param = [N kappa alpha beta]``:
  ``y_k = x_k / (kappa + alpha * sum_{q in Q(k)} x_q^2)^beta``,
  ``Q(k) = [k - floor((N-1)/2), k + ceil((N-1)/2)]`` clipped to the channels. ``torch.nn.LocalResponseNorm``
  uses ``alpha / N`` times the sum instead, so MatConvNet's ``alpha`` corresponds to torch's ``N * alpha``
  (and for even N the two windows differ by one channel); :class:`MatConvNetLRN` implements the formula
  above directly.
* ``relu`` (with ``leak``), ``dropout`` (identity at test time, skipped), ``softmax``/``softmaxloss``
  (dropped: :meth:`VGGF.classify` returns logits).

The network is split into a convolutional ``trunk`` (conv1 ... pool5) and a fully connected ``head``
(fc6, relu6, fc7, relu7, fc8) at the first convolution whose filter covers its whole input with no padding
(VGG-F's fc6: 6 x 6 x 256 x 4096 on pool5's 6 x 6 x 256 map at imageSize 224). Those convolutions become
``nn.Linear`` layers acting on torch's (C, H, W)-flattened input:
``W_lin[o, c*H*W + u*W + v] = F[u, v, c, o]``, so ``Linear(9216, 4096)`` on the flattened pool5 equals the
6 x 6 convolution exactly.

Two .mat layouts are read: the newer one (``layers{i}.weights = {filters, biases}``, ``meta.normalization``,
``meta.classes``) and the older one (``layers{i}.filters`` / ``.biases``, top-level ``normalization`` and
``classes``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io
import torch
import torch.nn.functional as F
from scipy.io.matlab import mat_struct
from torch import nn

from dahash.nn.preprocess_image import ImageTransform, make_transform

VGGF_URL = "https://www.vlfeat.org/matconvnet/models/imagenet-vgg-f.mat"

_MISSING = object()


# --------------------------------------------------------------------------------------------------
# MatConvNet operations as torch modules
# --------------------------------------------------------------------------------------------------


def _torch_pad(pad: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """MatConvNet ``[top bottom left right]`` -> ``F.pad``'s ``(left, right, top, bottom)``."""
    t, b, l, r = pad
    return (l, r, t, b)


class MatConvNetConv(nn.Conv2d):
    """``vl_nnconv``: zero padding ``[top bottom left right]`` (may be asymmetric), then cross-correlation.

    Input (N, Cin, H, W) -> output (N, Cout, floor((H+t+b-kh_eff)/sy)+1, floor((W+l+r-kw_eff)/sx)+1) with
    ``k_eff = (k-1)*dilation + 1``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int],
                 stride: tuple[int, int], pad: tuple[int, int, int, int],
                 dilation: tuple[int, int] = (1, 1), groups: int = 1) -> None:
        t, b, l, r = pad
        symmetric = t == b and l == r
        super().__init__(in_channels, out_channels, kernel_size, stride=stride,
                         padding=(t, l) if symmetric else 0, dilation=dilation, groups=groups, bias=True)
        self.mcn_pad = tuple(pad)
        self._extra_pad = None if symmetric else _torch_pad(pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._extra_pad is not None:
            x = F.pad(x, self._extra_pad)
        return super().forward(x)


class MatConvNetPool(nn.Module):
    """``vl_nnpool``: max or average pooling with ``[top bottom left right]`` padding.

    Max: padding is ``-inf`` (never selected). Average: ``y = sum(window ∩ image) / |window ∩ image|``
    (padding neither summed nor counted), as in MatConvNet's CPU/GPU kernels.
    """

    def __init__(self, method: str, size: tuple[int, int], stride: tuple[int, int],
                 pad: tuple[int, int, int, int]) -> None:
        super().__init__()
        if method not in ("max", "avg"):
            raise ValueError(f"pool method must be 'max' or 'avg', got {method!r}")
        self.method, self.size, self.stride, self.mcn_pad = method, tuple(size), tuple(stride), tuple(pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = _torch_pad(self.mcn_pad)
        if self.method == "max":
            if any(p):
                x = F.pad(x, p, value=float("-inf"))
            return F.max_pool2d(x, self.size, self.stride)
        if not any(p):
            return F.avg_pool2d(x, self.size, self.stride)
        total = F.avg_pool2d(F.pad(x, p), self.size, self.stride, divisor_override=1)
        ones = F.pad(torch.ones_like(x[:1, :1]), p)
        count = F.avg_pool2d(ones, self.size, self.stride, divisor_override=1)
        return total / count

    def extra_repr(self) -> str:
        return f"method={self.method}, size={self.size}, stride={self.stride}, pad={self.mcn_pad}"


class MatConvNetLRN(nn.Module):
    """``vl_nnnormalize`` with ``param = [N kappa alpha beta]`` on (N, C, H, W) tensors.

    ``y[:, k] = x[:, k] / (kappa + alpha * sum_{q=k-floor((N-1)/2)}^{k+ceil((N-1)/2)} x[:, q]^2)^beta``
    (q clipped to 0..C-1). Equals ``nn.LocalResponseNorm(size=N, alpha=N*alpha, beta=beta, k=kappa)`` for
    odd N.
    """

    def __init__(self, depth: int, kappa: float, alpha: float, beta: float) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"LRN window N must be >= 1, got {depth}")
        self.depth, self.kappa, self.alpha, self.beta = int(depth), float(kappa), float(alpha), float(beta)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        before = (self.depth - 1) // 2
        after = self.depth - 1 - before
        sq = F.pad(x.pow(2).unsqueeze(1), (0, 0, 0, 0, before, after))  # (N, 1, C+N-1, H, W)
        window_sum = F.avg_pool3d(sq, (self.depth, 1, 1), stride=1, divisor_override=1).squeeze(1)
        return x / (self.kappa + self.alpha * window_sum).pow(self.beta)

    def extra_repr(self) -> str:
        return f"N={self.depth}, kappa={self.kappa}, alpha={self.alpha}, beta={self.beta}"


# --------------------------------------------------------------------------------------------------
# reading the .mat file
# --------------------------------------------------------------------------------------------------


def _unwrap(value: Any) -> Any:
    """Strip the 1x1 object arrays that ``loadmat(squeeze_me=False)`` wraps around structs and cells."""
    while isinstance(value, np.ndarray) and value.dtype == object and value.size == 1:
        value = value.reshape(-1)[0]
    return value


def _field(struct: Any, name: str, default: Any = _MISSING) -> Any:
    struct = _unwrap(struct)
    if isinstance(struct, mat_struct) and name in struct._fieldnames:
        return _unwrap(getattr(struct, name))
    if default is _MISSING:
        raise KeyError(name)
    return default


def _has(struct: Any, name: str) -> bool:
    struct = _unwrap(struct)
    return isinstance(struct, mat_struct) and name in struct._fieldnames


def _str(value: Any) -> str:
    value = _unwrap(value)
    if isinstance(value, str):
        return value
    if isinstance(value, np.ndarray):
        if value.size == 0:
            return ""
        if value.dtype.kind == "U":
            return "".join(str(v) for v in value.reshape(-1))
    return str(value)


def _numbers(value: Any, n: int, what: str) -> tuple[float, ...]:
    """A MATLAB scalar or vector as ``n`` numbers (a scalar is repeated)."""
    arr = np.asarray(_unwrap(value), dtype=np.float64).reshape(-1)
    if arr.size == 1:
        arr = np.repeat(arr, n)
    if arr.size != n:
        raise ValueError(f"{what}: expected 1 or {n} numbers, got {arr.size}")
    return tuple(float(v) for v in arr)


def _ints(value: Any, n: int, what: str) -> tuple[int, ...]:
    return tuple(int(round(v)) for v in _numbers(value, n, what))


def _pad4(value: Any, what: str) -> tuple[int, int, int, int]:
    """MatConvNet pad: scalar, [vertical horizontal] or [top bottom left right]."""
    arr = np.asarray(_unwrap(value), dtype=np.float64).reshape(-1)
    if arr.size == 2:
        arr = np.array([arr[0], arr[0], arr[1], arr[1]])
    t, b, l, r = _ints(arr, 4, what)
    return (t, b, l, r)


def _filters_and_biases(layer: Any, name: str) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, Cin, Cout) float32 filters and (Cout,) biases, from ``weights`` (new) or ``filters`` (old)."""
    if _has(layer, "weights"):
        cell = np.asarray(getattr(_unwrap(layer), "weights"), dtype=object).reshape(-1)
        filters = cell[0]
        biases = cell[1] if cell.size > 1 else np.zeros(0)
    elif _has(layer, "filters"):
        filters = _field(layer, "filters")
        biases = _field(layer, "biases", np.zeros(0))
    else:
        raise ValueError(f"conv layer {name!r} has neither 'weights' nor 'filters'")
    filters = np.asarray(filters, dtype=np.float32)
    if filters.ndim > 4 or filters.ndim < 2:
        raise ValueError(f"conv layer {name!r}: filters must be H x W x Cin x Cout, got {filters.shape}")
    filters = filters.reshape(filters.shape + (1,) * (4 - filters.ndim))  # MATLAB drops trailing 1s
    biases = np.asarray(biases, dtype=np.float32).reshape(-1)
    if biases.size == 0:
        biases = np.zeros(filters.shape[3], dtype=np.float32)
    if biases.size != filters.shape[3]:
        raise ValueError(f"conv layer {name!r}: {biases.size} biases for {filters.shape[3]} filters")
    return filters, biases


@dataclass(frozen=True)
class MatConvNetNormalization:
    """The ``normalization`` struct of a MatConvNet model.

    Attributes:
        average_image: per-channel mean (3,) or per-pixel mean image (H, W, 3), RGB, 0..255 scale.
        image_size: network input (height, width), e.g. (224, 224).
        interpolation: MATLAB ``imresize`` method named by the file (we always resize bilinearly).
        keep_aspect: resize the shorter side (True) or both sides (False) before cropping.
        border: (vertical, horizontal) extra pixels added to image_size before the centre crop; defaults
            to (32, 32), MatConvNet's ImageNet setting, when the file has no ``border`` field.
    """

    average_image: np.ndarray
    image_size: tuple[int, int]
    interpolation: str = "bilinear"
    keep_aspect: bool = True
    border: tuple[int, int] = (32, 32)


def _read_normalization(norm: Any, path: Path) -> MatConvNetNormalization:
    if not _has(norm, "averageImage") or not _has(norm, "imageSize"):
        raise ValueError(f"{path}: 'normalization' needs fields averageImage and imageSize")
    avg = np.asarray(_field(norm, "averageImage"), dtype=np.float32)
    if avg.size == 3:
        avg = avg.reshape(3)
    elif avg.ndim != 3 or avg.shape[2] != 3:
        raise ValueError(f"{path}: averageImage must be 3 numbers or an H x W x 3 image, got {avg.shape}")
    size = np.asarray(_field(norm, "imageSize"), dtype=np.float64).reshape(-1)
    if size.size < 2:
        raise ValueError(f"{path}: imageSize must be [H W] or [H W 3], got {size}")
    border = _ints(_field(norm, "border", np.array([32, 32])), 2, f"{path}: border")
    return MatConvNetNormalization(
        average_image=avg,
        image_size=(int(size[0]), int(size[1])),
        interpolation=_str(_field(norm, "interpolation", "bilinear")) or "bilinear",
        keep_aspect=bool(np.asarray(_field(norm, "keepAspect", True)).reshape(-1)[0]),
        border=(border[0], border[1]),
    )


def _read_class_names(classes: Any) -> list[str]:
    if classes is None:
        return []
    field = "description" if _has(classes, "description") else "name" if _has(classes, "name") else None
    if field is None:
        return []
    cells = np.asarray(getattr(_unwrap(classes), field), dtype=object).reshape(-1)
    return [_str(c) for c in cells]


# --------------------------------------------------------------------------------------------------
# the network
# --------------------------------------------------------------------------------------------------


class VGGF(nn.Module):
    """A MatConvNet VGG-F-style network: ``trunk`` (conv1..pool5) + ``head`` (fc6, relu6, fc7, relu7, fc8).

    Input: (N, 3, H, W) float32 RGB images with ``normalization.average_image`` subtracted on the 0..255
    scale (see :func:`vggf_transform`), H = W = ``normalization.image_size``.

    Attributes:
        trunk: ``nn.Sequential`` named after the file's layers (conv1, relu1, norm1, pool1, ...).
        head: ``nn.Sequential`` of ``nn.Linear`` / ReLU layers named after the file's layers.
        normalization: the file's :class:`MatConvNetNormalization`.
        class_names: ``meta.classes.description`` (empty when the file has none).
        feature_dim: size of :meth:`features`' output, C*H*W of pool5 (9216 = 256*6*6 for VGG-F).
    """

    def __init__(self, trunk: nn.Sequential, head: nn.Sequential, normalization: MatConvNetNormalization,
                 feature_dim: int, class_names: list[str] | None = None) -> None:
        super().__init__()
        self.trunk = trunk
        self.head = head
        self.normalization = normalization
        self.feature_dim = int(feature_dim)
        self.class_names = list(class_names or [])

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """pool5 flattened in (C, H, W) order: (N, 3, H, W) -> (N, feature_dim)."""
        out = self.trunk(x).flatten(1)
        if out.shape[1] != self.feature_dim:
            raise ValueError(
                f"VGG-F pool5 has {out.shape[1]} values for input {tuple(x.shape[1:])}, expected "
                f"{self.feature_dim}: feed {self.normalization.image_size} crops (use vggf_transform)")
        return out

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the full network (softmax not applied): (N, 3, H, W) -> (N, num_classes)."""
        return self.head(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(x)


def _build(layers: list[Any], normalization: MatConvNetNormalization, path: Path
           ) -> tuple[nn.Sequential, nn.Sequential, int]:
    """Turn the file's layer list into (trunk, head, feature_dim), tracking the (C, H, W) shape."""
    c, h, w = 3, normalization.image_size[0], normalization.image_size[1]
    trunk: list[tuple[str, nn.Module]] = []
    head: list[tuple[str, nn.Module]] = []
    feature_dim: int | None = None
    in_head = False
    for i, layer in enumerate(layers):
        name = _str(_field(layer, "name", "")) or f"layer{i + 1}"
        kind = _str(_field(layer, "type", "")).lower()
        where = f"{path}: layer {i + 1} ({name!r}, type {kind!r})"
        if kind == "conv":
            filters, biases = _filters_and_biases(layer, name)
            kh, kw, cin, cout = filters.shape
            stride = _ints(_field(layer, "stride", 1), 2, f"{where} stride")
            pad = _pad4(_field(layer, "pad", 0), f"{where} pad")
            dil = _ints(_field(layer, "dilate", 1), 2, f"{where} dilate")
            fully_connected = (kh, kw) == (h, w) and not any(pad) and dil == (1, 1)
            if fully_connected and not in_head:
                in_head, feature_dim = True, c * h * w
            if in_head:
                if not fully_connected:
                    raise ValueError(f"{where}: after the first fully connected layer every conv must "
                                     f"cover its {h}x{w} input without padding; got {kh}x{kw} pad {pad}")
                if cin * kh * kw != c * h * w:
                    raise ValueError(f"{where}: filters expect {cin} input channels, got {c}")
                lin = nn.Linear(cin * kh * kw, cout)
                with torch.no_grad():
                    # F[u, v, c, o] -> W[o, c*kh*kw + u*kw + v]: matches torch's (C, H, W) flattening
                    lin.weight.copy_(torch.from_numpy(filters.transpose(3, 2, 0, 1).reshape(cout, -1)))
                    lin.bias.copy_(torch.from_numpy(biases))
                head.append((name, lin))
                c, h, w = cout, 1, 1
                continue
            if c % cin != 0:
                raise ValueError(f"{where}: {c} input channels is not a multiple of the filters' {cin}")
            conv = MatConvNetConv(c, cout, (kh, kw), stride, pad, dil, groups=c // cin)
            with torch.no_grad():
                conv.weight.copy_(torch.from_numpy(filters.transpose(3, 2, 0, 1)))
                conv.bias.copy_(torch.from_numpy(biases))
            trunk.append((name, conv))
            t, b, l, r = pad
            h = (h + t + b - ((kh - 1) * dil[0] + 1)) // stride[0] + 1
            w = (w + l + r - ((kw - 1) * dil[1] + 1)) // stride[1] + 1
            c = cout
        elif kind == "relu":
            leak_arr = np.asarray(_field(layer, "leak", 0.0), dtype=np.float64).reshape(-1)
            leak = float(leak_arr[0]) if leak_arr.size else 0.0
            (head if in_head else trunk).append((name, nn.LeakyReLU(leak) if leak > 0 else nn.ReLU()))
        elif kind in ("lrn", "normalize"):
            if in_head:
                raise ValueError(f"{where}: LRN after the fully connected layers is not supported")
            n, kappa, alpha, beta = _numbers(_field(layer, "param"), 4, f"{where} param")
            trunk.append((name, MatConvNetLRN(int(n), kappa, alpha, beta)))
        elif kind == "pool":
            if in_head:
                raise ValueError(f"{where}: pooling after the fully connected layers is not supported")
            size = _ints(_field(layer, "pool"), 2, f"{where} pool")
            stride = _ints(_field(layer, "stride", 1), 2, f"{where} stride")
            pad = _pad4(_field(layer, "pad", 0), f"{where} pad")
            method = _str(_field(layer, "method", "max")).lower()
            trunk.append((name, MatConvNetPool(method, size, stride, pad)))
            t, b, l, r = pad
            h = (h + t + b - size[0]) // stride[0] + 1
            w = (w + l + r - size[1]) // stride[1] + 1
        elif kind in ("dropout", "softmax", "softmaxloss", "loss"):
            continue  # identity at test time / classify() returns logits
        else:
            raise ValueError(f"{where}: unsupported layer type (supported: conv, relu, lrn/normalize, "
                             f"pool, dropout, softmax)")
        if h < 1 or w < 1:
            raise ValueError(f"{where}: the {normalization.image_size} input shrinks to nothing here")
    if feature_dim is None:
        raise ValueError(f"{path}: no fully connected layer (a conv covering its whole input) was found")
    return _sequential(trunk), _sequential(head), feature_dim


def _sequential(named: list[tuple[str, nn.Module]]) -> nn.Sequential:
    """``nn.Sequential`` keyed by the file's layer names (made unique and free of dots)."""
    seq = nn.Sequential()
    for name, module in named:
        key = name.replace(".", "_") or "layer"
        while key in seq._modules:
            key += "_"
        seq.add_module(key, module)
    return seq


def load_vggf(path: str | Path) -> VGGF:
    """Read a MatConvNet ``imagenet-vgg-f.mat`` (either layout) into a :class:`VGGF` on the CPU, eval mode.

    Raises:
        FileNotFoundError: ``path`` does not exist (run the download stage, or download
            ``VGGF_URL`` by hand and put it at ``path``).
        ValueError: the file is not a MatConvNet SimpleNN model (the message names the field/layer).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"VGG-F weights not found at {path}. Run the pipeline's download stage, or download "
            f"{VGGF_URL} by hand and put it at that path (or pass the path where you saved it).")
    try:
        mat = scipy.io.loadmat(str(path), struct_as_record=False, squeeze_me=False)
    except NotImplementedError as exc:  # MATLAB v7.3 (HDF5) files
        raise ValueError(f"{path}: MATLAB v7.3 files are not supported; re-save it with "
                         f"save(..., '-v7') or use the original MatConvNet file ({exc})") from exc
    if "layers" not in mat:
        raise ValueError(f"{path}: no 'layers' variable; is this a MatConvNet SimpleNN model?")
    layers = list(np.asarray(mat["layers"], dtype=object).reshape(-1))
    meta = _unwrap(mat["meta"]) if "meta" in mat else None
    if meta is not None and _has(meta, "normalization"):
        norm = _field(meta, "normalization")
    elif "normalization" in mat:
        norm = _unwrap(mat["normalization"])
    else:
        raise ValueError(f"{path}: neither meta.normalization nor normalization is present")
    if meta is not None and _has(meta, "classes"):
        classes = _field(meta, "classes")
    else:
        classes = _unwrap(mat["classes"]) if "classes" in mat else None
    normalization = _read_normalization(norm, path)
    trunk, head, feature_dim = _build(layers, normalization, path)
    model = VGGF(trunk, head, normalization, feature_dim, _read_class_names(classes))
    return model.eval()


def vggf_head_init(model: VGGF) -> dict[str, torch.Tensor]:
    """Pretrained fc6/fc7 parameters for the trainable head (copies, detached).

    Returns:
        {"fc6.weight": (D6, feature_dim), "fc6.bias": (D6,), "fc7.weight": (D7, D6), "fc7.bias": (D7,)};
        for VGG-F D6 = D7 = 4096 and feature_dim = 9216. They are the first two ``nn.Linear`` layers of
        ``model.head`` whatever the file named them.
    """
    linears = [m for m in model.head if isinstance(m, nn.Linear)]
    if len(linears) < 2:
        raise ValueError(f"the VGG-F head has {len(linears)} fully connected layers, need fc6 and fc7")
    out: dict[str, torch.Tensor] = {}
    for key, lin in zip(("fc6", "fc7"), linears[:2]):
        out[f"{key}.weight"] = lin.weight.detach().clone()
        out[f"{key}.bias"] = lin.bias.detach().clone()
    return out


def vggf_transform(normalization: MatConvNetNormalization) -> ImageTransform:
    """The file's own test-time preprocessing (MatConvNet ``cnn_imagenet_get_batch``, centre crop).

    Shorter side -> ``imageSize + border`` (224 + 32 = 256; both sides when ``keepAspect`` is false),
    bilinear; centre crop ``imageSize``; subtract ``averageImage`` (per-pixel image resized to the crop,
    or per-channel mean) on 0..255 RGB; no division (std 1).
    """
    ih, iw = normalization.image_size
    if ih != iw:
        raise ValueError(f"only square imageSize is supported, got {normalization.image_size}")
    return make_transform(ih, normalization.average_image, 1.0, resize=ih + normalization.border[0],
                          keep_aspect=normalization.keep_aspect)
