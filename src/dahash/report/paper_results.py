"""Published results of the DAH paper (Venkateswara et al., CVPR 2017), keyed by this project's names.

Transcribed by hand from the paper's text (``shared/paper/dah-cvpr2017.txt``, a text extraction of
the CVPR 2017 PDF) for the comparison report (:mod:`dahash.report.page`):

* **Table 2** -- target recognition accuracy (%), Office (``office31``), VGG-F, d = 64 bits,
  6 transfer tasks x 8 methods (GFK, TCA, CORAL, JDA, DAN, DANN, DAH-e, DAH);
* **Table 3** -- the same for Office-Home (``office_home``), 12 transfer tasks;
* **Table 4** -- mAP @ 64 bits per *target* domain for NoDA, ITQ, KMeans, BA, BDNN, DAH, SuH on
  Amazon and Webcam (Office) and Art, Clipart, Product, Real-World (Office-Home). The paper prints
  mAP as a fraction (0.324); it is stored here as a percentage (32.4), like the accuracies, so that
  both compare directly with the report's percentages.

Names: datasets ``office31`` (domains ``amazon``, ``dslr``, ``webcam``) and ``office_home``
(``Art``, ``Clipart``, ``Product``, ``RealWorld``); backbone ``vggf`` (``VGG-F`` / ``vgg-f`` /
``vgg_f`` are accepted too); methods ``gfk tca coral jda dan dann dah_e dah`` (classification) and
``noda itq kmh ba bdnn dah suh`` (Table 4; the paper's "KMeans" is K-means hashing, ``kmh``).
The paper has no "source only" / "Deep" column in Tables 2-4 ("Deep (VGG-F)" appears only in the
A-distance plot of Fig. 3a), so there is no ``source_only`` entry.

Transcription notes and doubts:

* The text extraction prints each table column by column (a transfer task followed by the eight
  values in the row order ``Expt. GFK TCA CORAL JDA DAN DANN DAH-e DAH``). In Table 3 the row
  labels, the ``Avg.`` column and the ``Rw->Pr`` column are interleaved with the legend of Fig. 5;
  the method order was taken to be the same as Table 2's (the label block reads so).
* Cross-check: for every method, the mean of the transcribed task values matches the printed
  ``Avg.`` within 0.005 (Table 2: largest gap 0.005 for GFK, CORAL and DAH-e; Table 3: 0.005 for
  DAH-e), i.e. rounding of the printed two-decimal values only. The printed averages are kept in
  :data:`ACCURACY_AVERAGE` and checked in ``tests/test_paper_results.py``.
* Table 4 is also extracted column-wise: per method, seven values in the order Amazon, Webcam,
  Art, Clipart, Product, Real-World, Avg. For every method the mean of the six domain values
  matches the printed Avg. within 0.0005 (so the layout reading is consistent). The printed Avg.
  mixes both datasets' domains; it is kept in :data:`MAP_AVERAGE` for the check, and a report
  should not put it beside a single dataset's average.
* Table 4 has no Dslr column: the paper drops it "as it is very similar to Webcam". Some cells
  look surprising but are printed so (e.g. SuH: Product 0.774 > Real-World 0.586, while DAH has
  Real-World 0.533 > Product 0.414); they were transcribed as printed.
* Table 4's source domains (caption): "Art is the source domain for Clipart, Product and
  Real-World and Clipart is the source domain for Art. Similarly, Amazon and Webcam are source
  target pairs." The last sentence is read as Amazon -> Webcam *and* Webcam -> Amazon (Table 4
  has both an Amazon and a Webcam column, so each must be the other's source). Dslr, not in
  Table 4, gets Amazon as its source by the general rule of :func:`table4_sources` (our choice,
  not the paper's). The caption says the sources matter for NoDA and DAH only; ITQ, KMeans, BA,
  BDNN and SuH learn from the target domain alone.
* All numbers are for d = 64 bits and the VGG-F backbone (the paper trains DAH, DAN, DANN on
  VGG-F and gives the shallow methods VGG-F fc7 features; NoDA and SuH are DPSH on VGG-F).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

__all__ = [
    "ACCURACY_AVERAGE",
    "MAP_AVERAGE",
    "PAPER_LABELS",
    "published_accuracy",
    "published_accuracy_average",
    "published_map",
    "table4_sources",
    "table_name",
]

#: our method name -> the paper's column / legend label
PAPER_LABELS: dict[str, str] = {
    "gfk": "GFK", "tca": "TCA", "coral": "CORAL", "jda": "JDA", "dan": "DAN", "dann": "DANN",
    "dah_e": "DAH-e", "dah": "DAH", "noda": "NoDA", "itq": "ITQ", "kmh": "KMeans", "ba": "BA",
    "bdnn": "BDNN", "suh": "SuH", "source_only": "Deep (VGG-F)",
}

_ACC_METHODS = ("gfk", "tca", "coral", "jda", "dan", "dann", "dah_e", "dah")

# one row per transfer task, values in _ACC_METHODS order, exactly as printed
_TABLE2_ROWS: dict[tuple[str, str], tuple[float, ...]] = {
    ("amazon", "dslr"): (48.59, 51.00, 54.42, 59.24, 67.04, 72.89, 66.27, 66.47),
    ("amazon", "webcam"): (52.08, 49.43, 51.70, 58.62, 67.80, 72.70, 66.16, 68.30),
    ("dslr", "amazon"): (41.83, 48.12, 48.26, 51.35, 50.36, 56.25, 55.97, 55.54),
    ("dslr", "webcam"): (89.18, 93.08, 95.97, 96.86, 95.85, 96.48, 94.59, 96.10),
    ("webcam", "amazon"): (49.04, 48.83, 47.27, 52.34, 52.33, 53.20, 53.91, 53.02),
    ("webcam", "dslr"): (93.17, 96.79, 98.59, 97.79, 99.40, 99.40, 96.99, 98.80),
}
_TABLE2_AVG = (62.32, 64.54, 66.04, 69.37, 72.13, 75.15, 72.31, 73.04)

_TABLE3_ROWS: dict[tuple[str, str], tuple[float, ...]] = {
    ("Art", "Clipart"): (21.60, 19.93, 27.10, 25.34, 30.66, 33.33, 29.23, 31.64),
    ("Art", "Product"): (31.72, 32.08, 36.16, 35.98, 42.17, 42.96, 35.71, 40.75),
    ("Art", "RealWorld"): (38.83, 35.71, 44.32, 42.94, 54.13, 54.42, 48.29, 51.73),
    ("Clipart", "Art"): (21.63, 19.00, 26.08, 24.52, 32.83, 32.26, 33.79, 34.69),
    ("Clipart", "Product"): (34.94, 31.36, 40.03, 40.19, 47.59, 49.13, 48.23, 51.93),
    ("Clipart", "RealWorld"): (34.20, 31.74, 40.33, 40.90, 49.78, 49.76, 47.49, 52.79),
    ("Product", "Art"): (24.52, 21.92, 27.77, 25.96, 29.07, 30.49, 29.87, 29.91),
    ("Product", "Clipart"): (25.73, 23.64, 30.54, 32.72, 34.05, 38.14, 38.76, 39.63),
    ("Product", "RealWorld"): (42.92, 42.12, 50.61, 49.25, 56.70, 56.76, 55.63, 60.71),
    ("RealWorld", "Art"): (32.88, 30.74, 38.48, 35.10, 43.58, 44.71, 41.16, 44.99),
    ("RealWorld", "Clipart"): (28.96, 27.15, 36.36, 35.35, 38.25, 42.66, 44.99, 45.13),
    ("RealWorld", "Product"): (50.89, 48.68, 57.11, 55.35, 62.73, 64.65, 59.07, 62.54),
}
_TABLE3_AVG = (32.40, 30.34, 37.91, 36.97, 43.46, 44.94, 42.69, 45.54)

_MAP_METHODS = ("noda", "itq", "kmh", "ba", "bdnn", "dah", "suh")
# Table 4 as printed (fractions): per method Amazon, Webcam, Art, Clipart, Product, Real-World, Avg.
_TABLE4_PRINTED: dict[str, tuple[float, ...]] = {
    "noda": (0.324, 0.511, 0.155, 0.160, 0.239, 0.281, 0.278),
    "itq": (0.465, 0.652, 0.191, 0.195, 0.393, 0.323, 0.370),
    "kmh": (0.403, 0.558, 0.170, 0.178, 0.341, 0.279, 0.322),
    "ba": (0.367, 0.480, 0.156, 0.179, 0.349, 0.273, 0.301),
    "bdnn": (0.491, 0.656, 0.193, 0.206, 0.407, 0.336, 0.382),
    "dah": (0.582, 0.717, 0.302, 0.333, 0.414, 0.533, 0.480),
    "suh": (0.830, 0.939, 0.492, 0.622, 0.774, 0.586, 0.707),
}
_TABLE4_COLUMNS = (("office31", "amazon"), ("office31", "webcam"), ("office_home", "Art"),
                   ("office_home", "Clipart"), ("office_home", "Product"),
                   ("office_home", "RealWorld"))


def _pct(x: float) -> float:
    return round(100.0 * x, 1)  # 0.324 -> 32.4 exactly (no 32.400000000000006)


def _by_method(rows: dict[tuple[str, str], tuple[float, ...]]) -> dict[str, dict[tuple[str, str], float]]:
    return {m: {task: vals[i] for task, vals in rows.items()} for i, m in enumerate(_ACC_METHODS)}


_ACCURACY: dict[str, dict[str, dict[tuple[str, str], float]]] = {
    "office31": _by_method(_TABLE2_ROWS),
    "office_home": _by_method(_TABLE3_ROWS),
}

#: the ``Avg.`` row printed in Tables 2 and 3 (%), per dataset and method
ACCURACY_AVERAGE: dict[str, dict[str, float]] = {
    "office31": dict(zip(_ACC_METHODS, _TABLE2_AVG)),
    "office_home": dict(zip(_ACC_METHODS, _TABLE3_AVG)),
}

_MAP: dict[str, dict[str, dict[str, float]]] = {}
for _m, _vals in _TABLE4_PRINTED.items():
    for (_ds, _dom), _v in zip(_TABLE4_COLUMNS, _vals[:6]):
        _MAP.setdefault(_ds, {}).setdefault(_m, {})[_dom] = _pct(_v)

#: Table 4's printed ``Avg.`` column (%): the mean over all six target domains of BOTH datasets
MAP_AVERAGE: dict[str, float] = {m: _pct(v[6]) for m, v in _TABLE4_PRINTED.items()}

_TABLE_NAMES = {
    ("accuracy", "office31"): "Table 2 (Office, VGG-F, 64 bits)",
    ("accuracy", "office_home"): "Table 3 (Office-Home, VGG-F, 64 bits)",
    ("map", "office31"): "Table 4, Office columns Amazon and Webcam (VGG-F, 64 bits)",
    ("map", "office_home"): "Table 4, Office-Home columns (VGG-F, 64 bits)",
}

# Table 4 caption: target -> source, per dataset
_TABLE4_SOURCES: dict[str, dict[str, str]] = {
    "office_home": {"Clipart": "Art", "Product": "Art", "RealWorld": "Art", "Art": "Clipart"},
    "office31": {"webcam": "amazon", "amazon": "webcam"},
}


def _backbone_key(backbone: str) -> str:
    return str(backbone).lower().replace("-", "").replace("_", "")


def _known(dataset: str, backbone: str) -> bool:
    return dataset in _ACCURACY and _backbone_key(backbone) == "vggf"


def published_accuracy(dataset: str, backbone: str) -> dict[str, dict[tuple[str, str], float]] | None:
    """Table 2 / 3: method -> {(source, target): accuracy %}, or None if the paper has no table.

    A fresh copy each call (callers may modify it). None for any dataset other than ``office31``
    and ``office_home`` and any backbone other than VGG-F.
    """
    return copy.deepcopy(_ACCURACY[dataset]) if _known(dataset, backbone) else None


def published_accuracy_average(dataset: str, backbone: str) -> dict[str, float] | None:
    """The printed ``Avg.`` row of Table 2 / 3 (method -> %), or None (see :func:`published_accuracy`)."""
    return dict(ACCURACY_AVERAGE[dataset]) if _known(dataset, backbone) else None


def published_map(dataset: str, backbone: str) -> dict[str, dict[str, float]] | None:
    """Table 4: method -> {target domain: mAP@64 %}, or None if the paper has no such column.

    ``office31`` has only ``amazon`` and ``webcam`` (no Dslr in the paper).
    """
    return copy.deepcopy(_MAP[dataset]) if _known(dataset, backbone) else None


def table_name(dataset: str, backbone: str, kind: str) -> str | None:
    """Which paper table holds ``kind`` ("accuracy" or "map") for this dataset/backbone, or None."""
    if kind not in ("accuracy", "map"):
        raise ValueError(f"kind must be 'accuracy' or 'map', got {kind!r}")
    return _TABLE_NAMES[(kind, dataset)] if _known(dataset, backbone) else None


def table4_sources(dataset: str, domains: Sequence[str]) -> dict[str, str]:
    """Table 4's protocol: target domain -> the source domain whose task gives that column.

    General rule: ``domains[0]`` is the source for every other domain and ``domains[1]`` the source
    for ``domains[0]``. For the paper's datasets the caption's pairs override it wherever both
    domains are in ``domains``: Office-Home -- Art for Clipart, Product, RealWorld and Clipart for
    Art; Office-31 -- Amazon for Webcam and Webcam for Amazon (Dslr, absent from the paper, follows
    the general rule). Keys follow ``domains``' order; fewer than two domains give ``{}``.

    Raises:
        ValueError: ``domains`` repeats a name.
    """
    doms = [str(d) for d in domains]
    if len(set(doms)) != len(doms):
        raise ValueError(f"domains {doms} repeat a name")
    if len(doms) < 2:
        return {}
    out = {d: doms[0] for d in doms[1:]}
    out[doms[0]] = doms[1]
    for tgt, src in _TABLE4_SOURCES.get(dataset, {}).items():
        if tgt in out and src in out:
            out[tgt] = src
    return {d: out[d] for d in doms}
