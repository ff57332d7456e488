"""The classic SURF-800 features of Office-Caltech-10 (Gong et al., CVPR 2012 release).

Files (one per domain ``amazon``, ``caltech10``, ``dslr``, ``webcam``)::

    <folder>/surf/<domain>.mat                         fts (N, 800) bag-of-words counts,
                                                       labels (N, 1) in 1..10
    <folder>/surf_imgnames/<Prefix>_SURF_L10_imgs.mat  imgNames (N, 1) cell of strings, row order
                                                       (<Prefix> = Caltech10 for caltech10)

``folder`` is the ``features`` directory (e.g. ``.../office-caltech-10/features``); the names file is
optional. Class order of the labels (1..10): back_pack, bike, calculator, headphones, keyboard,
laptop_computer, monitor, mouse, mug, projector -> labels 0..9 here, with the image-folder names of
:data:`CLASSES` (``back_pack -> backpack``, ``laptop_computer -> laptop``).

Image names map to image files as ``'amazon_back_pack_frame_0001'`` ->
``amazon/backpack/frame_0001.jpg`` and ``'Caltech256_back_pack_003_0001'`` ->
``caltech10/backpack/003_0001.jpg`` (see :func:`image_relpath`).

Preprocessing (:func:`surf_preprocess`), the one in the GFK and JDA authors' demo code: L1-normalise
each row (``fts ./ sum(fts, 2)``, a histogram), then z-score each column within the domain
(``zscore(fts, 1)``: population std, ``ddof=0``).

The 12-task table of the shallow baselines on these features is an experiment, not a reader: it is
``python benchmarks/surf_benchmark.py <features folder>`` (:func:`benchmarks.surf_benchmark.surf_benchmark`).

Example::

    >>> dom = load_surf("/data/office-caltech-10/features", "webcam")     # doctest: +SKIP
    >>> dom.features.shape, dom.labels.max(), dom.image_names[0]          # doctest: +SKIP
    ((295, 800), 9, 'webcam_back_pack_frame_0001')
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.io

__all__ = [
    "CLASSES",
    "DOMAINS",
    "SurfDomain",
    "image_relpath",
    "load_surf",
    "surf_features_for",
    "surf_preprocess",
]

DOMAINS: tuple[str, ...] = ("amazon", "caltech10", "dslr", "webcam")
#: Image-folder class names in label order (label ``k`` here = MATLAB label ``k + 1``).
CLASSES: tuple[str, ...] = (
    "backpack", "bike", "calculator", "headphones", "keyboard",
    "laptop", "monitor", "mouse", "mug", "projector",
)
N_FEATURES = 800
_NAME_PREFIX = {"amazon": "amazon", "caltech10": "Caltech10", "dslr": "dslr", "webcam": "webcam"}
_IMG_DOMAIN_PREFIX = {"amazon": "amazon", "caltech10": "Caltech256", "dslr": "dslr", "webcam": "webcam"}
_NAME_CLASS = {"back_pack": "backpack", "laptop_computer": "laptop"}


@dataclass(frozen=True)
class SurfDomain:
    """One domain's SURF-800 data: ``features (N, 800) float64`` (raw counts), ``labels (N,)`` int
    in 0..9, ``image_names`` (N strings, or empty when the names file is absent), ``domain``."""

    features: np.ndarray
    labels: np.ndarray
    image_names: list[str]
    domain: str = ""


def _check_domain(domain: str) -> str:
    if domain not in DOMAINS:
        raise ValueError(f"domain must be one of {DOMAINS}; got {domain!r}")
    return domain


def _cell_strings(cell: np.ndarray) -> list[str]:
    """Flatten a MATLAB cell array of strings as loaded by scipy.io.loadmat into ``list[str]``."""
    out = []
    for item in np.asarray(cell, dtype=object).ravel():
        a = np.asarray(item).ravel()
        out.append(str(a[0]) if a.size else "")
    return out


def load_surf(folder: str | Path, domain: str, *, require_names: bool = False) -> SurfDomain:
    """Load ``<folder>/surf/<domain>.mat`` (and the image names if present).

    Raises ``ValueError`` (naming ``domain``/``folder``) on an unknown domain, a missing file, or
    a malformed file (wrong keys or shapes, labels outside 1..10, name count != N).
    ``require_names=True`` makes a missing names file an error.
    """
    _check_domain(domain)
    folder = Path(folder)
    path = folder / "surf" / f"{domain}.mat"
    if not path.is_file():
        raise ValueError(f"folder: SURF file {path} not found")
    mat = scipy.io.loadmat(path)
    if "fts" not in mat or "labels" not in mat:
        raise ValueError(f"folder: {path} must contain 'fts' and 'labels'")
    fts = np.asarray(mat["fts"], dtype=np.float64)
    labels = np.asarray(mat["labels"]).ravel()
    if fts.ndim != 2 or fts.shape[1] != N_FEATURES:
        raise ValueError(f"folder: {path} 'fts' must be (N, {N_FEATURES}); got {fts.shape}")
    if labels.shape[0] != fts.shape[0]:
        raise ValueError(f"folder: {path} has {labels.shape[0]} labels for {fts.shape[0]} rows")
    if labels.size and not np.all(np.isin(labels, np.arange(1, len(CLASSES) + 1))):
        raise ValueError(f"folder: {path} labels must be integers in 1..{len(CLASSES)}")
    names: list[str] = []
    npath = folder / "surf_imgnames" / f"{_NAME_PREFIX[domain]}_SURF_L10_imgs.mat"
    if npath.is_file():
        nmat = scipy.io.loadmat(npath)
        if "imgNames" not in nmat:
            raise ValueError(f"folder: {npath} must contain 'imgNames'")
        names = _cell_strings(nmat["imgNames"])
        if len(names) != fts.shape[0]:
            raise ValueError(f"folder: {npath} has {len(names)} names for {fts.shape[0]} rows")
    elif require_names:
        raise ValueError(f"folder: image-name file {npath} not found")
    return SurfDomain(fts, labels.astype(np.int64) - 1, names, domain)


def image_relpath(name: str, domain: str) -> str:
    """Image path relative to the images root for a SURF image name.

    ``image_relpath('amazon_back_pack_frame_0001', 'amazon')`` -> ``'amazon/backpack/frame_0001.jpg'``;
    ``image_relpath('Caltech256_laptop_computer_127_0001', 'caltech10')`` ->
    ``'caltech10/laptop/127_0001.jpg'``. Raises ``ValueError`` (naming ``name``) if it does not parse.
    """
    _check_domain(domain)
    prefix = _IMG_DOMAIN_PREFIX[domain] + "_"
    if not name.startswith(prefix):
        raise ValueError(f"name {name!r} does not start with {prefix!r}")
    rest = name[len(prefix):]
    m = re.fullmatch(r"(?P<cls>[a-z_]+?)_(?P<file>(?:frame_)?\d+(?:_\d+)?)", rest)
    if m is None:
        raise ValueError(f"name {name!r} is not '<domain>_<class>_<file id>'")
    cls = _NAME_CLASS.get(m["cls"], m["cls"])
    if cls not in CLASSES:
        raise ValueError(f"name {name!r}: unknown class {m['cls']!r}")
    return f"{domain}/{cls}/{m['file']}.jpg"


def surf_features_for(folder: str | Path, domain: str, paths: Sequence[str]) -> np.ndarray:
    """SURF-800 rows of ``paths`` (image paths ``<domain>/<class>/<file>.jpg``, e.g. a manifest's),
    in that order, preprocessed with :func:`surf_preprocess` over the domain's rows: ``(len(paths), 800)``.

    Raises ``ValueError`` naming the first image without a SURF row (or a duplicated name).
    """
    dom = load_surf(folder, domain, require_names=True)
    index: dict[str, int] = {}
    for i, name in enumerate(dom.image_names):
        rel = image_relpath(name, domain)
        if rel in index:
            raise ValueError(f"{folder}: image {rel} appears twice in the {domain} SURF names")
        index[rel] = i
    missing = [p for p in paths if p not in index]
    if missing:
        raise ValueError(f"{folder}: no SURF row for {len(missing)} image(s) of {domain}, e.g. {missing[0]}; "
                         "the manifest and the SURF release list different images")
    rows = np.array([index[p] for p in paths], dtype=np.int64)
    return surf_preprocess(dom.features[rows]).astype(np.float32)


def surf_preprocess(X: Any) -> np.ndarray:
    """GFK/JDA normalisation of one domain: L1-normalise rows, then z-score columns.

    ``x_i <- x_i / sum_j x_ij``; then ``x_ij <- (x_ij - mean_j) / std_j`` over the domain's rows
    (population std, ``ddof=0``, like MATLAB ``zscore(X, 1)``). Rows summing to 0 stay 0 before the
    z-score; columns with ``std_j = 0`` become 0 (MATLAB would give NaN). Shape ``(N, D) -> (N, D)``.

    Example: ``surf_preprocess([[1, 3], [2, 2]])`` -> ``[[-1, 1], [1, -1]]``.
    """
    try:
        X = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"X must be a numeric 2-D array; {exc}") from exc
    if X.ndim != 2 or X.shape[0] < 1:
        raise ValueError(f"X must be a non-empty 2-D array (N, D); got shape {X.shape}")
    if not np.all(np.isfinite(X)) or np.any(X < 0):
        raise ValueError("X must hold finite non-negative histogram counts")
    s = X.sum(axis=1, keepdims=True)
    H = X / np.where(s > 0, s, 1.0)
    mu = H.mean(axis=0)
    sd = H.std(axis=0)
    return (H - mu) / np.where(sd > 0, sd, 1.0) * (sd > 0)
