#!/usr/bin/env bash
# GPU checks: sam2 parity on CUDA, b+/tiny latency at 1024 px with bf16, the
# batched (8 sessions) / one-by-one speed-up of b+ at 1024 px, bf16, then the serving capacity
# of b+ at 1024 px, bf16, 8 Hz, p99 <= 100 ms with the scheduler against the per-session design.
# Needs an NVIDIA GPU and the project's venv (make test creates it). Budget: < 13 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-bench/results}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
timeout 420 "$PY" bench/gpu_check.py --frames "${FRAMES:-100}" "$@"
# Capacity (the GPU target: >= 16 sessions on an H100-class card). Short probes keep it
# within the device budget; the confirming run is 30 s.
timeout 360 "$PY" -m tracker.cli bench capacity --engine sam2 \
    --engine-option model=sam2.1_hiera_base_plus --engine-option random_weights=true \
    --engine-option image_size=1024 --engine-option device=cuda --engine-option dtype=bfloat16 \
    --rate 8 --p99-ms 100 --duration 30 --probe-duration 8 --max-sessions 48 \
    --serve-arg=--max-batch=16 --compare-per-session --json "$OUT/capacity_sam2_bplus_1024_gpu.json"
"$PY" - "$OUT/capacity_sam2_bplus_1024_gpu.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"capacity: {r['capacity_sessions']} sessions (per-session design: {r.get('baseline_capacity_sessions')}),"
      f" batched/one-by-one ratio {r.get('ratio')}, p99 {r.get('p99_ms_at_capacity')} ms, batch {r.get('batch_size')}")
PY
