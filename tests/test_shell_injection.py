"""No value of params.yaml reaches a shell as anything but one argument (issue 23 point 1).

A domain folder named ``w$(touch PWNED_SHELL)`` once ran ``touch`` when Snakemake or DVC ran the extract stage's
``cmd``, and a domain ``web cam`` split into two arguments. Two defences, both tested here:

1. the schema refuses names that are not safe folder names (domains, task keys, method names, analysis tasks), with a
   line naming the key and saying what to do;
2. every ``${...}`` in a dvc.yaml ``cmd`` is quoted. The walk below builds, for every candidate value the schema
   ACCEPTS (hostile ones included, should the schema let one through), the DAG DVC resolves, and runs every stage
   command through bash with a stand-in ``python`` recording its argv: each value arrives as exactly one argument,
   after its own flag, and no command has a side effect.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from stages.common import StageError, load_params

REPO_ROOT = Path(__file__).resolve().parents[1]
PWNED = "PWNED_SHELL"

#: names a user (or an attacker editing params.yaml or naming mirror folders) could write
HOSTILE = [f"w$(touch {PWNED})", "web cam", f"a;touch {PWNED}", f"`touch {PWNED}`", "x'y", 'x"y', "-rf", "a|b",
           "a&b", "a>b", "*", "~x", "a\nb", "a\\b", "$HOME", "..", ".hidden", "a/b", "", "x" * 65]
#: names the schema is meant to accept, at the edges of its alphabet
SAFE = ["A", "web_cam", "web-cam", "v1.2", "Z9_x", "0", "x" * 64]


def _base_params() -> dict:
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["data"].update(dataset="custom", mirror="mirror", domains=["d1", "d2"])
    params["tasks"] = {"t": {"source": "d1", "target": "d2"}}
    params["methods"] = {"dah": {}}
    params["baselines"]["methods"] = {"dan": {}}
    params["baselines"]["finetune"] = {"noda": {}}
    params["analysis"]["tasks"] = ["t"]
    params["train"].update(mode="head", gamma="auto", seeds=[0, 3])
    params["gamma_sweep"]["grid"] = [50.0, 0.001]
    params["backbone"]["name"] = "efficientnet_lite0"
    return params


def _accepts(tmp_path: Path, params: dict) -> bool:
    path = tmp_path / "check.yaml"
    path.write_text(yaml.safe_dump(params))
    try:
        load_params(path)
    except StageError:
        return False
    return True


def _with(params: dict, slot: str, value: str) -> dict:
    """``params`` with ``value`` placed in ``slot`` (a domain, a task key, a method name, ...), consistently."""
    p = json.loads(json.dumps(params))
    if slot == "domain":
        p["data"]["domains"] = ["d1", value]
        p["tasks"] = {"t": {"source": "d1", "target": value}}
    elif slot == "task":
        p["tasks"] = {value: {"source": "d1", "target": "d2"}}
        p["analysis"]["tasks"] = [value]
    elif slot == "method":
        p["methods"][value] = {}
    elif slot == "baseline":
        p["baselines"]["methods"][value] = {"algorithm": "coral"}
    elif slot == "finetuned":
        p["baselines"]["finetune"][value] = {"algorithm": "dann"}
    return p


SLOTS = ["domain", "task", "method", "baseline", "finetuned"]


@pytest.mark.parametrize("slot", SLOTS)
@pytest.mark.parametrize("value", ["web cam", f"w$(touch {PWNED})", "-rf", "a;b"])
def test_the_schema_refuses_unsafe_names_with_one_clear_line(tmp_path: Path, slot: str, value: str) -> None:
    params = _with(_base_params(), slot, value)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    with pytest.raises(StageError) as ei:
        load_params(path)
    msg = str(ei.value)
    key = {"domain": "data.domains.1", "task": "tasks", "method": "methods", "baseline": "baselines.methods",
           "finetuned": "baselines.finetune"}[slot]
    assert f"  {key}: {value!r} is not a safe" in msg, msg
    assert "letters, digits" in msg


def test_safe_names_are_accepted(tmp_path: Path) -> None:
    for slot in SLOTS:
        for value in SAFE:
            if slot != "domain" and "." in value or slot in ("method", "baseline", "finetuned") and "-" in value:
                continue  # keys: no '.'; method names: no '-' (train@<method>-<task>-<seed>)
            assert _accepts(tmp_path, _with(_base_params(), slot, value)), (slot, value)


def _accepted_params(tmp_path: Path) -> tuple[dict, dict[str, list[str]]]:
    """One params.yaml holding every candidate value the schema accepts, each in its slot."""
    params = _base_params()
    accepted: dict[str, list[str]] = {s: [] for s in SLOTS}
    for slot in SLOTS:
        for value in HOSTILE + SAFE:
            if _accepts(tmp_path, _with(_base_params(), slot, value)):
                accepted[slot].append(value)
    domains = ["d1", "d2", *accepted["domain"]]
    params["data"]["domains"] = list(dict.fromkeys(domains))
    params["tasks"] = {"t": {"source": "d1", "target": "d2"}}
    for i, key in enumerate(accepted["task"]):
        params["tasks"][key] = {"source": domains[i % len(domains)], "target": domains[(i + 1) % len(domains)]}
    for i, dom in enumerate(accepted["domain"]):
        params["tasks"][f"dom{i}"] = {"source": "d1", "target": dom}
    params["analysis"]["tasks"] = ["t", *accepted["task"]]
    params["methods"].update({m: {} for m in accepted["method"]})
    # the same pattern as methods; a name may not be in both (they share models/<dataset>/<backbone>/<name>/)
    params["baselines"]["methods"].update({f"b{m}"[:64]: {"algorithm": "coral"} for m in accepted["baseline"]})
    params["baselines"]["finetune"].update({f"f{m}"[:64]: {"algorithm": "dann"} for m in accepted["finetuned"]})
    (tmp_path / "all.yaml").write_text(yaml.safe_dump(params))
    load_params(tmp_path / "all.yaml")
    return params, accepted


def _project(tmp_path: Path, params: dict) -> Path:
    proj = tmp_path / "proj"
    (proj / ".dvc").mkdir(parents=True)
    (proj / ".dvc" / "config").write_text("")
    shutil.copy(REPO_ROOT / "dvc.yaml", proj / "dvc.yaml")
    (proj / "params.yaml").write_text(yaml.safe_dump(params))
    subprocess.run(["git", "init", "-q"], cwd=proj, check=True)
    return proj


def _stand_in_python(bindir: Path, record: Path) -> None:
    """A ``python`` on PATH that appends its argv (as JSON) to ``record`` and does nothing else."""
    bindir.mkdir()
    exe = bindir / "python"
    exe.write_text(f"#!{sys.executable}\nimport json, sys\n"
                   f"open({str(record)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)


FLAGS = {"--domain": "domain", "--task": "task", "--method": "method", "--gamma": None, "--seed": None}


def test_every_stage_command_gets_each_value_as_one_argument(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from workflow import dvcdag

    params, accepted = _accepted_params(tmp_path)
    proj = _project(tmp_path, params)
    monkeypatch.chdir(proj)
    stages = dvcdag.load_stages(proj)
    record = tmp_path / "argv.jsonl"
    _stand_in_python(tmp_path / "bin", record)
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    seen: dict[str, set[str]] = {"domain": set(), "task": set(), "method": set()}
    for st in stages:
        record.unlink(missing_ok=True)
        run = subprocess.run(["bash", "-c", st.cmd], cwd=proj, env=env, capture_output=True, text=True, timeout=60)
        assert run.returncode == 0 and run.stdout == run.stderr == "", (st.name, st.cmd, run.stderr)
        lines = record.read_text().splitlines()
        assert len(lines) == 1, (st.name, st.cmd, lines)  # one command, no second one smuggled in
        argv = json.loads(lines[0])
        kind = st.name.split("@")[0]
        module = {"evaluate_baseline": "evaluate", "evaluate_finetuned": "evaluate"}.get(kind, kind)
        assert argv[:2] == ["-m", f"stages.{module}"], (st.name, argv)
        rest = argv[2:]
        assert len(rest) % 2 == 0, (st.name, argv)
        for flag, value in zip(rest[::2], rest[1::2]):
            assert flag in FLAGS, (st.name, argv)
            assert not value.startswith("-"), (st.name, argv)  # a value never reads as an option
            if FLAGS[flag]:
                seen[FLAGS[flag]].add(value)
    assert not list(proj.rglob(f"*{PWNED}*")) and not list(tmp_path.glob(f"*{PWNED}*"))
    # every domain, task and method of params.yaml arrived whole, as one argument
    assert seen["domain"] == set(params["data"]["domains"])
    assert seen["task"] == set(params["tasks"])
    assert seen["method"] == set(params["methods"]) | set(params["baselines"]["methods"]) | set(
        params["baselines"]["finetune"])
    assert set(accepted["domain"]) >= {v for v in SAFE if len(v) <= 64}


def test_every_cmd_in_dvc_yaml_quotes_its_interpolations() -> None:
    """Belt and braces: every ``${...}`` in a ``cmd`` sits inside single quotes."""
    import re

    spec = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())
    cmds = [(st.get("do") or st)["cmd"] for st in spec["stages"].values()]
    assert any("${" in c for c in cmds)
    for cmd in cmds:
        for m in re.finditer(r"\$\{[^}]*\}", cmd):
            assert cmd[m.start() - 1] == "'" and cmd[m.end()] == "'", cmd
