#!/usr/bin/env bash
# GPU checks (issue #3): sam2 parity on CUDA and b+/tiny latency at 1024 px with bf16.
# Needs an NVIDIA GPU and the project's venv (make test creates it). Budget: < 8 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
timeout 480 "$PY" bench/gpu_check.py --frames "${FRAMES:-100}" "$@"
