#!/usr/bin/env bash
# The one prepared GPU check for sessions lent a device machine (run it from the repo root there):
#   bash benchmarks/gpu_check.sh            (about 3-5 minutes on one GPU)
# 1. the CUDA tests (skipped on CPU-only machines), 2. the speed benchmark on cuda,
# 3. one short DAH training on generated features on cuda vs cpu (same seed) to compare the numbers.
set -euo pipefail
python -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
python -m pytest -q tests/test_finetune.py tests/test_metrics.py -k cuda -rs
python benchmarks/bench_core.py --quick --device cuda
python - <<'PY'
import torch, time
from dahash.train import DAHConfig, train_dah
g = torch.Generator().manual_seed(0)
xs, xt = torch.randn(958, 1280, generator=g), torch.randn(295, 1280, generator=g) + 0.3
ys = torch.arange(958) % 10
cfg = DAHConfig(hidden_dims=(1024, 1024), epochs=20)
for dev in ("cpu", "cuda"):
    t0 = time.perf_counter()
    r = train_dah(xs, ys, xt, 10, cfg, device=dev, seed=0)
    print(f"{dev}: 20 epochs in {time.perf_counter() - t0:.1f} s, final total loss {r.history[-1]['total']:.4f}")
PY
