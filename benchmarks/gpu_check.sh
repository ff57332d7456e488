#!/usr/bin/env bash
# The one prepared GPU check for sessions lent a CUDA machine: from the repo root there,
#   bash benchmarks/gpu_check.sh OUT_DIR          (a few minutes on one GPU; needs only the repo + torch/scipy/pillow)
#   bash benchmarks/gpu_check.sh OUT_DIR --dry    (CPU, toy sizes: what CI runs so that the script cannot rot)
# See benchmarks/gpu_check.py for the steps; record the printed figures in benchmarks/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:?usage: gpu_check.sh OUT_DIR [--dry]}"
shift
PYTHONUNBUFFERED=1 exec python3 benchmarks/gpu_check.py "$out" "$@"
