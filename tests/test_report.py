"""Tests for dahash.report: files written, tables and averages, figures, errors."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dahash.metrics import precision_recall_curve
from dahash.report import EVALUATION_RULES, collect_records, render_report


def _rec(task: str, source: str, target: str, acc: float, mp: float, seed: int = 0) -> dict:
    return {
        "task": task, "source": source, "target": target, "method": "DAH",
        "dataset": "office31", "backbone": "vgg-f", "hash_bits": 64, "seed": seed,
        "accuracy": acc, "map": mp, "n_target": 795, "n_source": 2817, "extra": "ignored",
    }


# accuracy (%): 60, 90, 95 -> average 245/3 = 81.67 -> "81.7"
# mAP (%):      50, 80, 85 -> average 215/3 = 71.67 -> "71.7"
RECORDS = [
    _rec("amazon->webcam", "amazon", "webcam", 0.60, 0.50),
    _rec("D_W", "dslr", "webcam", 0.90, 0.80),
    _rec("W_D", "webcam", "dslr", 0.95, 0.85),
]
PROTOCOL = {"setting": "transductive, final epoch", "seeds": "0", **EVALUATION_RULES}


def _pr_frames() -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(0)
    q = rng.integers(0, 2, size=(20, 8))
    db = rng.integers(0, 2, size=(30, 8))
    real = precision_recall_curve(q, db, rng.integers(0, 3, 20), rng.integers(0, 3, 30))
    hand = pd.DataFrame(
        {"radius": [0, 1, 2], "precision": [1.0, 0.5, 0.4], "recall": [0.2, 0.7, 1.0]}
    )
    return {"amazon->webcam": real, "D_W": hand, "W_D": hand}


def test_render_report_files_tables_and_figures(tmp_path: Path) -> None:
    out = tmp_path / "report"
    written = render_report(
        RECORDS, _pr_frames(), out, title="DAH <Office-31> & co", protocol=PROTOCOL
    )
    expected_files = {
        "results.md", "index.html", "pr_all.png",
        "pr_amazon_to_webcam.png", "pr_D_W.png", "pr_W_D.png",
    }
    assert set(written) == expected_files
    for name, path in written.items():
        assert path == out / name and path.is_file()
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*"))  # no temp files left

    page = (out / "index.html").read_text(encoding="utf-8")
    assert "<title>DAH &lt;Office-31&gt; &amp; co</title>" in page  # escaped
    assert "<script" not in page and "http" not in page  # self-contained, no CDN
    for task, acc, mp in [("amazon-&gt;webcam", "60.0", "50.0"), ("D_W", "90.0", "80.0"),
                          ("W_D", "95.0", "85.0")]:
        assert re.search(rf"<tr><td>{task}</td>.*<td class=\"num\">{acc}</td>"
                         rf"<td class=\"num\">{mp}</td></tr>", page)
    avg_acc = f"{np.mean([60.0, 90.0, 95.0]):.1f}"  # 81.7
    avg_map = f"{np.mean([50.0, 80.0, 85.0]):.1f}"  # 71.7
    assert (avg_acc, avg_map) == ("81.7", "71.7")
    assert re.search(rf"Average</td><td class=\"num\">{avg_acc}</td>"
                     rf"<td class=\"num\">{avg_map}</td>", page)
    assert "<dt>setting</dt><dd>transductive, final epoch</dd>" in page
    assert "<dt>ranking</dt>" in page
    for fname in ["pr_all.png", "pr_amazon_to_webcam.png", "pr_D_W.png", "pr_W_D.png"]:
        assert f'<img src="{fname}"' in page

    md = (out / "results.md").read_text(encoding="utf-8")
    assert "| task | accuracy (%) | mAP@64 (%) |" in md
    assert "| amazon->webcam | 60.0 | 50.0 |" in md
    assert f"| **Average** | {avg_acc} | {avg_map} |" in md

    for name in expected_files - {"results.md", "index.html"}:
        with Image.open(out / name) as img:
            assert img.format == "PNG"
            img.verify()
            assert img.size[0] > 100 and img.size[1] > 100


def test_render_report_seeds_mean_sd_and_nan_map(tmp_path: Path) -> None:
    # A_W over seeds 0, 1: accuracy 0.60, 0.70 -> mean 65.0, sample sd sqrt(2 * 5^2 / 1) = 7.07
    #   -> "65.0 ± 7.1"; mAP 0.40 both -> "40.0 ± 0.0"
    # D_W: map NaN (no scored query) -> "n/a", and the mAP average is n/a (not silently dropped);
    #   accuracy average = (65 + 90) / 2 = 77.5
    records = [
        _rec("A_W", "amazon", "webcam", 0.60, 0.40, seed=0),
        _rec("A_W", "amazon", "webcam", 0.70, 0.40, seed=1),
        _rec("D_W", "dslr", "webcam", 0.90, float("nan")),
    ]
    written = render_report(records, {}, tmp_path, title="t", protocol={})
    assert set(written) == {"results.md", "index.html"}
    md = (tmp_path / "results.md").read_text(encoding="utf-8")
    assert "| A_W | 65.0 ± 7.1 | 40.0 ± 0.0 |" in md
    assert "| D_W | 90.0 | n/a |" in md
    assert "| **Average** | 77.5 | n/a |" in md
    assert "seeds: 0, 1" in md


def test_render_report_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="empty"):
        render_report([], {}, tmp_path, title="t", protocol={})
    bad = dict(RECORDS[0])
    del bad["map"]
    with pytest.raises(ValueError, match=r"records\[0\].*map"):
        render_report([bad], {}, tmp_path, title="t", protocol={})
    with pytest.raises(ValueError, match="accuracy"):  # percent instead of fraction
        render_report([_rec("A_W", "a", "w", 60.0, 0.5)], {}, tmp_path, title="t", protocol={})
    with pytest.raises(ValueError, match="duplicate seed"):
        render_report([RECORDS[1], RECORDS[1]], {}, tmp_path, title="t", protocol={})
    with pytest.raises(ValueError, match="recall"):
        render_report(RECORDS, {"A_W": pd.DataFrame({"radius": [0], "precision": [1.0]})},
                      tmp_path, title="t", protocol={})
    frame = _pr_frames()["D_W"]
    with pytest.raises(ValueError, match="file name"):
        render_report(RECORDS, {"a b": frame, "a/b": frame}, tmp_path, title="t", protocol={})
    assert not list(tmp_path.iterdir())  # nothing written on failure


def test_collect_records(tmp_path: Path) -> None:
    files = []
    for i, rec in enumerate(RECORDS):
        p = tmp_path / f"m{i}.json"
        p.write_text(json.dumps(rec))
        files.append(p)
    nan_rec = _rec("W_A", "webcam", "amazon", 0.5, float("nan"))
    (tmp_path / "nan.json").write_text(json.dumps(nan_rec))  # writes the NaN literal
    got = collect_records(files + [tmp_path / "nan.json"])
    assert [r["task"] for r in got] == ["amazon->webcam", "D_W", "W_D", "W_A"]
    assert got[1]["accuracy"] == 0.90 and np.isnan(got[3]["map"])

    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken.json"):
        collect_records([files[0], tmp_path / "broken.json"])
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="list.json"):
        collect_records([tmp_path / "list.json"])
    (tmp_path / "partial.json").write_text(json.dumps({"task": "A_W"}))
    with pytest.raises(ValueError, match="partial.json"):
        collect_records([tmp_path / "partial.json"])
    with pytest.raises(FileNotFoundError, match="missing.json"):
        collect_records([tmp_path / "missing.json"])
