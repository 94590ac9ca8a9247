#!/usr/bin/env bash
# The GPU check of issue 15 in one go (about 10 minutes on one GPU; random weights, no download):
# Conv-LoRA (fast, official loop) vs LoRA step time and peak memory on ViT-B and ViT-H at 1024 px in
# fp16 and bf16; the colab preset's step and peak memory (target <= 15 GiB); a short fp16 training
# run with the gradient scaler and one in bf16 on generated 1024 px data (loss down, no NaN).
# Results and the command go to benchmarks/results/gpu_check_<device>_<time>.{json,md}.
# Without a GPU it says so and runs every part on test_tiny on the CPU (a dry run).
# --quick: under 3 minutes on one GPU (CUDA visible, the ViT-B 1024 px fp16 step and memory ratios, the
# colab step, fp16 and bf16 training with validation and test); its time limit is 240 s instead of 600 s.
#
#   bash benchmarks/gpu_check.sh                  # from the repository root, with convlora_lite installed
#   bash benchmarks/gpu_check.sh --quick          # a borrowed GPU's first minutes
#   PYTHON=.venv/bin/python bash benchmarks/gpu_check.sh --output-dir /tmp/check
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
limit=600
for arg in "$@"; do [ "$arg" = --quick ] && limit=240; done
exec timeout "${GPU_CHECK_TIMEOUT_S:-$limit}" "$PY" scripts/gpu_check.py --output-dir benchmarks/results "$@"
