"""Encoding speed and memory, and what one query costs (issue 26 point 5):
``python benchmarks/bench_encode_search.py [--images DIR]`` (default: the shared Office-Caltech-10 webcam folder).

A head-mode EfficientNet-Lite0 run folder with a random 64-bit DAH head is made in a temp folder (the backbone
dominates the cost; a trained head costs the same). Measured in one run:

* ``dahash encode``: wall seconds, images per second, peak resident memory of the process (getrusage);
* one ``dahash search INDEX IMAGE`` process: wall seconds (Python start, imports, model loading, encoding one
  image, search), and the same with ``-k 10 --rerank``;
* :class:`dahash.codes.serving.Searcher` (model and index loaded once): load seconds, then the median ms per
  query (encode one image + top-10 search) over 20 queries, and the search alone.
Not a test: figures depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_IMAGES = REPO.parent.parent / "shared" / "data" / "office-caltech-10" / "images" / "webcam"


def toy_run(root: Path) -> Path:
    import torch

    from dahash.nn.model import DAHHead

    run = root / "proj" / "models" / "bench" / "efficientnet_lite0" / "dah" / "A->B" / "seed0"
    run.mkdir(parents=True)
    head = DAHHead(1280, (1024, 1024), 64, generator=torch.Generator().manual_seed(0)).eval()
    torch.save({"config": {"bn_momentum": 0.05}, "state_dict": head.state_dict()}, run / "model.pt")
    (run / "run.json").write_text(json.dumps({"mode": "head"}))
    return run


def timed(cmd: list[str]) -> tuple[float, int, str]:
    """(wall seconds, peak RSS in MiB of the child, stderr) of ``python -m dahash.cli <cmd>``."""
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'src'}{os.pathsep}{REPO}"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "dahash.cli", *cmd], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(proc.stderr)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return wall, max(peak, before) // 1024, proc.stderr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    ap.add_argument("--limit", type=int, help="only the first N images (copied to a temp folder)")
    args = ap.parse_args()
    from dahash.codes.serving import Searcher

    files = sorted(p for p in args.images.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}, OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}; {len(files[:args.limit] if args.limit else files)} images "
          f"from {args.images}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.limit:
            import shutil

            files = files[:args.limit]
            args.images = tmp / "images"
            for f in files:
                dest = args.images / f.parent.name / f.name
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(f, dest)
            files = sorted(p for p in args.images.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        run = toy_run(tmp)
        export = tmp / "model.pt"
        timed(["export", str(run), "-o", str(export)])
        index = tmp / "index.parquet"
        wall, rss, _ = timed(["encode", str(export), str(args.images), "-o", str(index), "-q"])
        print(f"dahash encode: {wall:.1f} s for {len(files)} images = {len(files) / wall:.1f} images/s, "
              f"peak RSS {rss} MiB")
        q = files[len(files) // 2]
        for extra in ([], ["--rerank"]):
            wall, _, _ = timed(["search", str(index), str(q), "-k", "10", *extra])
            print(f"one `dahash search INDEX IMAGE -k 10 {' '.join(extra)}` process: {wall:.2f} s")
        t0 = time.perf_counter()
        s = Searcher(export, index)
        load = time.perf_counter() - t0
        times, search_only = [], []
        for f in files[:20]:
            t0 = time.perf_counter()
            res = s.search([f], 10, rerank=True)
            times.append(time.perf_counter() - t0)
            qi = s.index.search(s.index.codes[:1], 10)
            t0 = time.perf_counter()
            s.index.search(s.index.codes[:1], 10, backend=s.backend)
            search_only.append(time.perf_counter() - t0)
        assert res.indices.shape == (1, 10) and qi.indices.shape == (1, 10)
        print(f"Searcher (loaded once): load {load:.2f} s, then {np.median(times) * 1e3:.0f} ms per image query "
              f"(encode + top-10 + re-rank; median of 20), of which the search {np.median(search_only) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
