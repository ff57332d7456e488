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
          protocol: str = "pwcf") -> list[dict]:
    return [{"task": t, "source": s, "target": g, "method": method, "dataset": "office_home", "backbone": backbone,
             "hash_bits": bits, "seed": 0, "accuracy": 0.5, "map": maps[t], "n_target": 100, "n_source": 100,
             "algorithm": "dah", "retrieval": "source_database", "protocol": protocol,
             "precision_at_k": {"100": 0.5, "500": 0.4, "1000": 0.3}, "precision_radius2": 0.25}
            for t, (s, g) in OH.items()]


def _render(tmp_path: Path, recs: list[dict]) -> str:
    render_report(recs, {}, tmp_path, title="t", protocol=EVALUATION_RULES)
    return (tmp_path / "results.md").read_text()


def test_published_values_beside_ours_and_where_behind(tmp_path: Path) -> None:
    # ours = 40 % on every task but Rw_Pr (90 %); the published values decide who is ahead per task
    maps = {t: 0.40 for t in OH} | {"Rw_Pr": 0.90}
    md = _render(tmp_path, _recs("vgg16", maps))
    assert "pwcf protocol" in md and "VPDS (Li et al., NeurIPS 2025), Table 1" in md
    pub = published_pwcf_map("office_home", "vgg16", 64)
    pwcf_part = md[md.index("pwcf protocol"):]
    row = next(line for line in pwcf_part.splitlines() if line.startswith("| Rw_Cl "))
    assert all(f"{pub[p][('RealWorld', 'Clipart')]:.2f}" in row for p in pub)  # every paper's R->C value
    assert "| 40.0 |" in row
    # plain statement: PWCF's R-tasks are all below ours; CPH and VPDS above on 5 tasks (R->C: 42.84 / 41.95 > 40)
    behind = [line for line in md.splitlines() if line.startswith("Where ours is behind")]
    assert len(behind) == 1
    # PEACE: 45.97, 42.68 above 40 (A->R, R->A); 38.72, 28.36 below; 53.04 above (P->R); R->P 54.39 < 90
    assert "PEACE on 3 of 6 tasks" in behind[0]
    assert "CPH on 5 of 6 tasks" in behind[0] and "VPDS on 5 of 6 tasks" in behind[0]
    assert "ahead of PWCF on every task" in behind[0]
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
