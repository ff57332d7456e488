"""Stage `gamma_select --task KEY`: the gamma DAH trains with on task KEY.

``train.gamma: auto``: the swept gamma whose domain classifier has the LARGEST held-out error
(dahash.gamma.select_gamma, paper section 5.2); otherwise the fixed ``train.gamma``. Writes
sweeps/gamma/<dataset>/<backbone>/<KEY>.selected.json, which the train stage reads.
"""

from __future__ import annotations

import argparse
import json

from dahash.gamma import select_gamma
from stages.common import StageError, load_params, main_wrapper, task_of, write_json
from stages.gamma_sweep import sweep_dir


def selected_file(params: dict, task: str):
    """sweeps/gamma/<dataset>/<backbone>/<task>.selected.json."""
    d = sweep_dir(params, task)
    return d.with_name(f"{d.name}.selected.json")


def selected_gamma(params: dict, task: str) -> float:
    """The gamma recorded by gamma_select for ``task`` (StageError when the stage has not run)."""
    f = selected_file(params, task)
    try:
        return float(json.loads(f.read_text())["gamma"])
    except FileNotFoundError as exc:
        raise StageError(f"{f}: missing; run `dvc repro gamma_select@{task}` first") from exc


@main_wrapper
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--task", required=True)
    args = ap.parse_args(argv)
    params = load_params()
    task_of(params, args.task)
    fixed = params["train"]["gamma"]
    if fixed != "auto":
        record = {"task": args.task, "gamma": float(fixed), "source": "params.yaml train.gamma"}
    else:
        results = [json.loads(p.read_text()) for p in sorted(sweep_dir(params, args.task).glob("*.json"))]
        grid = {float(g) for g in params["gamma_sweep"]["grid"]}
        errors = {r["gamma"]: r["domain_error"] for r in results if "domain_error" in r and r["gamma"] in grid}
        if set(errors) != grid:
            raise StageError(f"{sweep_dir(params, args.task)}: sweep results for {sorted(grid - set(errors))} missing; "
                             "run the gamma_sweep stages first")
        record = {"task": args.task, "gamma": select_gamma(errors), "source": "gamma sweep (largest domain error)",
                  "domain_errors": {str(g): e for g, e in sorted(errors.items())}}
    write_json(selected_file(params, args.task), record)
    print(f"[{args.task}] gamma = {record['gamma']:g} ({record['source']})")


if __name__ == "__main__":
    main()
