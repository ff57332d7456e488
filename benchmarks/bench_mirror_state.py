"""What the mirror's content check costs (stages/mirror_state.py: DVC runs it on every repro, Snakemake when it
plans): the content digest of a mirror's domains, cold (every file read) and warm (the fstat cache: files
unchanged since the last run are not read again).

    python benchmarks/bench_mirror_state.py [MIRROR] [DATASET]

Default: the real Office-Caltech-10 mirror ../shared/data/office-caltech-10 (office_caltech10). Prints one line per
run; the digest equals the registered tree digest of the copy (dahash.data.datasets) when the mirror is complete.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

from stages.mirror_state import mirror_state  # noqa: E402


def main() -> None:
    mirror = sys.argv[1] if len(sys.argv) > 1 else str(ROOT.parent / "shared" / "data" / "office-caltech-10")
    dataset = sys.argv[2] if len(sys.argv) > 2 else "office_caltech10"
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    with tempfile.TemporaryDirectory() as cache:
        params["data"].update(dataset=dataset, mirror=mirror, cache_dir=cache)
        for label in ("cold", "warm", "warm"):
            t = time.perf_counter()
            state = mirror_state(params)
            dt = time.perf_counter() - t
            print(f"{label}: {dt:.2f} s, {state.get('files')} files, "
                  f"digest {str(state.get('tree_sha256', state.get('error')))[:16]}")


if __name__ == "__main__":
    main()
