#!/usr/bin/env bash
# Run one experiment's sweep and write its report into experiments/NAME/:
#   bash experiments/run.sh ablate_lrn [more overrides, e.g. budget=ilsvrc data.root=/data/ilsvrc2012]
# OUT=experiments/some/folder puts the report elsewhere (e.g. for a variant of an experiment).
set -euo pipefail
name=$1
shift
cd "$(dirname "$0")/.."
sweep=logs/train/multiruns/$name/$(date +%Y-%m-%d_%H-%M-%S)
start=$(date +%s)
python src/train.py -m "experiment=$name" "hydra.sweep.dir=$sweep" "$@"
echo $(($(date +%s) - start)) >"$sweep/sweep_seconds"  # the whole sweep's wall time, for the report
python src/compare.py "$sweep" --out "${OUT:-experiments/$name}"
python src/compare.py --index experiments
