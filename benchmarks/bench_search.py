"""Search backends side by side (issue 26): ``python benchmarks/bench_search.py [--sizes 1000000 10000000]``.

For each database size and code distribution (``uniform`` random 64-bit codes; ``clustered``: 100 prototypes
with noise, like trained codes, many ties) every backend of :mod:`dahash.codes.backends` is measured in the same
run on the same codes and queries:

* build: seconds to build the backend from the packed codes (scan: none; FAISS: ``add``) and its size in
  memory (scan: the packed codes; FAISS: the serialised index, what ``dahash index`` writes);
* top-10: median ms per single query (50 queries) with one thread and with all cores (FAISS's OpenMP threads;
  the numpy scan is single-threaded), and ms per query in a batch of all ``--queries`` (default 200; one thread);
* recall@10 against the exact answer (tie-aware: a returned item counts when its distance is within the exact
  10th distance), and whether an exact backend's answer equals the scan's (indices and distances);
* radius search (``--radius``, default 12): ms per query (all cores) and mean answers per query (exact backends
  only).

100M is projected, not measured: the scan over a memory-mapped 10M-code shard (``Index.from_parquet(mmap=True)``'s
sidecar) is timed and multiplied by 10, FAISS flat likewise (both are linear scans); marked "projected".
``--hnsw-max`` limits the HNSW build (minutes per million codes on a small machine). Not a test: figures depend
on the machine and its load; run it on a quiet machine for figures to quote.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from dahash.codes import backends as bk
from dahash.codes.index import Index


def clustered_bits(n: int, d: int, c: int = 100, seed: int = 0, noise_seed: int | None = None) -> np.ndarray:
    """(n, d) bits around c random prototypes (like trained codes of c classes); the prototypes depend on
    ``seed`` only, the noise on ``noise_seed`` (default ``seed``)."""
    rng = np.random.default_rng(seed)
    protos = rng.normal(size=(c, d)).astype(np.float32)
    if noise_seed is not None:
        rng = np.random.default_rng(noise_seed)
    out = np.empty((n, d), np.uint8)
    for s in range(0, n, 100_000):
        e = min(n, s + 100_000)
        out[s:e] = protos[rng.integers(0, c, e - s)] + rng.normal(scale=1.5, size=(e - s, d)).astype(np.float32) > 0
    return out


def codes_of(kind: str, n: int, noise_seed: int) -> np.ndarray:
    """(n, 1) uint64 packed 64-bit codes (clustered: always the same 100 prototypes)."""
    if kind == "uniform":
        return np.random.default_rng(noise_seed).integers(0, 2**64, (n, 1), dtype=np.uint64)
    return Index.from_bits(clustered_bits(n, 64, seed=0, noise_seed=noise_seed)).codes


def median_ms(fn, reps: int) -> float:
    times = []
    for i in range(reps):
        t0 = time.perf_counter()
        fn(i)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3


def exact_distances(db: np.ndarray, q: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return np.bitwise_count(db[np.maximum(idx, 0), 0] ^ q[:, None, 0]).astype(np.int64)


def measure(name: str, index: Index, q: np.ndarray, exact, threads: int, reps: int, radius: int) -> dict:
    import faiss

    t0 = time.perf_counter()
    be = index.backend(name) if name == "scan" else bk.build_backend(name, index.codes)
    index._backends[name] = be
    build = time.perf_counter() - t0
    size = index.codes.nbytes if name == "scan" else faiss.serialize_index_binary(be.index).nbytes
    row = {"backend": name, "build_s": build, "mib": size / 2**20}
    for t, key in ((1, "ms_1t"), (threads, "ms_all")):
        faiss.omp_set_num_threads(t)
        index.search(q[:1], 10, backend=name)
        row[key] = median_ms(lambda i: index.search(q[i % len(q):i % len(q) + 1], 10, backend=name), reps)
    faiss.omp_set_num_threads(1)
    t0 = time.perf_counter()
    res = index.search(q, 10, backend=name)
    row["ms_batch"] = (time.perf_counter() - t0) / len(q) * 1e3
    if exact is None:
        exact = res
    kth = exact.distances[:, -1:]
    got_d = exact_distances(np.asarray(index.codes), q, res.indices)
    row["recall10"] = float(np.mean((res.indices >= 0) & (got_d <= kth)))
    row["same_as_scan"] = bool(np.array_equal(res.indices, exact.indices)
                               and np.array_equal(res.distances, exact.distances))
    if be.exact:
        faiss.omp_set_num_threads(threads)
        t0 = time.perf_counter()
        rad = index.radius_search(q[:20], radius, backend=name)
        row["radius_ms"] = (time.perf_counter() - t0) / 20 * 1e3
        row["radius_n"] = float(np.mean([r.indices.shape[1] for r in rad]))
    return row, exact


def projected_100m(codes: np.ndarray, q: np.ndarray, threads: int, reps: int) -> list[dict]:
    """Scan and flat over a memory-mapped shard of the codes, times 100M / shard size."""
    import faiss

    with tempfile.TemporaryDirectory() as tmp:
        p = Index(codes, 64).to_parquet(Path(tmp) / "shard.parquet")
        mapped = Index.from_parquet(p, mmap=True)
        factor = 100_000_000 / len(mapped)
        rows = []
        for name in ("scan", "flat"):
            faiss.omp_set_num_threads(1)
            mapped.search(q[:1], 10, backend=name)
            one = median_ms(lambda i: mapped.search(q[i % len(q):i % len(q) + 1], 10, backend=name), reps)
            faiss.omp_set_num_threads(threads)
            allc = median_ms(lambda i: mapped.search(q[i % len(q):i % len(q) + 1], 10, backend=name), reps)
            rows.append({"backend": name, "mib": 100_000_000 * 8 / 2**20, "ms_1t": one * factor,
                         "ms_all": allc * factor, "shard": len(mapped)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    ap.add_argument("--kinds", nargs="+", default=["uniform", "clustered"])
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--queries", type=int, default=200, help="queries drawn (the batch measure uses them all)")
    ap.add_argument("--backends", nargs="+", default=["scan", "flat", "mih", "hnsw"])
    ap.add_argument("--radius", type=int, default=12, help="radius of the radius search (exact backends)")
    ap.add_argument("--hnsw-max", type=int, default=1_000_000, help="build HNSW only up to this many codes")
    args = ap.parse_args()
    import faiss

    threads = faiss.omp_get_max_threads()
    print(f"machine: {os.cpu_count()} cores, FAISS {faiss.__version__} with {threads} OpenMP threads, "
          f"load average {os.getloadavg()[0]:.1f} at start")
    print("| codes | kind | backend | build s | MiB | top-10 ms (1 thread) | top-10 ms (all cores) | ms/query "
          "(batch, 1 thread) | recall@10 | = scan | radius ms | radius answers |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    last = None
    for n in args.sizes:
        for kind in args.kinds:
            codes = codes_of(kind, n, noise_seed=1)
            q = codes_of(kind, args.queries, noise_seed=2)  # other draws of the same distribution
            index = Index(codes, 64)
            exact = None
            for name in ["scan"] + [b for b in args.backends if b != "scan"]:  # scan first: the exact answer
                if name == "hnsw" and n > args.hnsw_max:
                    print(f"| {n:,} | {kind} | hnsw | not built (> --hnsw-max {args.hnsw_max:,}: build time) "
                          "| | | | | | | | |", flush=True)
                    continue
                r, exact = measure(name, index, q, exact, threads, args.reps, args.radius)
                rad = (f"{r['radius_ms']:.1f} | {r['radius_n']:.1f}" if "radius_ms" in r else "- | -")
                print(f"| {n:,} | {kind} | {name} | {r['build_s']:.1f} | {r['mib']:.0f} | {r['ms_1t']:.2f} | "
                      f"{r['ms_all']:.2f} | {r['ms_batch']:.2f} | {r['recall10']:.3f} | "
                      f"{'yes' if r['same_as_scan'] else 'no'} | {rad} |", flush=True)
            last = (codes, q)
            del index
    if last is not None:
        codes, q = last
        for r in projected_100m(codes, q, threads, min(args.reps, 20)):
            print(f"| 100,000,000 (projected from a memory-mapped {r['shard']:,}-code shard x "
                  f"{100_000_000 / r['shard']:.0f}) | {args.kinds[-1]} | {r['backend']} | - | {r['mib']:.0f} | "
                  f"{r['ms_1t']:.1f} | {r['ms_all']:.1f} | | 1.000 (exact) | | | |", flush=True)


if __name__ == "__main__":
    main()
