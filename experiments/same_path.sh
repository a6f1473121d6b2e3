#!/usr/bin/env bash
# Do a claim's new seeds run the training code its pilot seeds ran (#29: "a change of float order during the
# extension means rerunning the first five too")? On this machine, one thread, as the sweeps run:
#   1. the pilot's first run is started again at the commit it ran from (its summary.json's git.commit, in a
#      temporary worktree) and at this checkout, for one epoch each, side by side;
#   2. their metrics.csv rows (every logged training loss and the epoch's validation) must be equal to the last bit;
#   3. this checkout must also find the pilot's finished run directory "finished" (no setting differs from what it
#      ran), so that the programme's sweep skips it instead of refusing it.
# One CPU cannot reproduce another's floats (the pilots ran on another CPU), so the check compares code on one CPU.
#   bash experiments/same_path.sh ablate_lrn        exit 0: the same path; 1: it differs (what differs is printed)
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1
runs=experiments/runs/$name/programme
pilot=$(find "$runs" -mindepth 1 -maxdepth 1 -type d -name "${name}_*" | sort -V | head -n 1)
[ -n "$pilot" ] || { echo "error: no pilot run in $runs" >&2; exit 2; }
commit=$(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["git"]["commit"])' "$pilot/summary.json")
mapfile -t overrides < <(python -c 'import sys, yaml
for o in yaml.safe_load(open(sys.argv[1])):
    if not o.startswith(("hydra.", "hydra/")): print(o)' "$pilot/.hydra/overrides.yaml")
work=$(mktemp -d /tmp/same_path.XXXX)
trap 'git worktree remove --force "$work/code" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
git worktree add --detach "$work/code" "$commit" >/dev/null 2>&1
echo "$name: $pilot ran at ${commit:0:7}; one epoch of ${overrides[*]} there and here (HEAD $(git rev-parse --short HEAD))"
one_epoch() { # SRC OUT
  OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 WANDB_MODE=disabled python "$1/src/train.py" "${overrides[@]}" \
    trainer.max_epochs=1 test=false "hydra.run.dir=$2" >"$2.log" 2>&1 || { tail -n 20 "$2.log"; return 1; }
}
one_epoch "$work/code" "$work/then" &
then_pid=$!
one_epoch . "$work/now"
wait "$then_pid"
python - "$work/then/metrics.csv" "$work/now/metrics.csv" <<'PY'
import csv, sys
then, now = ([r for r in csv.DictReader(open(p))] for p in sys.argv[1:])
keep = lambda rows: [{k: v for k, v in r.items() if v and not k.startswith("train/images_per_sec")} for r in rows]
then, now = keep(then), keep(now)
if then != now:
    diff = [(i, k, a.get(k), b.get(k)) for i, (a, b) in enumerate(zip(then, now)) for k in a.keys() | b.keys()
            if a.get(k) != b.get(k)]
    sys.exit(f"differs: {len(then)} rows then, {len(now)} now; first differences {diff[:5]}")
print(f"the same to the last bit: {len(now)} metrics rows of epoch 1")
PY
cp -r "$pilot" "$work/finished"
if ! OMP_NUM_THREADS=1 WANDB_MODE=disabled python src/train.py "${overrides[@]}" \
  "hydra.run.dir=$work/finished" >"$work/finished.log" 2>&1 || ! grep -q "finished: skipping" "$work/finished.log"; then
  tail -n 5 "$work/finished.log"
  echo "differs: this checkout does not find the pilot's run finished" >&2
  exit 1
fi
echo "the pilot's run directory is found finished here: the sweep skips it"
