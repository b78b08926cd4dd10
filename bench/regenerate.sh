#!/usr/bin/env bash
# Regenerate every bench/results/*.json at the current commit, on a quiet machine.
#
#   bench/regenerate.sh            # everything (about 95 min on a 2-core CPU; reference_1000 takes 20 of them)
#   bench/regenerate.sh flow gating overseer    # only these steps (names below)
#
# Every result file records its provenance (command, commit, dirty flag, machine, load at
# start, library versions, seed): commit first, so that "dirty" is false. Run nothing else
# on the machine meanwhile: the figures are timings. DAVIS data: ../shared/data (or
# TRACKER_SHARED_DATA); the SAM2 steps need the sam2 engine installed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
export PYTHONPATH=$PWD
R=bench/results
TRACKER=("$PY" -m tracker.cli)

step() { # name, then the command; runs when no names were given or the name was
  local name=$1
  shift
  if [[ $# -gt 0 && ( ${#SELECTED[@]} -eq 0 || " ${SELECTED[*]} " == *" $name "* ) ]]; then
    echo "=== $name: $*" >&2
    "$@"
  fi
}
SELECTED=("$@")

# Accuracy and gating figures (synthetic data, seeds fixed).
step flow "$PY" bench/bench_flow.py --json $R/flow.json                         # ~1 min
step gating "$PY" bench/bench_gating.py --cases 10 --json $R/gating.json        # ~1.5 min
step overseer "$PY" bench/bench_overseer.py --json $R/overseer.json             # ~1 min (also overseer.md)
# The overseer's detector: the recipe (engines/Makefile: trained on seeds 1000-1029, validated on
# 2000-2003), then on held-out sequences (seeds 100-104) without it, with it and with the oracle,
# and what it costs beside a 25 fps session sent in real time (every 5th frame, off the frame path).
OVERSEER_ONNX=engines/build/overseer/overseer_small.onnx
step overseer_train make -C engines overseer TRACKER="$PY -m tracker.cli" \
  TRAIN_JSON="$PWD/$R/overseer_training.json"                                     # ~50 min
step overseer_trained "$PY" bench/bench_overseer.py --overseer $OVERSEER_ONNX --hard --cases 5 \
  --frames 80 --height 240 --width 320 --seed 100 --json $R/overseer_trained.json  # ~3 min
step overseer_cost "$PY" bench/bench_overseer.py --overseer $OVERSEER_ONNX --hard --cases 5 \
  --frames 80 --height 240 --width 320 --seed 100 --rate realtime --frame-rate 25 --every-k 5 \
  --json $R/overseer_cost_25fps.json                                               # ~2 min
step soak "$PY" bench/soak.py --duration 180 --workers 12 --json $R/soak.json   # 3 min
# Hard cine-MRI: the gate's tuning grid (family A's tuning set only) and its trade-off plot,
# then family A's tuning and validation sets and family B replayed with the defaults.
step tune_gating "$PY" bench/tune_gating.py --cases 6 --json $R/tune_gating.json \
  --plot docs/img/gating_tradeoff.png                                           # ~5 min
step validation "$PY" bench/bench_validation.py --json $R/validation.json \
  --html $R/validation.html --html-family-b $R/validation_family_b.html        # ~5 min

# Streaming scenarios: stream_flow_8x8hz, stream_overload_*, stream_sam2_tiny_1hz(_bf16),
# stream_table.md and the README's table between its markers.
step stream "$PY" bench/stream_suite.py                                         # ~6 min
step stream_5min "${TRACKER[@]}" bench stream --engine sam2 \
  --engine-option model=sam2.1_hiera_tiny --engine-option random_weights=true \
  --engine-option image_size=512 --engine-option dtype=bfloat16 \
  --sessions 1 --rate 1 --duration 300 \
  --json $R/stream_sam2_tiny_1hz_bf16_5min.json --plots $R/stream_sam2_tiny_1hz_bf16_5min  # 5 min

# SAM2 engine against sam2's SAM2VideoPredictor (CPU, tiny, 512 px, random weights seed 0).
step reference_120 "${TRACKER[@]}" bench reference --frames 120 --model tiny --image-size 512 \
  --random-weights --json $R/reference_120.json                                 # ~5 min
step reference_ab_fp32 "${TRACKER[@]}" bench reference --frames 40 --model tiny --image-size 512 \
  --random-weights --interleaved 40 --json $R/reference_ab_fp32.json            # ~3 min
step reference_ab_bf16 "${TRACKER[@]}" bench reference --frames 40 --model tiny --image-size 512 \
  --random-weights --dtype bfloat16 --interleaved 40 --json $R/reference_ab_bf16.json  # ~2 min (native bf16 CPUs only)
step reference_onnx "${TRACKER[@]}" bench reference --frames 32 --objects 2 --model tiny \
  --image-size 512 --random-weights --engine onnx --json $R/reference_onnx.json  # ~4 min
step reference_1000 "${TRACKER[@]}" bench reference --frames 1000 --model tiny --image-size 512 \
  --random-weights --json $R/reference_1000.json                                # ~30 min

# Engine comparisons, frames alternating between engines.
step onnx "$PY" bench/bench_onnx.py --image-size 512 --frames 32 --threads 2 --out $R/onnx_cpu.json  # ~3 min
step precision "$PY" bench/bench_precision.py --image-size 512 --frames 40 --objects 1 \
  --out $R/precision_cpu.json                                                   # ~2 min (native bf16 CPUs only)

# SAM2's engines on one clip against sam2 float32 (sam2 fp32/bf16, onnx, openvino f32/bf16), and
# the openvino engine's capacity for MR-linac cine at 1, 4 and 8 Hz. One export (tiny, 512 px,
# random weights, logits x40) under bench/data/ (not committed), made by the first step.
EXPORTS=bench/data/exports
OV_EXPORT=$EXPORTS/sam2.1-tiny-512-random0-x40
step engines "${TRACKER[@]}" bench engines --export-dir $OV_EXPORT --image-size 512 --frames 40 \
  --json $R/engines_cpu.json                                                    # ~6 min
OV_CAPACITY=("${TRACKER[@]}" bench capacity --engine openvino --engine-option export_dir=$OV_EXPORT
  --serve-arg=--model-dir=$EXPORTS --duration 60)
step capacity_openvino_4hz "${OV_CAPACITY[@]}" --rate 4 --p99-ms 400 --probe-duration 20 \
  --max-sessions 4 --json $R/capacity_openvino_4hz.json                         # ~3 min
step capacity_openvino_1hz "${OV_CAPACITY[@]}" --rate 1 --p99-ms 1000 --probe-duration 30 \
  --max-sessions 8 --json $R/capacity_openvino_1hz.json                         # ~5 min
# One openvino session at 1 Hz: where a server frame's time goes (frame_profile).
step profile_openvino "${TRACKER[@]}" bench stream --engine openvino --engine-option export_dir=$OV_EXPORT \
  --serve-arg=--model-dir=$EXPORTS --sessions 1 --rate 1 --duration 60 \
  --json $R/profile_openvino_1hz.json                                           # ~1 min
step capacity_openvino_8hz "${OV_CAPACITY[@]}" --rate 8 --p99-ms 250 --probe-duration 20 \
  --max-sessions 2 --json $R/capacity_openvino_8hz.json                         # ~2 min

# Serving: capacity against the per-session design in the same run; SAM2 batching.
step capacity_flow "${TRACKER[@]}" bench capacity --engine flow --rate 8 --p99-ms 50 --duration 60 \
  --probe-duration 15 --compare-per-session --json $R/capacity_flow_8hz.json    # ~8 min
step capacity_sam2 "${TRACKER[@]}" bench capacity --engine sam2 \
  --engine-option model=sam2.1_hiera_tiny --engine-option random_weights=true \
  --engine-option image_size=512 --engine-option dtype=bfloat16 \
  --rate 1 --p99-ms 1000 --duration 60 --probe-duration 30 --max-sessions 8 \
  --compare-per-session --json $R/capacity_sam2_tiny_1hz.json                    # ~6 min
# The same engine with two workers of one torch thread each (the default is one worker, all cores).
step capacity_sam2_workers2 "${TRACKER[@]}" bench capacity --engine sam2 \
  --engine-option model=sam2.1_hiera_tiny --engine-option random_weights=true \
  --engine-option image_size=512 --engine-option dtype=bfloat16 \
  --rate 1 --p99-ms 1000 --duration 60 --probe-duration 30 --max-sessions 8 \
  --serve-arg=--workers=2 --json $R/capacity_sam2_tiny_1hz_workers2.json        # ~5 min
step batch "$PY" bench/bench_batch.py --out $R/sam2_batch_cpu.json              # ~8 min

# Scale-out: 3 replicas behind Envoy, one SIGKILL and one SIGTERM, then no faults.
step cluster "${TRACKER[@]}" bench cluster --replicas 3 --sessions 6 --rate 8 --duration 60 \
  --kill 1@20 --drain 2@40 --json $R/cluster.json --plots $R/cluster            # ~3 min

# Faults that send no reset: black holes each way, jitter, a 1 Mbit/s link with 512 px frames,
# a stalled reader, resets; 3 replicas behind Envoy, each through a fault proxy, failover on.
step faults "${TRACKER[@]}" bench faults --replicas 3 --sessions 3 --rate 8 --duration 20 \
  --fault-at 5 --json $R/faults.json                                               # ~5 min
# The slow reader in a 60 s run, beside the same run without a fault: RSS at 20 s is past
# most of the replicas' own warm-up growth.
step faults_60s "${TRACKER[@]}" bench faults --scenario none --scenario slow_reader --duration 60 \
  --fault-at 20 --json $R/faults_slow_reader_60s.json                              # ~3 min

# `make demo` as a user runs it, five times in fresh processes (no LATE on the DAVIS clip).
step demo "$PY" bench/bench_demo.py --runs 5 --json $R/demo.json                 # ~2 min

# DAVIS as davis2017-evaluation scores it: J, F, J&F of the flow engine on the shared clips.
DAVIS=${TRACKER_SHARED_DATA:-../shared/data}/davis2016
step davis "${TRACKER[@]}" replay $DAVIS/blackswan $DAVIS/car-shadow $DAVIS/dog --engine flow \
  --rate max --report $R/davis_flow.json                                        # ~1 min

# GPU only (bench/gpu_check.sh): bench/results/gpu_check.json.
if command -v nvidia-smi >/dev/null 2>&1; then
  step gpu bench/gpu_check.sh --json $R/gpu_check.json                          # < 8 min
fi
