"""A real browser on what users look at (issue 13): the MLflow UI over a store the stages wrote, and the report.

Debian's ``chromium`` (headless, ``--dump-dom`` after ``--virtual-time-budget`` ms of the page's own timers, so
the MLflow JS app has rendered) loads:

* the experiment's runs page in MLflow's model-training view (``?workflowType=machine_learning``) of
  ``mlflow server`` started on 127.0.0.1 (a free port) over the store of
  :func:`tests.test_tracking_runs.build_tracked_project` (DAH seeds 0 and 1, CORAL, run by the stages'
  own code): the parent runs and the run count appear;
* one DAH run's page: its metrics with the store's values, its parent run, its source (script, git commit),
  its duration, and its dataset inputs (name, DVC md5 digest, context);
* the report (``dahash.report.page.render_report``, what the report stage renders, on the same project's metrics
  and PR curves): a copy of index.html with a script appended that writes, once the page has loaded, every
  ``<img>``'s ``complete`` and ``naturalWidth`` into the DOM; each image must have loaded (width > 0).

The server runs in its own session and is stopped by its PID (SIGTERM, then SIGKILL after 10 s). Every
process has a timeout. The DOM assertions' inputs are printed (``-s`` shows them). Marked ``browser``; skipped,
saying why, where no chromium is installed (CI installs Debian's ``chromium`` best-effort).
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from conftest import free_port, wait_until_answering
from stages import tracking
from tests.test_baseline_stage import DATASET, TASK, stages_rooted_at
from tests.test_tracking_runs import EXPERIMENT, Tracked, build_tracked_project

pytestmark = pytest.mark.browser

CHROMIUM = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)


def dom_text(dom: str) -> str:
    """The visible text of a dumped DOM (scripts and styles dropped, tags to spaces, whitespace collapsed)."""
    dom = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", dom, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", dom))).strip()


def dump_dom(url: str, profile: Path, budget_ms: int = 20000) -> str:
    """The DOM of ``url`` after ``budget_ms`` of virtual time in headless chromium (hang guard 180 s)."""
    cmd = [CHROMIUM, "--headless", "--disable-gpu", "--no-first-run", f"--user-data-dir={profile}",
           f"--virtual-time-budget={budget_ms}", "--dump-dom", url]
    if os.geteuid() == 0:  # chromium refuses to run as root with its sandbox
        cmd.insert(1, "--no-sandbox")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


@pytest.fixture(scope="module")
def tracked(tmp_path_factory: pytest.TempPathFactory, one_torch_thread: None) -> Iterator[Tracked]:
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH: install Debian's chromium (apt-get install chromium) to run the browser "
                    "checks")
    root = tmp_path_factory.mktemp("browser") / "proj"
    root.mkdir()
    t = build_tracked_project(root)
    with stages_rooted_at(root):
        yield t


@pytest.fixture(scope="module")
def server(tracked: Tracked, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``mlflow server`` over the tracked project's store on 127.0.0.1; stopped by PID, bounded in time."""
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{tracked.root / 'mlflow.db'}",
             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            cwd=tracked.root, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_answering(url + "/health", proc, log, within=120, every=0.5)
        yield url
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # its own session: the server and its workers
            proc.wait(timeout=10)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _runs() -> dict:
    c = tracking.client()
    exp = c.get_experiment_by_name(EXPERIMENT)
    return exp.experiment_id, {r.info.run_name: r for r in c.search_runs([exp.experiment_id])}


def test_runs_page_lists_the_runs_in_the_model_training_view(server: str, tmp_path: Path) -> None:
    exp_id, runs = _runs()
    text = dom_text(dump_dom(f"{server}/#/experiments/{exp_id}?workflowType=machine_learning", tmp_path / "p"))
    print("RUNS PAGE:", text[:1500])
    assert EXPERIMENT in text
    assert f"dah:{TASK}" in text and f"coral:{TASK}" in text  # the parent runs (children folded under them)
    assert f"{len(runs)} matching runs" in text  # 2 parents + 3 children
    assert "Dataset" in text  # the runs table's dataset column
    assert "Judges" not in text and "Sessions" not in text  # not the GenAI view's side bar


def test_run_page_shows_metrics_parent_source_and_datasets(server: str, tracked: Tracked, tmp_path: Path) -> None:
    exp_id, runs = _runs()
    run = runs[f"dah:{TASK}:seed0"]
    text = dom_text(dump_dom(f"{server}/#/experiments/{exp_id}/runs/{run.info.run_id}?workflowType=machine_learning",
                             tmp_path / "p"))
    print("RUN PAGE:", text[:3000])
    for key in ("accuracy", "map", "total", "train_seconds"):  # metric name then its value, as the store holds it
        assert f" {key} {run.data.metrics[key]!r} " in f" {text} ", key
    assert f"Parent run dah:{TASK}" in text
    assert "Source train.py" in text and tracked.commit[:7] in text
    assert "Duration" in text and "Status Finished" in text
    first = next(i for i in run.inputs.dataset_inputs if i.dataset.name.startswith("src-"))
    assert f"Datasets {first.dataset.name} ({first.dataset.digest}) source +1" in text  # +1: the target's


def test_report_images_all_load(tracked: Tracked, tmp_path: Path) -> None:
    from dahash.report.page import collect_records, render_report

    root = tracked.root
    metrics = sorted((root / "metrics" / DATASET).glob("*/*/seed*.json"))
    records = collect_records(metrics)
    curves = {(r["method"], r["task"]): pd.read_csv(root / "plots" / "pr" / DATASET / r["method"] / r["task"]
                                                     / f"seed{r['seed']}.csv")
              for r in records if r["seed"] == 0}
    out = tmp_path / "report"
    written = render_report(records, curves, out, title="browser check", protocol={"rules": "test"},
                            tasks=[TASK], domains=["src", "tgt"])
    images = re.findall(r'<img[^>]+src="([^"]+)"', (out / "index.html").read_text())
    assert images and all(not s.startswith("data:") for s in images)  # files beside the page
    assert set(images) <= set(written)
    probe = ("<script>window.addEventListener('load', () => { const out = document.createElement('pre');"
             " out.id = 'imgcheck'; out.textContent = JSON.stringify(Array.from(document.images, i =>"
             " [i.getAttribute('src'), i.complete, i.naturalWidth]));"
             " document.body.appendChild(out); });</script>")
    page = (out / "index.html").read_text().replace("</body>", probe + "</body>")
    (out / "check.html").write_text(page)  # beside index.html: the same relative image paths
    dom = dump_dom((out / "check.html").as_uri(), tmp_path / "p", budget_ms=5000)
    found = re.search(r'<pre id="imgcheck">(.*?)</pre>', dom, flags=re.S)
    assert found, dom_text(dom)[:1000]
    result = json.loads(html.unescape(found.group(1)))
    print("REPORT IMAGES:", result)
    assert [r[0] for r in result] == images
    assert all(complete and width > 0 for _, complete, width in result), result
    # the check can fail: a missing image is reported with width 0
    (out / images[0]).unlink()
    dom = dump_dom((out / "check.html").as_uri(), tmp_path / "p", budget_ms=5000)
    broken = json.loads(html.unescape(re.search(r'<pre id="imgcheck">(.*?)</pre>', dom, flags=re.S).group(1)))
    assert broken[0][2] == 0 and all(w > 0 for _, _, w in broken[1:])


def test_ui_group_by_method_gives_the_reports_means(server: str, tracked: Tracked) -> None:
    """docs/mlflow.md's UI recipe, clicked in the browser: search ``tags.role = 'seed'``, Group by -> Tags ->
    method, add the ``accuracy`` column: each method's group holds its seed runs only (the parents, which carry
    no ``method`` tag, go to "Additional runs") and the group's average is the mean of the metrics files the
    report reads (oracle: those files and numpy). Playwright drives Debian's chromium."""
    import numpy as np
    from playwright.sync_api import sync_playwright

    exp_id, runs = _runs()
    expected = {}
    for method in ("dah", "coral"):
        files = sorted((tracked.root / "metrics" / DATASET / method / TASK).glob("seed*.json"))
        expected[method] = (len(files), float(np.mean([json.loads(f.read_text())["accuracy"] for f in files])))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"] if os.geteuid() == 0 else [])
        try:
            page = browser.new_page(viewport={"width": 2000, "height": 1200})
            page.set_default_timeout(60_000)
            page.goto(f"{server}/#/experiments/{exp_id}?workflowType=machine_learning")
            search = page.get_by_placeholder(re.compile("metrics.rmse"))
            search.fill("tags.role = 'seed'")
            search.press("Enter")
            page.get_by_text(f"{len(runs)} matching runs").wait_for()  # children + the parents the UI fetches
            page.get_by_text("Group by", exact=True).click()
            page.get_by_text("method", exact=True).first.click()  # the Tags section comes first
            page.keyboard.press("Escape")
            page.get_by_text("Columns", exact=True).click()
            page.keyboard.type("accuracy")
            page.get_by_text("accuracy", exact=True).first.click()  # accuracy, then accuracy_mean, accuracy_std
            page.keyboard.press("Escape")
            for method, (n, mean) in expected.items():
                group = page.locator(f"[role=row][row-id='tag.method.{method}']").first
                group.wait_for()
                cell = page.locator(f"[role=row][row-id='tag.method.{method}'] [role=gridcell][col-id*='accuracy']")
                shown = cell.first.inner_text()
                print(f"UI group {method}: {group.inner_text()!r} accuracy {shown!r}; report mean {mean}")
                assert re.search(rf"Group: {method}\s+{n}\b", group.inner_text()), group.inner_text()
                assert float(shown.split()[0]) == pytest.approx(mean, abs=1e-12), shown
            parents = sum(1 for r in runs.values() if r.data.tags.get("role") == "parent")
            assert re.search(rf"Additional runs\s+{parents}\b", page.inner_text("body"))
        finally:
            browser.close()
