#!/usr/bin/env bash
# Run one experiment's sweep and write its report into experiments/NAME/:
#   bash experiments/run.sh ablate_lrn [more overrides, e.g. budget=ilsvrc data.root=/data/ilsvrc2012]
# OUT=experiments/some/folder puts the report elsewhere (e.g. for a variant of an experiment).
# SWEEP=logs/train/multiruns/NAME/<dir> reruns an interrupted sweep there: finished jobs are skipped, unfinished
# ones resume from their checkpoints (README: "When a run is interrupted"), and the wall times add up.
set -euo pipefail
name=$1
shift
cd "$(dirname "$0")/.."
sweep=${SWEEP:-logs/train/multiruns/$name/$(date +%Y-%m-%d_%H-%M-%S)}
start=$(date +%s)
python src/train.py -m "experiment=$name" "hydra.sweep.dir=$sweep" "$@"
before=$(cat "$sweep/sweep_seconds" 2>/dev/null || echo 0)
echo $((before + $(date +%s) - start)) >"$sweep/sweep_seconds"  # the whole sweep's wall time, all parts, for the report
python src/compare.py "$sweep" --out "${OUT:-experiments/$name}"
python src/compare.py --index experiments
