#!/usr/bin/env bash
# The default run's target (issue: test top-1 error <= 9% within 10 minutes on a 2-core CPU):
#   bash benchmarks/default_run.sh [extra overrides]
# Runs `python src/train.py` exactly as the README does, timed from the shell, and prints the result.
set -euo pipefail
cd "$(dirname "$0")/.."
run_dir="logs/benchmarks/default_run/$(date +%Y-%m-%d_%H-%M-%S)"
start=$(date +%s)
python src/train.py hydra.run.dir="$run_dir" "$@"
end=$(date +%s)
python - "$run_dir" "$((end - start))" <<'PY'
import json, sys
s = json.load(open(f"{sys.argv[1]}/summary.json"))
print(f"seed {s['seed']}: wall {sys.argv[2]} s (train.py's own count {s['wall_seconds']} s, fit {s['fit_seconds']} s), "
      f"epochs {s['epochs']}, "
      f"lr reductions {s['lr_reductions']}, best val top-1 {s['best_val']['val/top1_err']:.4f}, "
      f"test top-1 {s['test']['test/top1_err']:.4f}, top-5 {s['test']['test/top5_err']:.4f} "
      f"({s['test_crops']} crops), commit {s['git']['commit'][:10]}{' (dirty)' if s['git']['dirty'] else ''}")
PY
