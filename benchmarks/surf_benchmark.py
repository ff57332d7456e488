"""The classic 12-task SURF-800 benchmark of the shallow baselines on Office-Caltech-10 (GFK, JDA, CORAL papers).

Target accuracy (%) of SourceOnly-1NN, TCA, GFK, CORAL and JDA on every source -> target task, with each paper's
SURF setting; the features are read by :mod:`dahash.data.surf` (the library's reader), preprocessed per domain
with :func:`dahash.data.surf.surf_preprocess`.

    python benchmarks/surf_benchmark.py ../shared/data/office-caltech-10/features [--methods GFK JDA]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from dahash.data.surf import DOMAINS, _check_domain, load_surf, surf_preprocess  # noqa: E402

def default_methods() -> dict[str, Callable[[], Any]]:
    """Factories of the five table columns, with each paper's Office-Caltech-10 SURF setting.

    ``SourceOnly-1NN``; ``TCA`` (linear, ``dim=100``, ``mu=1``); ``GFK`` (``dim=20``); ``CORAL``
    (``eps=1``, LinearSVC ``C=1``); ``JDA`` (linear, ``dim=100``, ``lambda=1``, ``T=10``).
    """
    from dahash.baselines import CORAL, GFK, JDA, TCA, SourceOnly

    return {
        "SourceOnly-1NN": lambda: SourceOnly("1nn"),
        "TCA": lambda: TCA(dim=100, mu=1.0),
        "GFK": lambda: GFK(dim=20),
        "CORAL": lambda: CORAL(eps=1.0, C=1.0),
        "JDA": lambda: JDA(dim=100, lam=1.0, n_iter=10),
    }


def surf_benchmark(folder: str | Path, methods: Mapping[str, Callable[[], Any]] | None = None,
                   tasks: Sequence[tuple[str, str]] | None = None,
                   log: Callable[[str], None] | None = None) -> pd.DataFrame:
    """Target accuracy (%) of each method on each source->target task, SURF-800 features.

    Every domain is preprocessed on its own with :func:`surf_preprocess`; each method is fitted
    with ``fit(Xs, ys, Xt)`` (all source labels, no target labels) and scored on all target
    points. ``tasks`` defaults to the 12 ordered pairs of :data:`DOMAINS`; rows are named
    ``"A->C"`` etc. (initial letters), columns follow ``methods`` (default
    :func:`default_methods`). ``log`` (e.g. ``print``) receives one line per finished task.
    """
    methods = dict(default_methods() if methods is None else methods)
    if not methods:
        raise ValueError("methods must name at least one method")
    if tasks is None:
        tasks = [(a, b) for a in DOMAINS for b in DOMAINS if a != b]
    for src, tgt in tasks:
        _check_domain(src)
        _check_domain(tgt)
    needed = sorted({d for task in tasks for d in task})
    data = {d: load_surf(folder, d) for d in needed}
    feats = {d: surf_preprocess(v.features) for d, v in data.items()}
    rows: dict[str, dict[str, float]] = {}
    for src, tgt in tasks:
        name = f"{src[0].upper()}->{tgt[0].upper()}"
        row: dict[str, float] = {}
        t0 = time.perf_counter()
        for col, make in methods.items():
            pred = make().fit(feats[src], data[src].labels, feats[tgt]).predict(feats[tgt])
            row[col] = 100.0 * float(np.mean(pred == data[tgt].labels))
        rows[name] = row
        if log is not None:
            cells = "  ".join(f"{k}={v:.1f}" for k, v in row.items())
            log(f"{name}: {cells}  ({time.perf_counter() - t0:.0f} s)")
    table = pd.DataFrame.from_dict(rows, orient="index")[list(methods)]
    table.loc["mean"] = table.mean(axis=0)
    return table


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``python benchmarks/surf_benchmark.py FOLDER [--methods NAME ...]`` prints the 12-task table (%)."""
    parser = argparse.ArgumentParser(prog="python benchmarks/surf_benchmark.py", description=main.__doc__)
    parser.add_argument("folder", help="the features folder holding surf/ (and surf_imgnames/)")
    parser.add_argument("--methods", nargs="+", default=None, help="subset of the default columns")
    args = parser.parse_args(argv)
    methods = default_methods()
    if args.methods:
        unknown = sorted(set(args.methods) - set(methods))
        if unknown:
            parser.error(f"unknown methods {unknown}; choose from {sorted(methods)}")
        methods = {k: methods[k] for k in args.methods}
    table = surf_benchmark(args.folder, methods, log=lambda line: print(line, flush=True))
    print()
    print(table.to_markdown(floatfmt=".1f") if _has_tabulate() else table.round(1).to_string())
    return 0


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    raise SystemExit(main())
