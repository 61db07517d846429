#!/usr/bin/env bash
# The GPU check (issues 18 and 28), one script, under 8 minutes on one H200-class GPU (each part has its
# own timeout, 300 + 90 + 60 s; bench_gpu.py writes its JSON after every part, so a part cut short keeps
# what it measured):
# environment facts; images/s against images per call (1..16) at 512 px in float32/bfloat16/float16 with
# SDPA on and off, peak memory, the automatic batch size; the fast/reference heatmap paths; bench
# throughput; a tuning step (fast vs naive); the classifier's U-Net passes; wall-time estimates of the
# paper's tuning run and of an MS-CXR bench with 6 models; then torch.compile on/off (optional part) and
# the GPU tests (pytest -m gpu). Run from the repository root, in an environment made with the README's install
# command (on a CUDA machine: pip install torch==<the CUDA build of the pinned version> first).
#   benchmarks/gpu_suite.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-gpu-results}}"
mkdir -p "$out"
python=.venv/bin/python
[ -x "$python" ] || python=python3
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/nvidia-smi.csv" || true
timeout 300 "$python" benchmarks/bench_gpu.py --device cuda --size 512 --images 8 --draws 50 \
  --batches 1,2,4,8,16 --sdpa-batches 1,8 --out "$out/bench_gpu.json" | tee "$out/bench_gpu.txt" || true
timeout 90 "$python" benchmarks/bench_gpu.py --device cuda --size 512 --images 8 --dtypes float32 \
  --skip batches,tuning,heatmaps,bench,classify --batches 8 --compile --out "$out/bench_gpu_compile.json" \
  | tee "$out/bench_gpu_compile.txt" || true
timeout 60 "$python" -m pytest -q -m gpu -p no:cacheprovider | tee "$out/pytest_gpu.txt"
