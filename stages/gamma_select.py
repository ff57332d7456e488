"""The gamma DAH trains with on a task: ``python -m stages.gamma_select --task KEY`` prints it.

Not a stage of its own: each training job calls :func:`selected_gamma` (cheap: a few JSON records and an argmax).
``train.gamma: auto``: the gamma of ``gamma_sweep.grid`` whose domain classifier has the LARGEST held-out error
among the task's gamma_sweep records (dahash.train.gamma.select_gamma, paper section 5.2); otherwise the fixed
``train.gamma``. With a fixed gamma no sweep is in the DAG (``gamma_sweep.grid: []``), so no job does nothing.
"""

from __future__ import annotations

import argparse
import json

from stages.common import StageError, load_params, main_wrapper, task_of
from stages.paths import sweep_dir


def sweep_errors(params: dict, task: str) -> dict[float, float]:
    """``{gamma: held-out domain-classifier error}`` of the task's sweep records, for every gamma of the grid.

    Records of gammas no longer in ``gamma_sweep.grid`` are ignored. StageError (naming the folder, the
    missing gammas and the stage to run) when a gamma of the grid has no record yet.
    """
    folder = sweep_dir(params, task)
    grid = {float(g) for g in params["gamma_sweep"]["grid"]}
    errors: dict[float, float] = {}
    for path in sorted(folder.glob("*.json")):
        record = json.loads(path.read_text())
        if "domain_error" in record and float(record["gamma"]) in grid:
            errors[float(record["gamma"])] = float(record["domain_error"])
    missing = sorted(grid - set(errors))
    if missing:
        raise StageError(f"{folder}: gamma sweep records for {missing} missing; run the gamma_sweep stages first "
                         f"(dvc repro gamma_sweep@{task}-{missing[0]})")
    return errors


def selected_gamma(params: dict, task: str) -> float:
    """The MK-MMD weight for ``task``: the fixed ``train.gamma``, or the sweep's choice with ``auto``."""
    from dahash.train.gamma import select_gamma

    fixed = params["train"]["gamma"]
    if fixed != "auto":
        return float(fixed)
    return float(select_gamma(sweep_errors(params, task)))


@main_wrapper
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", required=True)
    args = ap.parse_args(argv)
    params = load_params()
    task_of(params, args.task)
    gamma = selected_gamma(params, args.task)
    if params["train"]["gamma"] != "auto":
        print(f"[{args.task}] gamma = {gamma:g} (params.yaml train.gamma)")
        return
    errors = sweep_errors(params, args.task)
    shown = ", ".join(f"{g:g}: {e:.3f}" for g, e in sorted(errors.items()))
    print(f"[{args.task}] gamma = {gamma:g} (largest held-out domain-classifier error; {shown})")


if __name__ == "__main__":
    main()
