"""Search speed of dahash.codes.index (issue 12): ``python benchmarks/bench_search.py [--n 1000000] [--bits 64]``.

A database of N clustered codes (100 classes, many distance ties) is written with ``Index.to_parquet`` and
opened both in memory and memory-mapped (``from_parquet(mmap=True)``). Prints, measured in the same run:

* top-10 search per query (median over single queries), in memory and memory-mapped;
* the same with a plain full ranking (XOR + np.bitwise_count + stable argsort of all N distances), the
  reference the blockwise partition replaces, and the ratio;
* radius-2 search per query, and a batch of 100 queries (per query);
* a check that the answers equal the full stable ranking's first 10.
Not a test: figures depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from dahash.codes.index import Index


def clustered_bits(n: int, d: int, c: int = 100, seed: int = 0) -> np.ndarray:
    """(n, d) bits around c random prototypes (like trained codes of c classes)."""
    rng = np.random.default_rng(seed)
    protos = rng.normal(size=(c, d)).astype(np.float32)
    out = np.empty((n, d), np.uint8)
    for s in range(0, n, 100_000):
        e = min(n, s + 100_000)
        out[s:e] = protos[rng.integers(0, c, e - s)] + rng.normal(scale=1.5, size=(e - s, d)).astype(np.float32) > 0
    return out


def full_ranking(index: Index, q: np.ndarray, k: int) -> np.ndarray:
    """Reference: every distance, stable argsort, first k."""
    dist = np.bitwise_count(np.asarray(index.codes) ^ q[None, :]).sum(axis=1, dtype=np.int64)
    return np.argsort(dist, kind="stable")[:k]


def median_time(fn, reps: int) -> float:
    times = []
    for i in range(reps):
        t0 = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--bits", type=int, default=64)
    ap.add_argument("--reps", type=int, default=20)
    args = ap.parse_args()
    bits = clustered_bits(args.n, args.bits)
    queries = clustered_bits(200, args.bits, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        path = Index.from_bits(bits, [f"img{i}.jpg" for i in range(args.n)]).to_parquet(Path(tmp) / "db.parquet")
        t_write = time.perf_counter() - t0
        t0 = time.perf_counter()
        mem = Index.from_parquet(path)
        t_read = time.perf_counter() - t0
        t0 = time.perf_counter()
        mapped = Index.from_parquet(path, mmap=True)
        t_map = time.perf_counter() - t0
        qp = mem._queries(queries)
        mem.search(qp[:1], 10)  # warm-up

        t_mem = median_time(lambda i: mem.search(qp[i:i + 1], 10), args.reps)
        t_mmap = median_time(lambda i: mapped.search(qp[i:i + 1], 10), args.reps)
        t_full = median_time(lambda i: full_ranking(mem, qp[i], 10), args.reps)
        t_rad = median_time(lambda i: mem.radius_search(qp[i:i + 1], 2), args.reps)
        t0 = time.perf_counter()
        batch = mem.search(qp[:100], 10)
        t_batch = (time.perf_counter() - t0) / 100
        same = all(np.array_equal(batch.indices[i], full_ranking(mem, qp[i], 10)) for i in range(20))

    print(f"database: {args.n:,} codes x {args.bits} bits ({mem.codes.nbytes / 2**20:.1f} MiB packed)")
    print(f"write parquet {t_write:.2f} s, read {t_read:.2f} s, read + memory-map sidecar {t_map:.2f} s")
    print(f"top-10 per query, in memory:       {t_mem * 1e3:8.1f} ms")
    print(f"top-10 per query, memory-mapped:   {t_mmap * 1e3:8.1f} ms")
    print(f"full stable argsort per query:     {t_full * 1e3:8.1f} ms  "
          f"(blockwise partition {t_full / t_mem:.1f}x faster)")
    print(f"radius-2 search per query:         {t_rad * 1e3:8.1f} ms")
    print(f"batch of 100 queries, per query:   {t_batch * 1e3:8.1f} ms")
    print(f"answers equal the full stable ranking (20 queries): {same}")


if __name__ == "__main__":
    main()
