"""Published "mAP" of the cross-domain hashing papers since PWCF, on their protocol (``eval.protocol: pwcf``).

Protocol of these papers: 10 % of the target images, drawn at random, are the queries and are left out of
training; the remaining 90 % (unlabelled) and all labelled source images are the training set; for
cross-domain retrieval the database is the source domain. Values in percent.

**Which metric each row is** (:data:`METRIC`): the papers all print "MAP", but PWCF's own code computes
``area_RP`` (fuxianghuang1/PWCF ``demo.m``: ``recall_precision`` then ``area_RP``; the area under the
Hamming-radius precision-recall curve pooled over all query-database pairs, :mod:`dahash.eval.curves`),
not the per-query ranking mAP of ``calcMap.m``. On poor codes the two differ by points. So each row carries
the metric its paper's code or text shows, and the report puts a published value only beside our value of
the same metric (``map`` = ranking mAP, ``area_rp`` = area_RP):

* PWCF -- ``area_rp``: its released code (``demo.m``, ``utils/recall_precision.m``, ``utils/area_RP.m``).
* PEACE -- ``map``: the authors' released code, WillDreamer/PEACE ("The official code of 'Towards Effective
  Domain Adaptive Retrieval'", commit c4ddd95, 2024; its README says "the final version is coming soon"),
  ``evaluate.py``: per-query AP over the Hamming ranking of the database (``topk`` 50,000: the whole source),
  averaged over the queries; queries = a random 10 % of the target, database = the source
  (``officehome.py``, task ``cross``). Two small differences from ours: a query with no relevant item adds 0
  to the mean (ours excludes it; on Office every class is in the source, so none is empty) and ties follow
  ``torch.argsort`` (not stable) where ours keep database order.
* IDEA, COUPLE, CPH, VPDS -- ``unknown``: their code was not found in the stored public repositories here, and
  their text names "mean average precision (MAP)" without a formula (VPDS section 4.1: "4 standard metrics:
  mean average precision (MAP), precision-recall curve, Top-N precision ... Top-N recall"), which fits either.
  They are listed in the report but not put beside ours. (Zeyu77/PEACE in the index is a different,
  test-time PEACE.)

Source transcribed (the only table found, see below): **VPDS** -- J. Li, Z. Li, S. Lü, "Domain Adaptive Hashing
Retrieval via VLM Assisted Pseudo-Labeling and Dual Space Adaptation", NeurIPS 2025, **Table 1**: "MAP (%) of
cross-domain retrieval tasks with 64-bit hash codes on Office-Home and Office-31", rows PWCF, PEACE, IDEA,
COUPLE, CPH, VPDS (and others not kept here), columns Office-Home A->R, R->A, C->R, R->C, P->R, R->P, Office-31
A->D, A->W, D->A, D->W, W->A, W->D, Avg. Read from a text extraction of the paper held in the search tool's
public-repository index (file id 53628218170; its repository is not named by the index). VPDS states that
"other results are obtained directly from their original papers" except CPH on Digits (marked there; not used
here), i.e. the rows are the original papers' numbers as VPDS reports them:

* PWCF -- F. Huang, L. Zhang, Y. Yang, X. Zhou, "Probability Weighted Compact Feature for Domain Adaptive
  Retrieval", CVPR 2020;
* PEACE -- H. Wang et al., "Toward Effective Domain Adaptive Retrieval", IEEE TIP 32 (2023) 1285-1299 (VPDS's
  reference [49], cited there as PEACE);
* IDEA -- H. Wang et al., "IDEA: An Invariant Perspective for Efficient Domain Adaptive Image Retrieval",
  NeurIPS 2023;
* CPH -- H. Cui et al., "Effective Comparative Prototype Hashing for Unsupervised Domain Adaptation", AAAI 2024;
* COUPLE -- J. Luo et al., "Cross-Domain Diffusion with Progressive Alignment for Efficient Adaptive
  Retrieval", IEEE TIP 34 (2025);
* VPDS -- the paper above.

Checks: for every row the mean of the 12 task values matches the printed Avg. within 0.005 (rounding only;
largest gap 0.004, PWCF), kept in :data:`PRINTED_AVERAGE` and checked in ``tests/test_pwcf_results.py``. The
printed Avg. mixes both datasets' tasks: do not put it beside one dataset's mean.

NOT transcribed (no table found offline): the 16-, 32- and 128-bit Office-Home / Office-31 results (VPDS's
Appendix A.1 is not in the text found; the original papers' tables were not found); precision@k and
precision within Hamming radius 2 of any paper. **PSCA** (T. Hu et al., "Prototype-Based Semantic Consistency
Alignment for Domain Adaptive Retrieval", AAAI 2026, arXiv 2512.04524: Office-Home and Office-31 at
16/32/64/128 bits): only its abstract and third-party summaries are in the stored pages (the arXiv HTML page
is stored from its beginning only, without the tables), so no PSCA number is transcribed: still open. VPDS's Table 2 (Digits MNIST <-> USPS, 16-128 bits) was found
but is not transcribed (its backbone for digits is not stated; our digits preset uses a small CNN at 10 bits).

Backbone: VPDS says "the feature encoder F is implemented using the VGG backbone"; the PWCF line of work uses
VGG-16 (PSCA, AAAI 2026: "4,096-d deep features ... extracted from a pre-trained VGG-16 model (Huang et al.
2020)"), so the values are keyed to backbone ``vgg16``: a run on another backbone is not compared with them.
"""

from __future__ import annotations

import copy

__all__ = ["METHODS", "METRIC", "METRIC_LABELS", "METRIC_SOURCES", "NOT_FOUND", "PRINTED_AVERAGE", "RECORD_KEY", "SOURCE",
           "TABLE_BITS", "published_bits", "published_pwcf_map"]

#: our key -> the label the papers print
METHODS: dict[str, str] = {"pwcf": "PWCF", "peace": "PEACE", "idea": "IDEA", "couple": "COUPLE", "cph": "CPH",
                           "vpds": "VPDS"}

#: our key -> the metric its published numbers are: "area_rp" (PWCF's), "map" (ranking mAP) or "unknown"
METRIC: dict[str, str] = {"pwcf": "area_rp", "peace": "map", "idea": "unknown", "couple": "unknown",
                          "cph": "unknown", "vpds": "unknown"}

#: our key -> where its metric was read (shown in the report)
METRIC_SOURCES: dict[str, str] = {
    "pwcf": "fuxianghuang1/PWCF demo.m calls recall_precision.m then area_RP.m",
    "peace": "WillDreamer/PEACE evaluate.py: per-query AP over the Hamming ranking of the whole source, averaged "
             "(an empty query counts 0; unstable tie order)",
    **{m: "code not found here; the paper's text says 'MAP' without a formula"
       for m in ("idea", "couple", "cph", "vpds")},
}

#: metric -> how the report names it
METRIC_LABELS: dict[str, str] = {
    "map": "ranking mAP (per-query AP over the full Hamming ranking, averaged; the authors' calcMap.m)",
    "area_rp": "area_RP (PWCF's area under the Hamming-radius precision-recall curve, pooled over all "
               "query-database pairs)",
    "unknown": "metric unknown",
}

#: metric -> the key of our metrics records holding the same metric (none for "unknown")
RECORD_KEY: dict[str, str] = {"map": "map", "area_rp": "area_rp"}

#: where the numbers come from (shown in the report)
SOURCE = ("VPDS (Li et al., NeurIPS 2025), Table 1: \"MAP (%)\" of cross-domain retrieval, 64 bits, "
          "as reported there from the original papers")

#: published tables looked for and not found offline (shown in the report: still open)
NOT_FOUND: tuple[str, ...] = (
    "PSCA (Hu et al., AAAI 2026, arXiv 2512.04524): Office-Home and Office-31 at 16/32/64/128 bits -- only its "
    "abstract and summaries are in the stored pages, not its tables",
    "the 16-, 32- and 128-bit Office-Home / Office-31 tables of VPDS (its Appendix A.1) and of the original papers",
)

#: the code lengths the transcribed table covers
TABLE_BITS: tuple[int, ...] = (64,)

_BACKBONE = "vgg16"
_COLUMNS = (("office_home", "Art", "RealWorld"), ("office_home", "RealWorld", "Art"),
            ("office_home", "Clipart", "RealWorld"), ("office_home", "RealWorld", "Clipart"),
            ("office_home", "Product", "RealWorld"), ("office_home", "RealWorld", "Product"),
            ("office31", "amazon", "dslr"), ("office31", "amazon", "webcam"), ("office31", "dslr", "amazon"),
            ("office31", "dslr", "webcam"), ("office31", "webcam", "amazon"), ("office31", "webcam", "dslr"))

# VPDS Table 1, 64 bits, exactly as printed: 12 tasks in _COLUMNS order, then Avg.
_TABLE1_64: dict[str, tuple[float, ...]] = {
    "pwcf": (34.57, 28.95, 24.22, 18.42, 34.03, 34.44, 39.78, 34.86, 35.12, 72.91, 35.01, 67.94, 38.35),
    "peace": (45.97, 42.68, 38.72, 28.36, 53.04, 54.39, 46.69, 48.89, 46.91, 83.18, 46.95, 78.82, 51.22),
    "idea": (51.19, 49.64, 45.71, 32.77, 59.18, 61.84, 48.70, 54.43, 53.53, 88.69, 53.71, 84.97, 57.03),
    "couple": (54.14, 54.35, 49.24, 41.39, 63.94, 64.29, 50.27, 59.32, 56.04, 88.90, 56.35, 85.26, 60.29),
    "cph": (71.18, 63.28, 58.65, 42.84, 71.27, 74.77, 68.37, 60.61, 52.84, 95.88, 60.14, 99.90, 68.31),
    "vpds": (72.54, 63.36, 63.58, 41.95, 75.17, 81.80, 87.22, 91.40, 65.88, 98.91, 64.88, 100.0, 75.56),
}

#: the printed Avg. column (mean over all 12 tasks of both datasets), per method
PRINTED_AVERAGE: dict[str, float] = {m: v[12] for m, v in _TABLE1_64.items()}

# dataset -> bits -> method -> (source, target) -> mAP %
_MAP: dict[str, dict[int, dict[str, dict[tuple[str, str], float]]]] = {}
for _m, _vals in _TABLE1_64.items():
    for (_ds, _src, _tgt), _v in zip(_COLUMNS, _vals[:12]):
        _MAP.setdefault(_ds, {}).setdefault(64, {}).setdefault(_m, {})[(_src, _tgt)] = _v


def _backbone_key(backbone: str) -> str:
    return str(backbone).lower().replace("-", "").replace("_", "")


def published_bits(dataset: str, backbone: str) -> tuple[int, ...]:
    """The code lengths with published values for this dataset and backbone (``()`` when none)."""
    if _backbone_key(backbone) != _BACKBONE or dataset not in _MAP:
        return ()
    return tuple(sorted(_MAP[dataset]))


def published_pwcf_map(dataset: str, backbone: str, bits: int, metric: str | None = None
                       ) -> dict[str, dict[tuple[str, str], float]] | None:
    """method -> {(source, target): value %} at ``bits`` on the pwcf protocol, or None without a transcribed table.

    Only ``office_home`` (6 tasks) and ``office31`` (6 tasks), backbone VGG-16 (``vgg16``; ``VGG-16`` and
    ``vgg_16`` accepted), 64 bits. ``metric``: only the methods whose :data:`METRIC` is this one ("map",
    "area_rp" or "unknown"); None = every method. A fresh copy each call.
    """
    if metric is not None and metric not in METRIC_LABELS:
        raise ValueError(f"metric must be one of {list(METRIC_LABELS)} or None; got {metric!r}")
    if int(bits) not in published_bits(dataset, backbone):
        return None
    table = _MAP[dataset][int(bits)]
    return copy.deepcopy({m: v for m, v in table.items() if metric is None or METRIC[m] == metric})
