#!/usr/bin/env bash
# The CPU-speed measurements of benchmarks/README.md, in one go, on a machine with nothing else running:
#   bash benchmarks/cpu_speed.sh [seed ...]        (default seeds: 12345 1)
# 1. benchmarks/cpu_step.py: the raw training step in each layout side by side, each layer alone, eval-mode
#    throughput by batch size, torch.profiler's op table;
# 2. benchmarks/cpu_run.py: a real run under Lightning's profiler, the default against the previous default
#    (NCHW, per-image augmentation in the loader) and against batched augmentation, alternating;
# 3. the default run (`python src/train.py`, benchmarks/default_run.sh) on each seed.
# Results land in benchmarks/results/ as JSON, named by commit.
set -euo pipefail
cd "$(dirname "$0")/.."
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
out=benchmarks/results
mkdir -p "$out"
python benchmarks/cpu_step.py --compile --json "$out/cpu_step-$commit.json"
python benchmarks/cpu_run.py --batches 100 --test-batches 20 --json "$out/cpu_run-$commit.json" --variants \
  "" "speed.channels_last=false" "data.augment_on=device"
for s in ${*:-12345 1}; do
  bash benchmarks/default_run.sh seed="$s" | tee -a "$out/default_run-$commit.txt"
done
