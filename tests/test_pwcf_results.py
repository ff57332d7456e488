"""dahash.report.pwcf_results: cells copied by hand from VPDS (NeurIPS 2025) Table 1, row means vs the printed Avg."""

from __future__ import annotations

import numpy as np
import pytest

from dahash.report.pwcf_results import METHODS, PRINTED_AVERAGE, published_bits, published_pwcf_map

OH = {("Art", "RealWorld"), ("RealWorld", "Art"), ("Clipart", "RealWorld"), ("RealWorld", "Clipart"),
      ("Product", "RealWorld"), ("RealWorld", "Product")}
O31 = {(s, t) for s in ("amazon", "dslr", "webcam") for t in ("amazon", "dslr", "webcam") if s != t}


def test_cells_copied_by_hand() -> None:
    oh, o31 = published_pwcf_map("office_home", "vgg16", 64), published_pwcf_map("office31", "VGG-16", 64)
    assert oh is not None and o31 is not None and list(oh) == list(METHODS) == list(o31)
    assert oh["pwcf"][("Art", "RealWorld")] == 34.57          # first cell of the PWCF row
    assert oh["peace"][("RealWorld", "Clipart")] == 28.36
    assert oh["idea"][("Product", "RealWorld")] == 59.18
    assert oh["couple"][("RealWorld", "Art")] == 54.35
    assert oh["cph"][("Clipart", "RealWorld")] == 58.65
    assert oh["vpds"][("RealWorld", "Product")] == 81.80
    assert o31["pwcf"][("dslr", "webcam")] == 72.91
    assert o31["cph"][("webcam", "dslr")] == 99.90
    assert o31["vpds"][("webcam", "dslr")] == 100.0           # printed "100"
    assert o31["idea"][("amazon", "dslr")] == 48.70
    for m in METHODS:
        assert set(oh[m]) == OH and set(o31[m]) == O31


def test_row_means_match_the_printed_average() -> None:
    oh, o31 = published_pwcf_map("office_home", "vgg16", 64), published_pwcf_map("office31", "vgg16", 64)
    for m in METHODS:  # the printed Avg. is over the 12 tasks of both datasets
        mean = float(np.mean(list(oh[m].values()) + list(o31[m].values())))
        assert abs(mean - PRINTED_AVERAGE[m]) <= 0.005 + 1e-9, (m, mean, PRINTED_AVERAGE[m])
    assert PRINTED_AVERAGE["pwcf"] == 38.35 and PRINTED_AVERAGE["vpds"] == 75.56


@pytest.mark.parametrize("dataset, backbone, bits", [("office_home", "vggf", 64), ("office_home", "vgg16", 32),
                                                     ("office_caltech10", "vgg16", 64), ("digits", "vgg16", 64)])
def test_nothing_where_no_table_was_transcribed(dataset: str, backbone: str, bits: int) -> None:
    assert published_pwcf_map(dataset, backbone, bits) is None


def test_bits_and_copies() -> None:
    assert published_bits("office31", "vgg_16") == (64,) and published_bits("office_home", "efficientnet_lite0") == ()
    a = published_pwcf_map("office31", "vgg16", 64)
    a["pwcf"].clear()
    assert published_pwcf_map("office31", "vgg16", 64)["pwcf"]  # the module's table is untouched


def test_every_row_labelled_with_its_metric() -> None:
    from dahash.report.pwcf_results import METRIC, METRIC_LABELS, METRIC_SOURCES, RECORD_KEY

    assert set(METRIC) == set(METHODS) == set(METRIC_SOURCES)
    assert set(METRIC.values()) <= set(METRIC_LABELS) and set(RECORD_KEY) == {"map", "area_rp"}
    assert METRIC["pwcf"] == "area_rp"  # fuxianghuang1/PWCF demo.m: recall_precision + area_RP
    area = published_pwcf_map("office31", "vgg16", 64, "area_rp")
    unknown = published_pwcf_map("office31", "vgg16", 64, "unknown")
    assert list(area) == ["pwcf"] and set(unknown) == set(METHODS) - {"pwcf", "peace"}
    assert list(published_pwcf_map("office31", "vgg16", 64, "map")) == ["peace"]  # WillDreamer/PEACE evaluate.py
    with pytest.raises(ValueError, match="metric"):
        published_pwcf_map("office31", "vgg16", 64, "mAP")
