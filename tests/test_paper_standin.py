"""The main job, proven end to end on faithful stand-ins of what cannot be downloaded here.

An Office-Home-shaped archive (OfficeHomeDataset_10072016/{Art,Clipart,Product,Real World}/<the 65 real
classes>/, two small JPEGs each), unpacked as a local mirror (``data.mirror``: the archive's layout, the
registry's checksums stay what they are: no test-only switch changes what a run accepts), and a VGG-F .mat
with the real file's layer list (reduced widths) placed where a user puts it by hand (``downloads/``, no
checksum is published for it). Then the README's main command runs on the
default params.yaml with only epoch/size knobs changed (epochs, K, the fc widths of the small VGG-F, a
subset of the tasks and comparison methods) and one extra head-mode method: download, weights, preprocess,
moments, extract, train (fine-tune AND head), evaluate, baselines (DAN, DANN, NoDA and SuH fine-tuned end to end
as params.yaml's defaults say, ITQ on features), analysis (Figure 3 with the fine-tuned DAN's fc7), report.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from dahash.data.archives import safe_extract
from dahash.data.datasets import OFFICE_HOME
from standin import vggf_fc_width, write_office_home_zip, write_vggf_mat
from test_pipeline import copy_checkout

pytestmark = pytest.mark.pipeline

WIDTH = 1 / 32  # VGG-F channel counts x 1/32: conv 2-8 channels, fc6/fc7 128
TASKS = ["Ar_Cl", "Ar_Pr", "Ar_Rw", "Cl_Ar"]  # the Table 4 protocol's tasks (Art -> others, Clipart -> Art)


def _run(proj: Path, *cmd: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(cmd, cwd=proj, env=env, capture_output=True, text=True, timeout=1800)
    if check and res.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout[-5000:]}\n{res.stderr[-8000:]}")
    return res


@pytest.fixture(scope="module")
def standin(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    proj = tmp_path_factory.mktemp("standin") / "proj"
    proj.mkdir()
    copy_checkout(proj)
    archive = write_office_home_zip(proj.parent / "OfficeHomeDataset_10072016.zip", list(OFFICE_HOME.classes))
    mirror = safe_extract(archive, proj.parent / "office-home mirror")
    write_vggf_mat(proj / "downloads" / "imagenet-vgg-f.mat", width=WIDTH)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(PYTHONPATH=f"{proj / 'src'}{os.pathsep}{proj}", DAHASH_OFFLINE="1", OMP_NUM_THREADS="1",
               GIT_AUTHOR_NAME="dahash test", GIT_COMMITTER_NAME="dahash test",
               GIT_AUTHOR_EMAIL="test@dahash.invalid", GIT_COMMITTER_EMAIL="test@dahash.invalid")
    params = yaml.safe_load((proj / "params.yaml").read_text())
    assert params["data"]["dataset"] == "office_home" and params["backbone"]["name"] == "vggf"
    assert params["train"]["mode"] == "finetune"  # the default is the paper's protocol
    fc = vggf_fc_width(WIDTH)
    params["data"]["mirror"] = str(mirror)
    params["train"].update(epochs=2, k_per_class=1, hidden_dims=[fc, fc])
    params["extract"]["batch_size"] = 64
    params["methods"]["dah_head"] = {"mode": "head"}
    finetuned = ("dan", "dann", "noda", "suh")
    assert all(params["baselines"]["finetune"][m] == {} for m in finetuned)  # the paper's protocol
    params["baselines"]["finetune"] = {m: params["baselines"]["finetune"][m] for m in finetuned}
    params["baselines"]["methods"] = {"itq": params["baselines"]["methods"]["itq"]}
    for m in ("noda", "suh"):  # DAN and DANN at train.epochs (2), the DPSH runs at 1 (time)
        params["baselines"]["finetune"][m] = {"epochs": 1}
    params["tasks"] = {k: params["tasks"][k] for k in TASKS}
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _run(proj, "git", "init", "-q", env=env)
    return proj, env


def test_main_command_runs_the_paper_job_on_the_standins(standin: tuple[Path, dict[str, str]]) -> None:
    proj, env = standin
    res = _run(proj, "snakemake", "--cores", "2", "--resources", "gpu=1", env=env)
    log = res.stdout + res.stderr
    assert "from the mirror" in log
    source = json.loads((proj / "data" / "raw" / "office_home" / "SOURCE.json").read_text())
    assert source["kind"] == "mirror" and set(source["counts"]) == {"Art", "Clipart", "Product", "RealWorld"}
    assert all(n == 65 * 2 for n in source["counts"].values())  # "Real World" -> RealWorld, every class
    moments = json.loads((proj / "data" / "moments" / "office_home" / "vggf.json").read_text())
    assert moments["interpolation"] == "bicubic" and set(moments["domains"]) == set(source["counts"])
    for domain in source["counts"]:  # head-mode features: pool5 of the stand-in VGG-F
        meta = json.loads((proj / "data" / "features" / "office_home" / "vggf" / domain / "meta.json").read_text())
        assert meta["shape"] == [130, 8 * 6 * 6]
    # ... computed with the authors' preprocessing: the mean of ALL the dataset's images subtracted (no std),
    # the full central square, bicubic (recomputed here for a few images of one domain)
    import numpy as np
    import torch

    from dahash.nn.augment import merge_moments, moments_from_dict
    from dahash.nn.backbones.vggf import load_vggf
    from dahash.nn.recipes import input_recipe

    merged = merge_moments(moments_from_dict(m) for m in moments["domains"].values())
    tf = input_recipe("vggf", merged).eval_transform()
    net = load_vggf(proj / "data" / "weights" / "vggf" / "imagenet-vgg-f.mat").eval()
    feats_dir = proj / "data" / "features" / "office_home" / "vggf" / "RealWorld"
    paths = json.loads((feats_dir / "meta.json").read_text())["paths"][:4]
    with torch.no_grad():
        ours = net.features(torch.stack([tf(proj / "data" / "raw" / "office_home" / p) for p in paths])).numpy()
    assert np.allclose(np.load(feats_dir / "features.npy")[:4], ours, rtol=1e-4, atol=1e-4)
    for method, mode in (("dah", "finetune"), ("dah_e", "finetune"), ("dah_head", "head")):
        for task in TASKS:
            run = json.loads((proj / "models" / "office_home" / "vggf" / method / task / "seed0" / "run.json")
                             .read_text())
            assert run["mode"] == mode
            metrics = json.loads((proj / "metrics" / "office_home" / method / task / "seed0.json").read_text())
            assert 0.0 <= metrics["accuracy"] <= 1.0 and 0.0 <= metrics["map"] <= 1.0
            assert metrics["n_target"] == 130 and metrics["hash_bits"] == 64
    models = proj / "models" / "office_home" / "vggf"
    for method in ("dan", "dann", "noda", "suh"):  # the comparison methods, fine-tuned end to end
        for task in TASKS:
            run = json.loads((models / method / task / "seed0" / "run.json").read_text())
            epochs = 2 if method in ("dan", "dann") else 1
            assert run["mode"] == "finetune" and run["epochs"] == epochs, run
            metrics = json.loads((proj / "metrics" / "office_home" / method / task / "seed0.json").read_text())
            assert metrics["n_target"] == 130
            history = (models / method / task / "seed0" / "history.csv").read_text().splitlines()
            assert len(history) == 1 + epochs  # header + one row per epoch
    assert "mmd" in (models / "dan" / "Ar_Cl" / "seed0" / "history.csv").read_text().splitlines()[0]
    assert "lambda" in (models / "dann" / "Ar_Cl" / "seed0" / "history.csv").read_text().splitlines()[0]
    dan = np.load(models / "dan" / "Ar_Cl" / "seed0" / "codes.npz")  # fc7 of the fine-tuned network: Figure 3
    assert dan["f_source"].shape == (130, vggf_fc_width(WIDTH)) and dan["pred_target"].shape == (130,)
    analysis = json.loads((proj / "analysis" / "office_home" / "Ar_Cl" / "analysis.json").read_text())
    assert set(analysis["a_distance"]) == {"backbone", "dan", "dah"}
    assert not (proj / "checkpoints" / "office_home" / "vggf" / "dan").exists() or not any(
        (proj / "checkpoints" / "office_home" / "vggf" / "dan").rglob("*.pt"))  # deleted once every task is written
    results = (proj / "report" / "results.md").read_text()
    for method in ("dan", "dann", "noda", "suh"):
        assert f"{method}: finetune;" in results or f"{method}: finetune " in results, method
    assert "itq: features" in results and "dah_head: head (NOT the paper's: finetune)" in results
    assert "SuH uses target labels" in results
    # the paper's Table 3 (accuracy) and Table 4 (mAP) columns beside ours: dataset and backbone match
    assert "paper DAH" in results
    assert "31.64" in results  # DAH, Ar -> Cl, Table 3
    assert "30.2" in results   # DAH, Clipart (from Art), Table 4 (0.302)
    assert "dah: finetune" in results and "dah_head: head" in results  # which mode produced the numbers
    html = (proj / "report" / "index.html").read_text()
    assert "Table 3" in html or "paper" in html
    status = _run(proj, "dvc", "status", env=env).stdout  # all done but the stage DVC runs every time
    assert "up to date" in status or status.split() == ["mirror_state:", "always", "changed"], status
