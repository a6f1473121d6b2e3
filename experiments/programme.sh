#!/usr/bin/env bash
# The claim programme: every claim's sweep on its decisive budget, its report in experiments/NAME/, and the claim
# table (Holm-corrected across all claims) in experiments/README.md with experiments/summary.png.
#   bash experiments/programme.sh                               every claim, in the order below
#   bash experiments/programme.sh ablate_lrn ablate_test_crops  some of them
# Sweeps live in $RUNS/NAME/programme (default experiments/runs, committed less their checkpoints): running this again skips finished jobs and
# resumes interrupted ones from their checkpoints, so the programme can run in parts (nohup ... &; a kill loses at
# most the current epoch). Extra overrides for every sweep: OVERRIDES="trainer=gpu ...". JOBS=N (default 2) runs N
# jobs of a sweep side by side (hydra/launcher=cpu_jobs; JOBS=1: one at a time). SWEEPS_ONLY=1 trains and leaves
# the reports for later (python src/compare.py, as below).
# Seeds: each claim's sweep runs the seeds of experiments/plan.yaml (#29's plan, fixed before its first new run: the
# pilot's five, then the new ones; finished jobs are skipped), in the plan's order; experiments/same_path.sh NAME
# checks first that the new seeds run the pilot's training code.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-experiments/runs}
JOBS=${JOBS:-2}
ORDER=(ablate_lrn ablate_lrn_removed ablate_test_crops ablate_dropout ablate_towers ablate_augmentation ablate_pooling_overfit
  ablate_dropout_iterations ablate_activation ablate_pooling)
read -r -a extra <<<"${OVERRIDES:-}"
if [ "$JOBS" -gt 1 ]; then extra=("hydra/launcher=cpu_jobs" "hydra.launcher.n_jobs=$JOBS" "${extra[@]}"); fi
report() { # compare.py ARGS...: a claim's report, unless SWEEPS_ONLY
  if [ -z "${SWEEPS_ONLY:-}" ]; then python src/compare.py "$@"; fi
}

seeds() { # NAME: the plan's seeds for NAME's sweep, pilot first, comma-separated
  python -c 'import sys, yaml; s = yaml.safe_load(open("experiments/plan.yaml"))["sweeps"][sys.argv[1]]
print(",".join(map(str, s["pilot"]["seeds"] + s["new_seeds"])))' "$1"
}

sweep() { # NAME DIR [overrides]: one multirun into DIR, resumable; its wall time adds up in DIR/sweep_seconds
  # (only when the multirun ends: a killed segment adds nothing, so reports count the runs' own wall_seconds)
  local name=$1 dir=$2
  shift 2
  local start before
  start=$(date +%s)
  python src/train.py -m "experiment=$name" "hydra.sweep.dir=$dir" "${extra[@]}" "$@"
  before=$(cat "$dir/sweep_seconds" 2>/dev/null || echo 0)
  echo $((before + $(date +%s) - start)) >"$dir/sweep_seconds"
}

for name in "${@:-${ORDER[@]}}"; do
  case $name in
  ablate_test_crops | ablate_lrn_removed) # no runs of their own: ablate_lrn's arms (10 and 1 crops; LRN removed)
    report "$RUNS/ablate_lrn/programme" --claim "$name" --out "experiments/$name"
    ;;
  ablate_activation) # Fig. 1: each arm's rate chosen on tuning seeds, then compared on seeds the tuning never saw
    tuning=$RUNS/ablate_activation/programme-tuning
    sweep ablate_activation "$tuning"
    [ -n "${SWEEPS_ONLY:-}" ] && continue # the comparison needs the tuning's choice
    for choice in $(python src/compare.py "$tuning" --select); do
      case $choice in
      *_at_grid_edge=*) echo "warning: ${choice%%_at_grid_edge=*}'s fastest rate is at the edge of the grid" >&2 ;;
      *_reached_nothing=*) echo "warning: ${choice%%_reached_nothing=*} reached no target at any rate of the grid" >&2 ;;
      *) sweep ablate_activation "$RUNS/ablate_activation/programme" "arm=${choice%%=*}" "optimizer.lr=${choice#*=}" \
        "seed=$(seeds ablate_activation)" ;;
      esac
    done
    report "$tuning" "$RUNS/ablate_activation/programme" --out experiments/ablate_activation
    ;;
  *)
    sweep "$name" "$RUNS/$name/programme" "seed=$(seeds "$name")"
    # judged on the claim as conf/claim/NAME.yaml states it now (the same as the runs' own until the
    # analysis is edited; the runs are not retrained for that: resume.py)
    report "$RUNS/$name/programme" --claim "$name" --out "experiments/$name"
    ;;
  esac
  report --index experiments
done
