#!/usr/bin/env bash
# GPU checks (issues #3, #13): sam2 parity on CUDA, b+/tiny latency at 1024 px with bf16, and the
# batched (8 sessions) / one-by-one speed-up of b+ at 1024 px, bf16.
# Needs an NVIDIA GPU and the project's venv (make test creates it). Budget: < 8 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
timeout 480 "$PY" bench/gpu_check.py --frames "${FRAMES:-100}" "$@"
