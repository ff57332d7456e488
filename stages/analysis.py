"""Stage `analysis --task KEY`: the paper's Figure 3 for one task of ``analysis.tasks``: A-distance and t-SNE of three
feature kinds.

Needs (checked with params.yaml before anything runs, stages.common.check_cross_keys): ``methods.dah``,
``dan`` in ``baselines.methods`` or ``baselines.finetune`` and a backbone with pretrained features. dvc.yaml has one
analysis stage per task of ``analysis.tasks``,
so with ``analysis.tasks: []`` (e.g. a run without DAH or DAN) the stage is not in the DAG at all.

Feature kinds (source and target items of the task):
* ``backbone``: the extracted features the heads are trained on (the paper's "Deep (VGG-F)");
* ``dan``: fc7 of the DAN baseline (seed baselines.seed) as its run stored it: under ``baselines.finetune`` (the
  paper's) the fine-tuned DAN network's fc7 on the images (evaluation transform), under ``baselines.methods``
  (head mode) the head's fc7 on the cached features;
* ``dah``: fc7 of the DAH model (methods.dah, first of train.seeds), recomputed from its model.pt (head mode:
  on the cached features; fine-tune mode: the fine-tuned network on the images).
A-distance: 2 (1 - 2 err), err of a linear SVM telling source from target, 5-fold cross-validation
(dahash.eval.analysis.a_distance). t-SNE: up to ``analysis.max_points`` items per domain (seeded sample), the
first 10 classes, coloured by class (labels are read here only to colour the plot: this runs after training).
Writes analysis/<dataset>/<KEY>/ (analysis.json, tsne_<kind>.png) and plots/a_distance/<dataset>/<KEY>.csv
(task, features, a_distance; a DVC bar plot).
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from stages.common import (StageError, atomic_path, load_arrays, load_params, main_wrapper, producer_stage, task_of,
                           write_json)
from stages.features import domain_rows, load_features
from stages.paths import a_distance_csv, analysis_dir, run_dir, weights_file
from stages.runs import penultimate_features

KINDS = ("backbone", "dan", "dah")


def dah_fc7(model_dir, xs: np.ndarray, xt: np.ndarray, images: tuple[list, list] | None = None,
            backbone: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """fc7 (after ReLU) of a DAH model for the task's source and target items, ``(n, h2)`` each.

    Head mode: the head on the cached features ``xs``/``xt``. Fine-tune mode: the fine-tuned trunk and head
    on the ``images`` (source, target: CachedImages of the image cache, or paths), preprocessed as at training's
    evaluation (the model's saved normalisation). model.pt is read by :func:`dahash.train.run_model.read_model_file`
    (``weights_only=True``: a shared file must not run code).
    """
    import torch  # torch and scikit-learn are imported where used: `--help` stays fast

    from dahash.train.run_model import ModelFileError, head_from_state, read_model_file

    try:
        state = read_model_file(model_dir / "model.pt")["state_dict"]
    except ModelFileError as exc:
        raise StageError(str(exc)) from exc
    if "trunk" in state:
        return _finetuned_fc7(state, images, backbone, model_dir)
    head = head_from_state(state)
    with torch.no_grad():
        return tuple(head(torch.from_numpy(x).float()).fc7.numpy() for x in (xs, xt))  # type: ignore[return-value]


def _finetuned_fc7(state: dict, images, backbone: str | None, model_dir) -> tuple[np.ndarray, np.ndarray]:
    from dahash.nn.augment import EvalTransform
    from dahash.train.finetune import encode_images
    from dahash.train.run_model import head_from_state, trained_trunk

    if images is None or backbone is None:
        raise StageError(f"{model_dir}/model.pt is a fine-tuned model: its fc7 needs the task's images")
    norm = state["normalisation"]
    head = head_from_state(state["head"])
    trunk = trained_trunk(backbone, state["trunk"], weights_file(backbone) if backbone == "vggf" else None,
                          feature_dim=int(state["head"]["fc6.weight"].shape[1]), input_size=int(norm["size"]))
    tf = EvalTransform(int(norm["size"]), np.asarray(norm["mean"]), np.asarray(norm["std"]), channels=len(norm["mean"]),
                       crop_fraction=float(norm["eval_crop"]), interpolation=norm["interpolation"])
    return tuple(encode_images(trunk, head, paths, tf, output="fc7", progress=f"dah fc7 {side}")  # type: ignore[misc]
                 for side, paths in zip(("source", "target"), images))


def sample(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of a uniform sample of ``min(n, k)`` of ``range(n)``."""
    return np.sort(rng.choice(n, size=min(n, k), replace=False))


@main_wrapper
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--task", required=True, help="a key of analysis.tasks")
    args = ap.parse_args(argv)
    params = load_params()
    if args.task not in params["analysis"]["tasks"]:
        raise StageError(f"--task {args.task}: not in analysis.tasks {params['analysis']['tasks']} of params.yaml")
    dataset = params["data"]["dataset"]
    with atomic_path(analysis_dir(dataset, args.task)) as tmp:
        record = analyse_task(params, args.task, tmp)
    rows = [{"task": args.task, "features": k, "a_distance": record["a_distance"][k]} for k in KINDS]
    with atomic_path(a_distance_csv(dataset, args.task)) as tmp:
        pd.DataFrame(rows, columns=["task", "features", "a_distance"]).to_csv(tmp, index=False)


def _cached_images(params: dict, task: dict, src_paths, tgt_paths) -> tuple | None:
    """A fine-tuned DAH's images: the task's domains from the decode-once image cache (as training encoded them);
    None in head mode (its fc7 comes from the cached features)."""
    if (params["methods"].get("dah") or {}).get("mode", params["train"]["mode"]) != "finetune":
        return None
    from stages.image_cache import open_cached

    return open_cached(params, task["source"], list(src_paths)), open_cached(params, task["target"], list(tgt_paths))


def analyse_task(params: dict, key: str, out) -> dict:
    """A-distance and t-SNE PNGs of the three feature kinds for task ``key``, into folder ``out``."""
    from dahash.eval.analysis import a_distance, plot_tsne, tsne_embedding

    task = task_of(params, key)
    dataset, backbone = params["data"]["dataset"], params["backbone"]["name"]
    xs, src_paths = load_features(dataset, backbone, task["source"])
    xt, tgt_paths = load_features(dataset, backbone, task["target"])
    feats = {"backbone": penultimate_features(backbone, xs, xt)}
    dan_dir = run_dir("models", params, "dan", key, params["baselines"]["seed"])
    stage = f"{producer_stage(params, 'dan')}@dan"
    try:
        codes = load_arrays(dan_dir / "codes.npz", redo=f"dvc repro {stage}")
        feats["dan"] = (codes["f_source"], codes["f_target"])
    except (FileNotFoundError, KeyError) as exc:
        raise StageError(f"{dan_dir}: no DAN features; run {stage}") from exc
    feats["dah"] = dah_fc7(run_dir("models", params, "dah", key, params["train"]["seeds"][0]), xs, xt,
                           _cached_images(params, task, src_paths, tgt_paths), backbone)

    ys = domain_rows(dataset, task["source"])["label"].to_numpy()
    yt = domain_rows(dataset, task["target"])["label"].to_numpy()
    rng = np.random.default_rng(0)
    k = params["analysis"]["max_points"]
    si, ti = sample(len(ys), k, rng), sample(len(yt), k, rng)
    keep = np.concatenate([np.isin(ys[si], np.arange(10)), np.isin(yt[ti], np.arange(10))])
    domain = np.array(["source"] * len(si) + ["target"] * len(ti))[keep]
    labels = np.concatenate([ys[si], yt[ti]])[keep]
    record = {"task": key, "source": task["source"], "target": task["target"], "dataset": dataset,
              "backbone": backbone, "a_distance": {}, "tsne": {}, "n_points": {"source": len(si), "target": len(ti)}}
    out.mkdir()
    from dahash.progress import note, progress

    # minutes per step on a large task (A->C: 9 min in all): a bar, so a long job is seen to move; each step shows
    # its own progress too (the A-distance's SVM fits, t-SNE's start and stages). DAHASH_PROGRESS=0: silent
    with progress(total=2 * len(KINDS), desc=f"analysis {key}", unit="step") as bar:
        for kind in KINDS:
            fs, ft = feats[kind]
            bar.set_postfix_str(f"{kind}: A-distance (5-fold SVM)")
            record["a_distance"][kind] = a_distance(fs, ft, seed=0, progress=f"{kind} A-distance")
            bar.update()
            both = np.concatenate([fs[si], ft[ti]])[keep]
            bar.set_postfix_str(f"{kind}: t-SNE of {len(both)} points")
            emb = tsne_embedding(both, seed=0, perplexity=min(30.0, (len(both) - 1) / 3), progress=kind)
            name = f"tsne_{kind}.png"
            plot_tsne(emb, domain, labels, out / name, title=f"{kind}: {task['source']} -> {task['target']}")
            record["tsne"][kind] = name
            bar.update()
            note(f"[analysis {key}] {kind}: A-distance {record['a_distance'][kind]:.3f}")
    write_json(out / "analysis.json", record)
    return record


if __name__ == "__main__":
    main()
