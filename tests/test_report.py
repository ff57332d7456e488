"""Tests for dahash.report.page: the comparison report (Tables 2-4, Figures 3-5 analogues), errors, I/O."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dahash.eval.metrics import precision_recall_curve
from dahash.report.page import EVALUATION_RULES, collect_analysis, collect_records, render_report
import stages.paths

DOMAINS = ["Art", "Clipart", "Product", "RealWorld"]
TASKS = {"Ar_Cl": ("Art", "Clipart"), "Cl_Ar": ("Clipart", "Art"), "Pr_Rw": ("Product", "RealWorld"),
         "Rw_Cl": ("RealWorld", "Clipart")}
PROTOCOL = {"setting": "transductive, final epoch", "seeds": "0", **EVALUATION_RULES}

# method -> (optional keys, accuracy per task, map per task); None = not applicable
METHODS: dict[str, tuple[dict, dict, dict]] = {
    "dah": ({"algorithm": "dah", "family": "dah", "retrieval": "source_database"},
            {"Ar_Cl": 0.30, "Cl_Ar": 0.35, "Pr_Rw": 0.60, "Rw_Cl": 0.45},
            {"Ar_Cl": 0.50, "Cl_Ar": 0.60, "Pr_Rw": 0.70, "Rw_Cl": 0.90}),
    "dah_e": ({"algorithm": "dah", "family": "dah", "retrieval": "source_database"},
              {"Ar_Cl": 0.28, "Cl_Ar": 0.33, "Pr_Rw": 0.55, "Rw_Cl": 0.44},
              {"Ar_Cl": 0.40, "Cl_Ar": 0.45, "Pr_Rw": 0.65, "Rw_Cl": 0.80}),
    "tca": ({"algorithm": "tca", "family": "shallow", "retrieval": None},
            {"Ar_Cl": 0.20, "Cl_Ar": 0.19, "Pr_Rw": 0.42, "Rw_Cl": 0.27},
            {"Ar_Cl": None, "Cl_Ar": None, "Pr_Rw": None, "Rw_Cl": None}),
    "itq": ({"algorithm": "itq", "family": "hashing", "retrieval": "target_split"},
            {"Ar_Cl": None, "Cl_Ar": None, "Pr_Rw": None, "Rw_Cl": None},
            {"Ar_Cl": 0.21, "Cl_Ar": 0.19, "Pr_Rw": 0.33, "Rw_Cl": 0.22}),
    "suh": ({"algorithm": "suh", "family": "supervised_hashing", "retrieval": "target_split",
             "uses_target_labels": True},
            {"Ar_Cl": None, "Cl_Ar": None, "Pr_Rw": None, "Rw_Cl": None},
            {"Ar_Cl": 0.62, "Cl_Ar": 0.49, "Pr_Rw": 0.59, "Rw_Cl": 0.63}),
}


def _rec(task: str, source: str, target: str, acc: float | None, mp: float | None, *, seed: int = 0,
         method: str = "dah", dataset: str = "office_home", backbone: str = "vggf", **extra) -> dict:
    return {
        "task": task, "source": source, "target": target, "method": method,
        "dataset": dataset, "backbone": backbone, "hash_bits": 64, "seed": seed,
        "accuracy": acc, "map": mp, "n_target": 4365, "n_source": 2427, "extra": "ignored", **extra,
    }


def _records(dataset: str = "office_home", backbone: str = "vggf") -> list[dict]:
    return [_rec(t, *TASKS[t], acc[t], mp[t], method=m, dataset=dataset, backbone=backbone, **opt)
            for m, (opt, acc, mp) in METHODS.items() for t in TASKS]


def _pr_frame(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    q, db = rng.integers(0, 2, size=(20, 8)), rng.integers(0, 2, size=(30, 8))
    return precision_recall_curve(q, db, rng.integers(0, 3, 20), rng.integers(0, 3, 30))


def _curves() -> dict[tuple[str, str], pd.DataFrame]:
    empty = pd.DataFrame({"radius": [], "precision": [], "recall": []})  # no codes: header only
    return {(m, t): (empty if METHODS[m][2][t] is None else _pr_frame(i))
            for i, (m, t) in enumerate((m, t) for m in METHODS for t in TASKS)}


def _render(tmp_path: Path, records: list[dict] | None = None, **kw) -> tuple[dict, str, str]:
    kw.setdefault("methods", list(METHODS))
    kw.setdefault("tasks", list(TASKS))
    kw.setdefault("domains", DOMAINS)
    written = render_report(_records() if records is None else records, kw.pop("curves", _curves()),
                            tmp_path, title=kw.pop("title", "t"), protocol=PROTOCOL, **kw)
    return (written, (tmp_path / "index.html").read_text(encoding="utf-8"),
            (tmp_path / "results.md").read_text(encoding="utf-8"))


def _md_table_after(md: str, heading: str) -> list[list[str]]:
    """The rows (cells stripped) of the first markdown table after ``heading``."""
    block = md.split(heading, 1)[1]
    rows = []
    for line in block.splitlines():
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip().strip("|").split(" | ")])
        elif rows:
            break
    return rows


def _md_accuracy(md: str) -> list[list[str]]:
    return _md_table_after(md, "Table 2/3 analogue")


def _md_table4(md: str) -> list[list[str]]:
    return _md_table_after(md, "Table 4 analogue")


# --------------------------------------------------------------------------------------------
def test_files_written_self_contained_and_pngs(tmp_path: Path) -> None:
    written, page, md = _render(tmp_path, title="DAH <Office-Home> & co")
    expected = {"results.md", "index.html", "pr_target_Art.png", "pr_target_Clipart.png"}
    expected |= {f"pr_task_{t}.png" for t in TASKS}
    assert set(written) == expected  # no per-(method, task) figures, no Product/RealWorld target figure
    for name, path in written.items():
        assert path == tmp_path / name and path.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(expected)  # no temp files left
    assert "<title>DAH &lt;Office-Home&gt; &amp; co</title>" in page  # escaped
    assert "<script" not in page and "http" not in page  # self-contained, no CDN
    assert "<dt>setting</dt><dd>transductive, final epoch</dd>" in page and "<dt>ranking</dt>" in page
    for name in expected - {"results.md", "index.html"}:
        assert f'<img src="{name}"' in page and f"]({name})" in md
        with Image.open(tmp_path / name) as img:
            assert img.format == "PNG"
            img.verify()
            assert img.size[0] > 100 and img.size[1] > 100
    assert "No feature analysis configured." in page and "No feature analysis configured." in md


def test_accuracy_table_columns_paper_values_and_null_cells(tmp_path: Path) -> None:
    _, page, md = _render(tmp_path)
    rows = _md_accuracy(md)
    # methods that classify only (itq, suh have accuracy null everywhere), each with a paper column
    assert rows[0] == ["task", "source → target", "dah", "paper DAH", "dah_e", "paper DAH-e", "tca", "paper TCA"]
    by_task = {r[0]: r for r in rows[2:]}
    assert list(by_task) == [*TASKS, "**Average**"]
    # published Table 3 values: DAH 31.64, DAH-e 29.23, TCA 19.93 on Ar->Cl
    assert by_task["Ar_Cl"] == ["Ar_Cl", "Art → Clipart", "30.0", "31.64", "28.0", "29.23", "20.0", "19.93"]
    assert by_task["Pr_Rw"][2:4] == ["60.0", "60.71"] and by_task["Rw_Cl"][2:4] == ["45.0", "45.13"]
    # Average: ours = mean of the per-task means; paper = mean over this run's tasks only (marked *)
    assert by_task["**Average**"][2] == f"{np.mean([30, 35, 60, 45]):.1f}"  # 42.5
    assert by_task["**Average**"][3] == f"{np.mean([31.64, 34.69, 60.71, 45.13]):.2f}*"
    assert "Table 3 (Office-Home, VGG-F, 64 bits)" in md
    assert '<th class="paper">paper DAH</th>' in page and '<td class="num paper">31.64</td>' in page
    # null accuracy -> no column, null map -> no Table-4 row; never a 0
    assert "itq" not in rows[0] and "suh ‡" not in rows[0]
    assert "0.0" not in [c for r in rows for c in r]
    # per-method details: tca has accuracy but no mAP -> an empty cell, not 0 and not n/a
    assert "| Ar_Cl | Art | Clipart | 2427 | 4365 | 1 | 20.0 |  |" in md
    assert "| Ar_Cl | Art | Clipart | 2427 | 4365 | 1 |  | 21.0 |" in md  # itq: accuracy empty


def test_published_average_is_the_printed_one_when_all_tasks_run(tmp_path: Path) -> None:
    o31 = {"A_D": ("amazon", "dslr"), "A_W": ("amazon", "webcam"), "D_A": ("dslr", "amazon"),
           "D_W": ("dslr", "webcam"), "W_A": ("webcam", "amazon"), "W_D": ("webcam", "dslr")}
    recs = [_rec(k, s, t, 0.5, 0.5, dataset="office31", method="dah") for k, (s, t) in o31.items()]
    _, _, md = _render(tmp_path, recs, methods=None, tasks=None, domains=["amazon", "dslr", "webcam"],
                       curves={})
    rows = _md_accuracy(md)
    assert rows[0][2:] == ["dah", "paper DAH"]
    assert {r[0]: r[3] for r in rows[2:]} == {"A_D": "66.47", "A_W": "68.30", "D_A": "55.54", "D_W": "96.10",
                                              "W_A": "53.02", "W_D": "98.80", "**Average**": "73.04"}
    assert "Table 2 (Office, VGG-F, 64 bits)" in md
    t4 = _md_table4(md)  # Office-31 protocol: amazon <- webcam, webcam <- amazon; dslr (not in paper) blank
    assert t4[0] == ["method", "retrieval", "amazon (from webcam)", "paper", "dslr (from amazon)", "paper",
                     "webcam (from amazon)", "paper", "Average"]
    assert t4[2] == ["dah", "", "50.0", "58.2", "50.0", "", "50.0", "71.7", "50.0"]


def test_algorithm_picks_the_paper_column_when_the_name_is_not_a_paper_method(tmp_path: Path) -> None:
    recs = [_rec("Ar_Cl", "Art", "Clipart", 0.3, 0.4, method="dah_auto", algorithm="dah"),
            _rec("Ar_Cl", "Art", "Clipart", 0.2, None, method="my_baseline")]
    _, _, md = _render(tmp_path, recs, methods=None, curves={})
    rows = _md_accuracy(md)
    assert rows[0][2:] == ["dah_auto", "paper DAH", "my_baseline", "paper"]
    assert rows[2][2:] == ["30.0", "31.64", "20.0", ""]  # no published value: blank, not invented


@pytest.mark.parametrize("dataset, backbone", [("office_caltech10", "efficientnet_lite0"),
                                               ("office_home", "efficientnet_lite0")])
def test_no_published_table_no_paper_columns(tmp_path: Path, dataset: str, backbone: str) -> None:
    _, page, md = _render(tmp_path, _records(dataset, backbone))
    assert f"The paper has no accuracy table for dataset {dataset} with backbone {backbone}" in md
    assert f"The paper has no mAP table for dataset {dataset} with backbone {backbone}" in md
    assert _md_accuracy(md)[0] == ["task", "source → target", "dah", "dah_e", "tca"]
    assert "paper" not in _md_table4(md)[0]
    assert 'class="paper"' not in page and "31.64" not in page and "33.3" not in md


def test_table4_uses_the_protocol_task_and_blanks_missing_ones(tmp_path: Path) -> None:
    _, page, md = _render(tmp_path)
    rows = _md_table4(md)
    assert rows[0] == ["method", "retrieval", "Art (from Clipart)", "paper", "Clipart (from Art)", "paper",
                       "Product (from Art) †", "paper", "RealWorld (from Art) †", "paper", "Average"]
    by_method = {r[0]: r for r in rows[2:]}
    assert list(by_method) == ["dah", "dah_e", "itq", "suh ‡"]  # tca: no codes, no row
    # Clipart: the Ar_Cl task (50.0), not Rw_Cl (90.0); Art: Cl_Ar; Product/RealWorld: not run
    assert by_method["dah"] == ["dah", "source database", "60.0", "30.2", "50.0", "33.3", "", "41.4",
                                "", "53.3", "n/a"]
    assert by_method["itq"][:6] == ["itq", "target split", "19.0", "19.1", "21.0", "19.5"]
    assert by_method["suh ‡"][2:6] == ["49.0", "49.2", "62.0", "62.2"]
    assert by_method["dah_e"][3] == ""  # DAH-e is not in Table 4
    assert "† the protocol task (Art → Product; Art → RealWorld) is not among this run's tasks" in md
    assert "‡ uses target labels (supervised hashing): an upper bound" in md
    # the full per-task mAP table keeps every task, Rw_Cl included
    per_task = _md_table_after(md, "(%) per task")
    assert per_task[0] == ["task", "source → target", "dah", "dah_e", "itq", "suh ‡"]
    assert per_task[5] == ["Rw_Cl", "RealWorld → Clipart", "90.0", "80.0", "22.0", "63.0"]
    assert per_task[6][0] == "**Average**" and per_task[6][2] == f"{np.mean([50, 60, 70, 90]):.1f}"
    assert "mAP@64 (%) — Table 4 analogue" in page


def test_seeds_mean_sd_and_nan_map(tmp_path: Path) -> None:
    # A_W over seeds 0, 1: accuracy 0.60, 0.70 -> "65.0 ± 7.1"; mAP 0.40 both -> "40.0 ± 0.0"
    # D_W: map NaN (no scored query) -> "n/a", and the mAP average is n/a (not silently dropped)
    records = [
        _rec("A_W", "amazon", "webcam", 0.60, 0.40, seed=0, dataset="office31"),
        _rec("A_W", "amazon", "webcam", 0.70, 0.40, seed=1, dataset="office31"),
        _rec("D_W", "dslr", "webcam", 0.90, float("nan"), dataset="office31"),
    ]
    written, _, md = _render(tmp_path, records, methods=None, tasks=None, domains=None, curves={})
    assert set(written) == {"results.md", "index.html"}
    acc = _md_accuracy(md)
    assert acc[2][:3] == ["A_W", "amazon → webcam", "65.0 ± 7.1"] and acc[3][2] == "90.0"
    assert acc[4][2] == "77.5"
    per_task = _md_table_after(md, "(%) per task")
    assert per_task[2][2] == "40.0 ± 0.0" and per_task[3][2] == "n/a" and per_task[4][2] == "n/a"
    assert "seeds 0, 1" in md
    assert "No precision-recall curves" in md


def test_pr_figures_only_for_methods_with_codes(tmp_path: Path) -> None:
    curves = _curves()
    only_tca = {k: v for k, v in curves.items() if k[0] == "tca"}  # all empty frames
    written, _, md = _render(tmp_path, curves=only_tca)
    assert set(written) == {"results.md", "index.html"}
    assert "No precision-recall curves: no method in this run produced hash codes." in md


def _tsne_png(path: Path, colour: str) -> bytes:
    Image.new("RGB", (40, 30), colour).save(path, format="PNG")
    return path.read_bytes()


def test_feature_analysis_bar_chart_and_tsne(tmp_path: Path) -> None:
    adir = tmp_path / "analysis" / "office_home"
    pngs = {}
    files = []
    for task, dist in [("Ar_Cl", {"backbone": 1.62, "dan": 1.41, "dah": 1.20}),
                       ("Cl_Ar", {"backbone": 1.55, "dah": 1.10})]:
        d = adir / task
        d.mkdir(parents=True)
        tsne = {}
        for kind, colour in [("backbone", "red"), ("dah", "blue")]:
            tsne[kind] = f"tsne_{kind}.png"
            pngs[(task, kind)] = _tsne_png(d / tsne[kind], colour)
        src, tgt = TASKS[task]
        (d / "analysis.json").write_text(json.dumps(
            {"task": task, "source": src, "target": tgt, "a_distance": dist, "tsne": tsne}))
        files.append(d / "analysis.json")
    analysis = collect_analysis(files)
    assert analysis[0]["tsne"]["dah"] == adir / "Ar_Cl" / "tsne_dah.png"
    out = tmp_path / "report"
    written, page, md = _render(out, analysis=analysis)
    assert "a_distance.png" in written
    with Image.open(out / "a_distance.png") as img:
        assert img.format == "PNG" and img.size[0] > 100
    for (task, kind), data in pngs.items():
        name = f"tsne_{task}_{kind}.png"
        assert written[name].read_bytes() == data  # copied as is
        assert f'<img src="{name}"' in page
    assert "t-SNE of dah features, task Ar_Cl, Art → Clipart" in page
    rows = _md_table_after(md, "Figure 3 analogue")
    assert rows[0] == ["task", "source → target", "backbone", "dan", "dah"]
    assert rows[2] == ["Ar_Cl", "Art → Clipart", "1.620", "1.410", "1.200"]
    assert rows[3] == ["Cl_Ar", "Clipart → Art", "1.550", "", "1.100"]  # no DAN value: blank
    assert "No feature analysis configured." not in page

    # a referenced t-SNE image that is missing or not a PNG: an error, nothing written
    (adir / "Cl_Ar" / "tsne_dah.png").write_text("not a png")
    with pytest.raises(ValueError, match="not a PNG"):
        _render(tmp_path / "r2", analysis=collect_analysis(files))
    (adir / "Cl_Ar" / "tsne_dah.png").unlink()
    with pytest.raises(FileNotFoundError):
        _render(tmp_path / "r2", analysis=collect_analysis(files))
    assert not (tmp_path / "r2").exists()


def test_collect_analysis_errors(tmp_path: Path) -> None:
    p = tmp_path / "analysis.json"
    p.write_text(json.dumps({"task": "A_W", "a_distance": {"dah": "high"}}))
    with pytest.raises(ValueError, match=r"analysis.json.*a_distance"):
        collect_analysis([p])
    p.write_text(json.dumps({"a_distance": {}}))
    with pytest.raises(ValueError, match="task"):
        collect_analysis([p])
    p.write_text("{oops")
    with pytest.raises(ValueError, match="analysis.json"):
        collect_analysis([p])
    p.write_text(json.dumps({"task": "A_W"}))  # no values at all: accepted, nothing to draw
    assert collect_analysis([p]) == [{"task": "A_W", "source": None, "target": None, "a_distance": {},
                                      "tsne": {}}]


def test_errors_write_nothing(tmp_path: Path) -> None:
    out = tmp_path / "report"

    def fails(records, curves=None, match="", **kw):
        with pytest.raises(ValueError, match=match):
            render_report(records, curves or {}, out, title="t", protocol={}, **kw)

    fails([], match="empty")
    bad = _records()[0]
    del bad["map"]
    fails([bad], match=r"records\[0\].*map")
    fails([_rec("A_W", "a", "w", 60.0, 0.5)], match="accuracy")  # percent instead of fraction
    fails([_rec("A_W", "a", "w", float("nan"), 0.5)], match="accuracy is NaN")
    fails([_rec("A_W", "a", "w", 0.6, 0.5, family="magic")], match="family")
    fails([_rec("A_W", "a", "w", 0.6, 0.5, retrieval="web")], match="retrieval")
    fails([_rec("A_W", "a", "w", 0.6, 0.5)] * 2, match="duplicate seed")
    fails([_rec("A_W", "a", "w", 0.6, 0.5), _rec("A_W", "a", "w", 0.6, 0.5, dataset="office31", seed=1)],
          match="mix datasets")
    fails(_records(), {("dah", "Ar_Cl"): pd.DataFrame({"radius": [0], "precision": [1.0]})}, match="recall")
    fails(_records(), {"Ar_Cl": _pr_frame(0)}, match="tuples")
    frame = _pr_frame(0)
    recs = [_rec("a b", "x", "y", 0.5, 0.5), _rec("a/b", "x", "z", 0.5, 0.5)]
    fails(recs, {("dah", "a b"): frame, ("dah", "a/b"): frame}, match="file name")
    fails(_records(), analysis=[{"task": "Ar_Cl"}, {"task": "Ar_Cl"}], match="twice")
    assert not out.exists()  # nothing written on failure


def test_failure_keeps_the_previous_report_intact(tmp_path: Path) -> None:
    written, page, md = _render(tmp_path)
    before = {name: p.read_bytes() for name, p in written.items()}
    with pytest.raises(ValueError):
        render_report(_records() + [_records()[0]], _curves(), tmp_path, title="new", protocol={})
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_collect_records(tmp_path: Path) -> None:
    recs = _records()[:3]
    files = []
    for i, rec in enumerate(recs):
        p = tmp_path / f"m{i}.json"
        p.write_text(json.dumps(rec))
        files.append(p)
    nan_rec = _rec("W_A", "webcam", "amazon", 0.5, float("nan"))
    (tmp_path / "nan.json").write_text(json.dumps(nan_rec))  # writes the NaN literal
    null_rec = _rec("W_A", "webcam", "amazon", None, None, method="x", family="hashing")
    (tmp_path / "null.json").write_text(json.dumps(null_rec))
    got = collect_records(files + [tmp_path / "nan.json", tmp_path / "null.json"])
    assert [r["task"] for r in got] == ["Ar_Cl", "Cl_Ar", "Pr_Rw", "W_A", "W_A"]
    assert got[1]["accuracy"] == 0.35 and np.isnan(got[3]["map"])
    assert got[4]["accuracy"] is None and got[4]["map"] is None  # null stays null (not applicable)

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


def test_plot_pr_curve_still_writes_one_png(tmp_path: Path) -> None:
    from dahash.report.page import plot_pr_curve

    path = plot_pr_curve(_pr_frame(0), tmp_path / "pr.png", title="dah A_W seed 0")
    with Image.open(path) as img:
        assert img.format == "PNG"
    assert [p.name for p in tmp_path.iterdir()] == ["pr.png"]


def test_table4_paper_value_through_algorithm_is_labelled(tmp_path: Path) -> None:
    recs = [_rec("Ar_Cl", "Art", "Clipart", 0.3, 0.4, method="dah_auto", algorithm="dah"),
            _rec("Ar_Cl", "Art", "Clipart", 0.3, 0.4, method="dah_e", algorithm="dah")]
    _, _, md = _render(tmp_path, recs, methods=None, curves={})
    rows = {r[0]: r for r in _md_table4(md)[2:]}
    assert rows["dah_auto [paper: DAH]"][4:6] == ["40.0", "33.3"]
    assert rows["dah_e"][4:6] == ["40.0", ""]  # a paper method absent from Table 4: blank, not DAH's


def test_stage_collects_metrics_curves_and_analysis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import stages.report as stage

    params = {
        "data": {"dataset": "office_home", "domains": DOMAINS}, "backbone": {"name": "vggf"},
        "methods": {"dah": {}}, "baselines": {"seed": 0, "methods": {"tca": {"algorithm": "tca"}}},
        "eval": {"query_fraction": 0.1, "split_seed": 0},
        "tasks": {"Ar_Cl": {"source": "Art", "target": "Clipart"}, "Cl_Ar": {"source": "Clipart", "target": "Art"}},
        "train": {"seeds": [0, 1], "hash_bits": 64, "mode": "head", "epochs": 3, "gamma": 5000.0},
        "report": {"title": "stage test"}, "analysis": {"tasks": ["Ar_Cl", "Cl_Ar"]},
    }

    def metrics_path(dataset, method, task, seed):
        return tmp_path / "metrics" / dataset / method / task / f"seed{seed}.json"

    def pr_path(dataset, method, task, seed):
        return tmp_path / "plots" / dataset / method / task / f"seed{seed}.csv"

    seeds_of = {"dah": params["train"]["seeds"], "tca": [params["baselines"]["seed"]]}  # baselines run once
    for m in seeds_of:
        opt, acc, mp = METHODS[m]
        for t, pair in TASKS.items():
            if t not in params["tasks"]:
                continue
            for s in seeds_of[m]:
                p = metrics_path("office_home", m, t, s)
                p.parent.mkdir(parents=True, exist_ok=True)
                p.write_text(json.dumps(_rec(t, *pair, acc[t], mp[t], method=m, seed=s, **opt)))
                c = pr_path("office_home", m, t, s)
                c.parent.mkdir(parents=True, exist_ok=True)
                frame = _pr_frame(s) if mp[t] is not None else pd.DataFrame(columns=["radius", "precision", "recall"])
                frame.to_csv(c, index=False)
    adir = tmp_path / "analysis" / "office_home" / "Ar_Cl"  # Cl_Ar configured but not computed yet
    adir.mkdir(parents=True)
    _tsne_png(adir / "t.png", "green")
    (adir / "analysis.json").write_text(json.dumps({"task": "Ar_Cl", "source": "Art", "target": "Clipart",
                                                    "a_distance": {"backbone": 1.5}, "tsne": {"backbone": "t.png"}}))
    monkeypatch.setattr(stages.paths, "ROOT", tmp_path)
    monkeypatch.setattr(stage, "load_params", lambda: params)
    monkeypatch.setattr(stage, "metrics_path", metrics_path)
    monkeypatch.setattr(stage, "pr_path", pr_path)
    (tmp_path / "report").mkdir()  # an earlier report (the folder persists in dvc.yaml): replaced whole
    (tmp_path / "report" / "pr_task_Gone_Task.png").write_bytes(b"stale")
    stage.main([])
    out = tmp_path / "report"
    assert not (out / "pr_task_Gone_Task.png").exists()
    assert {"index.html", "results.md", "pr_target_Art.png", "pr_target_Clipart.png", "pr_task_Ar_Cl.png",
            "a_distance.png", "tsne_Ar_Cl_backbone.png"} <= {p.name for p in out.iterdir()}
    md = (out / "results.md").read_text(encoding="utf-8")
    assert "this run: 10 % of the target items are queries (split seed 0)" in md
    assert "SuH uses target labels: an upper bound, not a domain-adaptation result" in md
    assert "not yet computed: Cl_Ar" in md
    assert _md_accuracy(md)[2][2:] == ["30.0 ± 0.0", "31.64", "20.0", "19.93"]
    # the DVC metrics: per method the plain mean over tasks and seeds (by hand from METHODS: Ar_Cl, Cl_Ar)
    summary = tmp_path / "metrics" / "summary" / "office_home"
    got = {p.stem: json.loads(p.read_text()) for p in summary.glob("*.json")}
    assert got.keys() == {"dah", "tca"}
    assert got["dah"]["accuracy"] == pytest.approx((0.30 + 0.35) / 2) and got["dah"]["runs"] == 4
    assert got["dah"]["map"] == pytest.approx((0.50 + 0.60) / 2)
    assert got["tca"] == {"accuracy": pytest.approx((0.20 + 0.19) / 2), "map": None, "runs": 2}

    # comparison methods only (methods: {}): the report has their rows and says no DAH method was trained
    only = {**params, "methods": {}, "analysis": {"tasks": []}}
    monkeypatch.setattr(stage, "load_params", lambda: only)
    stage.main([])
    md_only = (out / "results.md").read_text(encoding="utf-8")
    header = _md_accuracy(md_only)[0]
    assert any("tca" in h for h in header) and not any("dah" in h.lower() for h in header), header
    assert "- **methods**: none\n" in md_only and "- **comparison methods**: tca (" in md_only
    assert sorted(p.name for p in summary.iterdir()) == ["tca.json"]  # replaced whole: no dah.json left behind
    monkeypatch.setattr(stage, "load_params", lambda: params)

    pr_path("office_home", "dah", "Cl_Ar", 0).unlink()  # dah has an mAP: its curve must exist
    with pytest.raises(SystemExit):
        stage.main([])


def test_method_summary_means_over_tasks_and_seeds_by_hand() -> None:
    from dahash.report.page import method_summary

    recs = [_rec("Ar_Cl", "Art", "Clipart", 0.2, 0.5, seed=0), _rec("Ar_Cl", "Art", "Clipart", 0.4, 0.7, seed=1),
            _rec("Cl_Ar", "Clipart", "Art", 0.9, None, seed=0), _rec("Cl_Ar", "Clipart", "Art", 0.5, 0.3, seed=1),
            _rec("Ar_Cl", "Art", "Clipart", None, 0.25, method="itq")]
    got = method_summary(recs, ["itq", "dah", "absent"])
    assert list(got) == ["itq", "dah"]  # the given order; a method without records has no entry
    assert got["dah"] == {"accuracy": pytest.approx(2.0 / 4), "map": pytest.approx(1.5 / 3), "runs": 4}
    assert got["itq"] == {"accuracy": None, "map": 0.25, "runs": 1}


def test_comparison_columns_keep_the_papers_order_across_both_dicts() -> None:
    """baselines.methods and baselines.finetune give one list of columns in the paper's order (the fine-tuned ones
    are not all pushed to the end), each with its mode in the protocol's training-mode line."""
    from stages.report import comparison_columns, training_modes

    params = {"methods": {"dah": {}}, "train": {"mode": "finetune"},
              "baselines": {"seed": 0, "methods": {"itq": {}, "mine": {"algorithm": "coral"}, "tca": {}},
                            "finetune": {"suh": {"eta": 2.0}, "dan": {}}}}
    assert list(comparison_columns(params)) == ["dan", "tca", "mine", "itq", "suh"]
    assert comparison_columns(params)["suh"] == {"eta": 2.0}
    line = training_modes(params)
    assert line.startswith("dah: finetune; dan: finetune; tca: features; mine: features; itq: features; suh: finetune")
    params["baselines"]["methods"]["dann"] = {}
    assert "dann: head (NOT the paper's: finetune)" in training_modes(params)
