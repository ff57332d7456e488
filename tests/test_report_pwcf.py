"""The report on the pwcf protocol: ours beside the published values where dataset, protocol, bits and backbone
match, a plain statement of where ours is behind, precision@k / radius-2 table; nothing published otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from dahash.report.pwcf_results import published_pwcf_map
from dahash.report.page import EVALUATION_RULES, render_report

OH = {"Ar_Rw": ("Art", "RealWorld"), "Rw_Ar": ("RealWorld", "Art"), "Cl_Rw": ("Clipart", "RealWorld"),
      "Rw_Cl": ("RealWorld", "Clipart"), "Pr_Rw": ("Product", "RealWorld"), "Rw_Pr": ("RealWorld", "Product")}


def _recs(backbone: str, maps: dict[str, float], bits: int = 64, method: str = "dah_64",
          protocol: str = "pwcf", area: dict[str, float] | None = None) -> list[dict]:
    return [{"task": t, "source": s, "target": g, "method": method, "dataset": "office_home", "backbone": backbone,
             "hash_bits": bits, "seed": 0, "accuracy": 0.5, "map": maps[t], "n_target": 100, "n_source": 100,
             "algorithm": "dah", "retrieval": "source_database", "protocol": protocol,
             "area_rp": (area or maps)[t] if protocol == "pwcf" else None,
             "precision_at_k": {"100": 0.5, "500": 0.4, "1000": 0.3}, "precision_radius2": 0.25}
            for t, (s, g) in OH.items()]


def _render(tmp_path: Path, recs: list[dict]) -> str:
    render_report(recs, {}, tmp_path, title="t", protocol=EVALUATION_RULES)
    return (tmp_path / "results.md").read_text()


def test_published_values_beside_ours_of_the_same_metric_only(tmp_path: Path) -> None:
    # ours: ranking mAP 40 % on every task but Rw_Pr (90 %); area_RP 30 % everywhere but Rw_Ar (10 %)
    maps = {t: 0.40 for t in OH} | {"Rw_Pr": 0.90}
    area = {t: 0.30 for t in OH} | {"Rw_Ar": 0.10}
    md = _render(tmp_path, _recs("vgg16", maps, area=area))
    assert "pwcf protocol" in md and "VPDS (Li et al., NeurIPS 2025), Table 1" in md
    pwcf_part = md[md.index("pwcf protocol"):md.index("## Precision-recall curves")]
    ranking = pwcf_part[pwcf_part.index("64 bits — ranking mAP"):pwcf_part.index("64 bits — area_RP")]
    area_part = pwcf_part[pwcf_part.index("64 bits — area_RP"):]
    # PWCF's published numbers are area_RP (its demo.m): beside our area_RP, never beside our ranking mAP
    pub = published_pwcf_map("office_home", "vgg16", 64, "area_rp")
    assert list(pub) == ["pwcf"]
    row = next(line for line in area_part.splitlines() if line.startswith("| Rw_Cl "))
    assert f"{pub['pwcf'][('RealWorld', 'Clipart')]:.2f}" in row and "| 30.0 |" in row
    assert "paper PWCF (area_RP)" in area_part and "paper PWCF" not in ranking
    # PEACE's released code computes the ranking mAP: beside ours in the ranking table only
    peace = published_pwcf_map("office_home", "vgg16", 64, "map")["peace"]
    row = next(line for line in ranking.splitlines() if line.startswith("| Rw_Cl "))
    assert f"{peace[('RealWorld', 'Clipart')]:.2f}" in row and "| 40.0 |" in row
    assert "paper PEACE (ranking mAP)" in ranking and "paper PEACE" not in area_part
    # every table names its metric; the unknown-metric rows are named, not compared
    assert "Metric of every value in this table: ranking mAP" in ranking
    assert "Metric of every value in this table: area_RP" in area_part
    assert "Still open (not found offline" in pwcf_part and "PSCA" in pwcf_part
    assert "Not compared (metric unknown" in pwcf_part and "IDEA, COUPLE, CPH, VPDS" in pwcf_part
    for label in ("paper IDEA", "paper COUPLE", "paper CPH", "paper VPDS"):
        assert label not in md
    # plain statement against PWCF's area_RP (34.57, 28.95, 24.22, 18.42, 34.03, 34.44 on Ar_Rw .. Rw_Pr): ours
    # 30 / 10 (Rw_Ar) / 30 ... trails on Ar_Rw, Rw_Ar, Pr_Rw, Rw_Pr
    behind = [line for line in md.splitlines() if line.startswith("Where ours is behind")]
    assert behind[1] == ("Where ours is behind: dah_64 trails PWCF on 4 of 6 tasks (mean difference "
                         f"{sum(100 * area[t] - pub['pwcf'][OH[t]] for t in OH) / 6:+.1f} points).")
    # ranking mAP vs PEACE (45.97, 42.68, 38.72, 28.36, 53.04, 54.39): ours 40 trails on Ar_Rw, Rw_Ar, Pr_Rw
    assert len(behind) == 2 and behind[0].startswith("Where ours is behind: dah_64 trails PEACE on 3 of 6 tasks")
    # the DAH paper's own columns are not put beside a pwcf run
    assert "Table 4, Office-Home columns" not in md and "paper DAH" not in md
    # precision table
    assert "| dah_64 | 64 | 50.0 | 40.0 | 30.0 | 25.0 |" in md


@pytest.mark.parametrize("backbone, bits", [("vggf", 64), ("vgg16", 32)])
def test_no_published_values_when_backbone_or_bits_differ(tmp_path: Path, backbone: str, bits: int) -> None:
    md = _render(tmp_path, _recs(backbone, {t: 0.4 for t in OH}, bits=bits, method=f"dah_{bits}"))
    assert "pwcf protocol" in md and "paper PWCF" not in md and "Where ours is behind" not in md
    assert ("No published values are shown" in md) if backbone == "vggf" else ("at 32 bits" in md)


def test_dah_protocol_run_has_no_pwcf_section(tmp_path: Path) -> None:
    md = _render(tmp_path, _recs("vgg16", {t: 0.4 for t in OH}, protocol="dah"))
    assert "pwcf protocol" not in md


def test_bad_precision_values_refused(tmp_path: Path) -> None:
    recs = _recs("vgg16", {t: 0.4 for t in OH})
    recs[0]["precision_at_k"] = {"100": 1.5}
    with pytest.raises(ValueError, match="precision_at_k"):
        render_report(recs, {}, tmp_path, title="t", protocol=EVALUATION_RULES)
    recs[0]["precision_at_k"] = {"100": 0.5}
    recs[0]["protocol"] = "pwfc"
    with pytest.raises(ValueError, match="protocol"):
        render_report(recs, {}, tmp_path, title="t", protocol=EVALUATION_RULES)
    assert not (tmp_path / "results.md").exists()
