#!/usr/bin/env bash
# What growth costs on a CUDA GPU, recorded in one command:
#
#   1. growth_cost.py: seconds per epoch by depth and seconds per decision by depth,
#      for each kind of products: the expansion (the default), exact by double backward,
#      and differences of gradients (unit costs);
#   2. growth_pays.py on the four 31-year Lahn gauges, seeds 0-2: growth at the default
#      products (the expansion), growth with differences of gradients (the default on
#      CUDA before the expansion), and every fixed depth of the grid, so that its replay
#      gives, basin by basin, the decisions' share of a growing fit, growth's time over
#      the grid's and how growth ended.
#
# Usage (from the repository root):
#
#   benchmarks/gpu_growth.sh OUT                  # on a machine with a CUDA GPU
#   DEVICE=cpu benchmarks/gpu_growth.sh OUT --quick --seeds 1   # a smoke run anywhere
#
# Extra arguments go to both scripts (the last of a repeated option wins). Every step
# has a time limit (STEP_SECONDS, default 270) so that the whole run ends inside ten
# minutes; growth_pays.py appends each finished fit to OUT/growth_jobs.jsonl at once, so
# a step cut short keeps the fits it finished. Copy OUT/growth_jobs.jsonl and
# OUT/growth_cost.json to benchmarks/records/ under names that say the device.
set -euo pipefail

out=${1:?usage: benchmarks/gpu_growth.sh OUT [extra arguments for both scripts]}
shift
device=${DEVICE:-cuda}
jobs=${JOBS:-12}
limit=${STEP_SECONDS:-270}
cd "$(dirname "$0")/.."
mkdir -p "$out"
export PYTHONUNBUFFERED=1

if [ "$device" = cuda ]; then
    python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: set DEVICE=cpu for a smoke run')"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
fi

status=0
timeout "$limit" python benchmarks/growth_cost.py --device "$device" \
    --hessian-products expansion exact difference --out "$out" "$@" || status=$?
timeout "$limit" python benchmarks/growth_pays.py --device "$device" --basins lahn \
    --variants growth growth-difference fixed \
    --seeds 3 --jobs "$jobs" --threads 1 --out "$out" "$@" || status=$?
# The tables of whatever finished, also after a step ran out of time.
if [ -s "$out/growth_jobs.jsonl" ]; then
    python benchmarks/growth_pays.py --replay "$out/growth_jobs.jsonl" --out "$out" "$@"
fi
exit "$status"
