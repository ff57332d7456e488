"""Tests for dahash.report.paper_results: hand-copied cells, printed averages, Table 4 source protocol."""

from __future__ import annotations

import numpy as np
import pytest

from dahash.report.paper_results import (ACCURACY_AVERAGE, MAP_AVERAGE, PAPER_LABELS, published_accuracy,
                                  published_accuracy_average, published_map, table4_sources, table_name)

ACC_METHODS = ["gfk", "tca", "coral", "jda", "dan", "dann", "dah_e", "dah"]
MAP_METHODS = ["noda", "itq", "kmh", "ba", "bdnn", "dah", "suh"]
OFFICE31 = ["amazon", "dslr", "webcam"]
OFFICE_HOME = ["Art", "Clipart", "Product", "RealWorld"]


def test_table2_cells_copied_by_hand() -> None:
    t2 = published_accuracy("office31", "vggf")
    assert t2 is not None and list(t2) == ACC_METHODS
    assert t2["gfk"][("amazon", "dslr")] == 48.59        # first cell
    assert t2["dann"][("amazon", "webcam")] == 72.70
    assert t2["dah"][("dslr", "amazon")] == 55.54
    assert t2["tca"][("dslr", "webcam")] == 93.08
    assert t2["dah_e"][("webcam", "amazon")] == 53.91
    assert t2["dah"][("webcam", "dslr")] == 98.80        # last cell
    assert t2["dan"][("webcam", "dslr")] == t2["dann"][("webcam", "dslr")] == 99.40
    for m in ACC_METHODS:  # all 6 tasks = all ordered pairs of the 3 domains
        assert set(t2[m]) == {(s, t) for s in OFFICE31 for t in OFFICE31 if s != t}


def test_table3_cells_copied_by_hand() -> None:
    t3 = published_accuracy("office_home", "vggf")
    assert t3 is not None and list(t3) == ACC_METHODS
    assert t3["gfk"][("Art", "Clipart")] == 21.60
    assert t3["dah"][("Art", "Clipart")] == 31.64
    assert t3["dann"][("Clipart", "Product")] == 49.13
    assert t3["dah_e"][("Product", "Clipart")] == 38.76
    assert t3["dah"][("Product", "RealWorld")] == 60.71
    assert t3["coral"][("RealWorld", "Art")] == 38.48
    assert t3["dah"][("RealWorld", "Product")] == 62.54  # column printed after the Avg. column
    assert t3["tca"][("RealWorld", "Product")] == 48.68
    for m in ACC_METHODS:
        assert set(t3[m]) == {(s, t) for s in OFFICE_HOME for t in OFFICE_HOME if s != t}


@pytest.mark.parametrize("dataset", ["office31", "office_home"])
def test_accuracy_rows_match_printed_averages(dataset: str) -> None:
    table = published_accuracy(dataset, "vggf")
    printed = published_accuracy_average(dataset, "vggf")
    assert table is not None and printed == ACCURACY_AVERAGE[dataset]
    for m in ACC_METHODS:
        mean = float(np.mean(list(table[m].values())))
        assert abs(mean - printed[m]) <= 0.005 + 1e-9, (m, mean, printed[m])  # rounding only
    assert printed["dah"] == {"office31": 73.04, "office_home": 45.54}[dataset]


def test_table4_cells_and_printed_average() -> None:
    oh = published_map("office_home", "vggf")
    o31 = published_map("office31", "vggf")
    assert oh is not None and o31 is not None
    assert list(oh) == MAP_METHODS and list(o31) == MAP_METHODS
    assert o31["noda"] == {"amazon": 32.4, "webcam": 51.1}   # no Dslr column in the paper
    assert o31["dah"] == {"amazon": 58.2, "webcam": 71.7}
    assert oh["dah"] == {"Art": 30.2, "Clipart": 33.3, "Product": 41.4, "RealWorld": 53.3}
    assert oh["kmh"]["Product"] == 34.1
    assert oh["suh"] == {"Art": 49.2, "Clipart": 62.2, "Product": 77.4, "RealWorld": 58.6}
    # the printed Avg. is the mean over all six domains of both datasets
    for m in MAP_METHODS:
        vals = list(o31[m].values()) + list(oh[m].values())
        assert abs(np.mean(vals) - MAP_AVERAGE[m]) <= 0.05 + 1e-9, m
    assert MAP_AVERAGE["dah"] == 48.0 and MAP_AVERAGE["suh"] == 70.7


def test_labels_names_and_copies() -> None:
    assert PAPER_LABELS["kmh"] == "KMeans" and PAPER_LABELS["dah_e"] == "DAH-e"
    assert table_name("office31", "vggf", "accuracy").startswith("Table 2")
    assert table_name("office_home", "VGG-F", "accuracy").startswith("Table 3")
    assert table_name("office_home", "vggf", "map").startswith("Table 4")
    with pytest.raises(ValueError):
        table_name("office31", "vggf", "precision")
    t = published_accuracy("office_home", "vgg-f")  # backbone spelling variants accepted
    assert t is not None
    t["dah"].clear()  # a copy: the module's data is untouched
    assert published_accuracy("office_home", "vggf")["dah"][("Art", "Clipart")] == 31.64


@pytest.mark.parametrize("dataset, backbone", [
    ("office_caltech10", "vggf"), ("office_home", "efficientnet_lite0"), ("digits", "smallcnn"),
    ("custom", "vggf"), ("office31", "efficientnet_lite0"),
])
def test_unknown_dataset_or_backbone_gives_none(dataset: str, backbone: str) -> None:
    assert published_accuracy(dataset, backbone) is None
    assert published_accuracy_average(dataset, backbone) is None
    assert published_map(dataset, backbone) is None
    assert table_name(dataset, backbone, "accuracy") is None


def test_table4_sources() -> None:
    assert table4_sources("office_home", OFFICE_HOME) == {
        "Art": "Clipart", "Clipart": "Art", "Product": "Art", "RealWorld": "Art"}
    # the caption's pairs hold whatever the order of data.domains
    assert table4_sources("office_home", ["RealWorld", "Product", "Clipart", "Art"]) == {
        "RealWorld": "Art", "Product": "Art", "Clipart": "Art", "Art": "Clipart"}
    # Office-31: Amazon <-> Webcam; Dslr (not in the paper) by the general rule
    assert table4_sources("office31", OFFICE31) == {"amazon": "webcam", "dslr": "amazon",
                                                    "webcam": "amazon"}
    # a pair whose source is not configured falls back to the general rule
    assert table4_sources("office31", ["amazon", "dslr"]) == {"amazon": "dslr", "dslr": "amazon"}
    # any other dataset: domains[0] for every other, domains[1] for domains[0]
    assert table4_sources("custom", ["d1", "d2", "d3", "d4"]) == {
        "d1": "d2", "d2": "d1", "d3": "d1", "d4": "d1"}
    assert table4_sources("custom", ["only"]) == {}
    with pytest.raises(ValueError, match="repeat"):
        table4_sources("custom", ["a", "b", "a"])
