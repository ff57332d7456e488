"""Two one-thread DAH trainings side by side vs one two-thread training, and the fused SGD step (issue 9).

``python benchmarks/bench_threads.py [--epochs 20] [--n-source 1123] [--n-target 295]``

What ``--cores 2 --resources gpu=2`` does since the Snakefile shares the cores between the GPU slots
(``workflow.dvcdag.shared_threads``): each job runs with ``OMP_NUM_THREADS=1`` and two run at once; before, each
training got both cores and ran alone. This script trains the quickstart's DAH head (1,280-d features, 1024-wide
fc6/fc7, 64 bits, K = 5 per class of 10, synthetic clustered features of W->C's size) in subprocesses:

* one training with 2 threads (the previous way), then two trainings with 1 thread each at the same time;
  it prints the wall time per training of both ways and the throughput ratio;
* the SGD step alone on the head's parameters: ``torch.optim.SGD`` per-tensor loop vs ``dahash.train.head.make_sgd``
  (fused), ms per step, and whether the parameters after the steps are bit-identical.

Not a test: figures depend on the machine and its load; run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TRAIN = r"""
import sys, time, numpy as np, torch
from dahash.train.head import DAHConfig, train_dah
epochs, ns, nt = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
centres = rng.standard_normal((10, 1280)).astype(np.float32)
ys = np.arange(ns) % 10
xs = centres[ys] + rng.standard_normal((ns, 1280)).astype(np.float32)
xt = centres[rng.integers(0, 10, nt)] + 0.5 + rng.standard_normal((nt, 1280)).astype(np.float32)
cfg = DAHConfig(hash_bits=64, hidden_dims=(1024, 1024), k_per_class=5, epochs=epochs)
t = time.perf_counter()
train_dah(torch.from_numpy(xs), torch.from_numpy(ys), torch.from_numpy(xt), 10, cfg, seed=0)
print(time.perf_counter() - t)
"""


def run_training(threads: int, args: argparse.Namespace) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    return subprocess.Popen([sys.executable, "-c", TRAIN, str(args.epochs), str(args.n_source), str(args.n_target)],
                            env=env, stdout=subprocess.PIPE, text=True)


def trainings(args: argparse.Namespace) -> None:
    t = time.perf_counter()
    alone = float(run_training(2, args).communicate()[0])
    wall_two_threads = time.perf_counter() - t
    t = time.perf_counter()
    procs = [run_training(1, args) for _ in range(2)]
    inner = [float(p.communicate()[0]) for p in procs]
    wall_pair = time.perf_counter() - t
    print(f"DAH head training, {args.epochs} epochs, {args.n_source} source + {args.n_target} target items")
    print(f"  one training, 2 threads:            {wall_two_threads:6.1f} s wall ({alone:.1f} s training)")
    print(f"  two trainings at once, 1 thread each: {wall_pair:6.1f} s wall for both "
          f"({inner[0]:.1f} / {inner[1]:.1f} s training)")
    print(f"  throughput, two 1-thread / one 2-thread: {2 * wall_two_threads / wall_pair:.2f}x")


def sgd_step() -> None:
    import torch

    from dahash.nn.model import DAHHead
    from dahash.train.head import make_sgd

    torch.set_num_threads(1)
    results = {}
    for name, make in (("per-tensor SGD", lambda g: torch.optim.SGD(g, lr=1e-4, momentum=0.9, foreach=False)),
                       ("make_sgd (fused)", lambda g: make_sgd(g, 1e-4, 0.9))):
        head = DAHHead(1280, (1024, 1024), 64, None, generator=torch.Generator().manual_seed(0))
        opt = make(head.param_groups(1e-4, 5e-4))
        gen = torch.Generator().manual_seed(1)
        grads = [[torch.randn(p.shape, generator=gen) for p in head.parameters()] for _ in range(4)]
        for p, g in zip(head.parameters(), grads[0]):
            p.grad = g.clone()
        opt.step()  # warm-up (momentum buffers allocated)
        t = time.perf_counter()
        for i in range(100):
            for p, g in zip(head.parameters(), grads[i % 4]):
                p.grad.copy_(g)
            opt.step()
        results[name] = ((time.perf_counter() - t) / 100, [p.detach().clone() for p in head.parameters()])
    (a, pa), (b, pb) = results.values()
    same = all(torch.equal(x, y) for x, y in zip(pa, pb))
    print(f"SGD step on the head's 2.4 M parameters, 1 thread: per-tensor {1e3 * a:.2f} ms, fused {1e3 * b:.2f} ms "
          f"({a / b:.1f}x); parameters after 101 steps bit-identical: {same}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--n-source", type=int, default=1123)
    ap.add_argument("--n-target", type=int, default=295)
    ap.add_argument("--skip-training", action="store_true")
    args = ap.parse_args()
    sgd_step()
    if not args.skip_training:
        trainings(args)


if __name__ == "__main__":
    main()
