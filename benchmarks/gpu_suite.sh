#!/usr/bin/env bash
# The GPU check (issue 18), one script, at most about 8 minutes on one H200-class GPU: environment facts,
# then the fast/reference heatmap paths in float32/bfloat16/float16 at 512 px, bench throughput, a tuning
# step (fast vs naive) and the classifier's U-Net passes, as one table (benchmarks/bench_gpu.py), then the
# GPU tests (pytest -m gpu). Run from the repository root, in an environment made with the README's install
# command (on a CUDA machine: pip install torch==<the CUDA build of the pinned version> first).
#   benchmarks/gpu_suite.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-gpu-results}}"
mkdir -p "$out"
python=.venv/bin/python
[ -x "$python" ] || python=python3
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/nvidia-smi.csv" || true
timeout 420 "$python" benchmarks/bench_gpu.py --device cuda --size 512 --images 16 --draws 50 \
  --out "$out/bench_gpu.json" | tee "$out/bench_gpu.txt"
timeout 90 "$python" -m pytest -q -m gpu -p no:cacheprovider | tee "$out/pytest_gpu.txt"
