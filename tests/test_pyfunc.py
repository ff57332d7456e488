"""The MLflow pyfunc model of a trained run (issue 26 points 3-4): same codes as `dahash encode`, loaded from a
folder, from a run (runs:/) and from the registry (models:/), and served over HTTP by `mlflow models serve`."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from conftest import free_port, wait_until_answering
from dahash.codes.index import Index
from dahash.codes.serving import parse_code_hex
from tests.toy_run import head_run

mlflow = pytest.importorskip("mlflow")

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}", "OMP_NUM_THREADS": "1"}
REAL = REPO.parent.parent / "shared" / "data" / "office-caltech-10"


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> dict:
    """A head-mode EfficientNet-Lite0 run folder (random 64-bit head), two images (real Office-Caltech-10 ones
    when the shared data is here, else made here), and their codes from `dahash encode`."""
    tmp = tmp_path_factory.mktemp("pyfunc")
    run = head_run(tmp, (32, 32), 64)
    images = tmp / "images"
    images.mkdir()
    found = sorted((REAL / "images").rglob("*.jpg")) if REAL.is_dir() else []
    real = [found[0], found[-1]] if len(found) >= 2 else []
    if len(real) == 2:
        for i, p in enumerate(real):
            (images / f"{i}.jpg").write_bytes(p.read_bytes())
    else:
        rng = np.random.default_rng(0)
        for i in range(2):
            Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)).save(images / f"{i}.jpg")
    out = tmp / "index.parquet"
    subprocess.run([sys.executable, "-m", "dahash.cli", "encode", str(run), str(images), "-o", str(out), "-q",
                    "--no-labels"], env=ENV, check=True, capture_output=True, timeout=300)
    index = Index.from_parquet(out)
    assert index.paths == ["0.jpg", "1.jpg"]
    return {"tmp": tmp, "run": run, "images": images, "codes": index.codes, "real": len(real) == 2}


@pytest.fixture(scope="module")
def saved(toy: dict) -> Path:
    from stages.log_model import save_pyfunc

    return save_pyfunc(toy["run"], toy["tmp"] / "pyfunc")


def _codes(frame: pd.DataFrame) -> np.ndarray:
    assert (frame["error"] == "").all() and (frame["bits"] == 64).all(), frame
    return np.stack([parse_code_hex(c) for c in frame["code"]])


def test_saved_model_has_a_signature_and_no_pickle(saved: Path) -> None:
    from mlflow.models import Model

    m = Model.load(saved / "MLmodel")
    assert [c["name"] for c in m.signature.inputs.to_dict()] == ["image", "path"]
    assert [c["name"] for c in m.signature.outputs.to_dict()] == ["code", "bits", "error"]
    assert not list(saved.rglob("*.pkl")) and not list(saved.rglob("*.pickle"))
    export = next(saved.rglob("export.pt"))
    assert torch.load(export, weights_only=True)["format"] == "dahash-model-export"


def test_pyfunc_codes_equal_dahash_encode(toy: dict, saved: Path) -> None:
    model = mlflow.pyfunc.load_model(str(saved))
    files = [toy["images"] / "0.jpg", toy["images"] / "1.jpg"]
    by_bytes = model.predict(pd.DataFrame({"image": [f.read_bytes() for f in files]}))
    np.testing.assert_array_equal(_codes(by_bytes), toy["codes"])
    by_path = model.predict(pd.DataFrame({"path": [str(f) for f in files]}))
    np.testing.assert_array_equal(_codes(by_path), toy["codes"])
    bad = model.predict(pd.DataFrame({"image": [b"not an image", files[0].read_bytes()]}))
    assert bad["code"][0] == "" and bad["error"][0].startswith("cannot decode the image")
    assert bad["code"][1] == by_bytes["code"][0]


def test_logged_to_a_run_and_registered(toy: dict, tmp_path: Path, monkeypatch) -> None:
    from stages import log_model, tracking

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    c = tracking.client()
    exp = c.create_experiment("pyfunc-test", artifact_location=(tmp_path / "artifacts").as_uri())
    run_id = c.create_run(exp).info.run_id
    c.set_terminated(run_id)
    uri = log_model.log_pyfunc(run_id, toy["run"], register_as="dahash-toy")
    assert uri == f"runs:/{run_id}/model" and c.get_run(run_id).info.status == "FINISHED"
    mlflow.set_tracking_uri(tracking.tracking_uri())
    for u in (uri, "models:/dahash-toy/1"):
        model = mlflow.pyfunc.load_model(u)
        got = model.predict(pd.DataFrame({"image": [(toy["images"] / f"{i}.jpg").read_bytes() for i in (0, 1)]}))
        np.testing.assert_array_equal(_codes(got), toy["codes"])


def test_mlflow_models_serve_answers_with_the_codes(toy: dict, saved: Path) -> None:
    """`mlflow models serve -m <model> --env-manager local` on 127.0.0.1: POST two images, compare, stop it."""
    port = free_port()
    log = toy["tmp"] / "serve.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "mlflow", "models", "serve", "-m", str(saved),
                                 "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
                                env=ENV, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until_answering(f"http://127.0.0.1:{port}/ping", proc, log, within=180, every=1)
        images = [base64.b64encode((toy["images"] / f"{i}.jpg").read_bytes()).decode() for i in (0, 1)]
        body = json.dumps({"dataframe_split": {"columns": ["image"], "data": [[b] for b in images]}}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as r:
            answer = json.loads(r.read())
        got = pd.DataFrame(answer["predictions"])
        np.testing.assert_array_equal(_codes(got), toy["codes"])
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def test_searcher_loads_once_and_matches_the_cli_codes(toy: dict) -> None:
    """The loaded-once API: the model is built once, each query is encoded with it and searched; an image's own
    code comes back first at distance 0, and its code equals `dahash encode`'s."""
    from dahash.codes.export import Encoder
    from dahash.codes.serving import Searcher

    built = []
    real_init = Encoder.__init__

    def counting(self, *a, **k):
        built.append(1)
        real_init(self, *a, **k)

    s = Searcher(toy["run"], Index(toy["codes"], 64, ["0.jpg", "1.jpg"]), backend="scan")
    Encoder.__init__ = counting
    try:
        for i in (0, 1, 0):
            res = s.search([toy["images"] / f"{i}.jpg"], k=2)
            assert res.indices[0, 0] == i and res.distances[0, 0] == 0
    finally:
        Encoder.__init__ = real_init
    assert built == []
