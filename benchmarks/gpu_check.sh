#!/usr/bin/env bash
# The device run, as one prepared script (docs/gpu.md; results in benchmarks/README.md):
#   bash benchmarks/prepare_device.sh                     # HERE first: .whl/ and data/fashion-mnist/, to carry
#   ALEXNET_COMMIT=abc1234 bash benchmarks/gpu_check.sh OUTDIR [--cpu]
# 1. checks the image's torch stack (torch, torchvision if present, lightning, torchmetrics) and stops with a
#    message if torchvision does not load with this torch; installs nothing that changes it;
# 2. installs from .whl/ (--no-deps, no index) only the pure-Python packages that do not import, into a folder of
#    their own on PYTHONPATH, and checks torch is still the image's;
# 3. smokes `python src/train.py trainer=gpu debug=fast` on the carried Fashion-MNIST;
# 4. measures: benchmarks/gpu_throughput.py under a deadline, its JSON rewritten after every section, in OUTDIR;
# 5. with GPU_CHECK_EXTRA=1 and time left, the older two-device checks (towers tests, a bf16 split run).
# --cpu: the CPU-sized run of the same steps (trainer=cpu, gpu_throughput.py --cpu), to check the script itself.
# Environment: PYTHON (default python3), DEADLINE (seconds for the measurement, default 360), FORCE_WHEELS=1
# (install every carried wheel even where the package imports: to test the install path).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-/tmp/gpu_check}}
mode=${2:-gpu}
py=${PYTHON:-python3}
deadline=${DEADLINE:-360}  # with start-up and smoke, the whole script fits a 600 s call
mkdir -p "$out"
export PYTHONUNBUFFERED=1 HYDRA_FULL_ERROR=1
log() { echo "== $*" | tee -a "$out/steps.txt"; }

log "1. the image's torch stack"
[ "$mode" = --cpu ] || nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
$py - > "$out/stack.txt" 2>&1 <<'EOF'
import importlib, sys
import torch
print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda,
      "available", torch.cuda.is_available())
try:
    import torchvision
    print("torchvision", torchvision.__version__)
except ImportError:
    print("torchvision: not installed (JPEG batches decode with Pillow on the CPU)")
except Exception as e:  # a torchvision built for another torch: it also breaks `import torchmetrics`
    sys.exit(f"error: torchvision does not load with torch {torch.__version__} ({type(e).__name__}: {e}); "
             "this script installs no torchvision: use the image's own, or uninstall it (docs/gpu.md)")
for name in ("lightning", "torchmetrics"):
    print(name, importlib.import_module(name).__version__)
EOF
status=$?
cat "$out/stack.txt"
[ $status -eq 0 ] || exit 3
torch_before=$($py -c "import torch; print(torch.__version__, torch.__file__)")

log "2. the pure-Python packages this image lacks, from .whl/"
site=/tmp/alexnet_site
need=()
# import name -> carried wheel (distribution) name
for pair in hydra:hydra_core omegaconf:omegaconf antlr4:antlr4_python3_runtime joblib:joblib \
  hydra_plugins.hydra_joblib_launcher:hydra_joblib_launcher cloudpickle:cloudpickle rich:rich \
  markdown_it:markdown_it_py mdurl:mdurl pygments:pygments; do
  module=${pair%%:*} wheel=${pair##*:}
  if [ "${FORCE_WHEELS:-0}" = 1 ] || ! $py -c "import $module" 2>/dev/null; then
    found=$(ls .whl/"$wheel"-*.whl 2>/dev/null | head -1)
    [ -n "$found" ] || { echo "error: $module does not import and .whl/ has no $wheel wheel: run benchmarks/prepare_device.sh here first"; exit 4; }
    need+=("$found")
  fi
done
if [ ${#need[@]} -gt 0 ]; then
  $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" "${need[@]}" \
    || { echo "error: installing ${need[*]} into $site failed"; exit 4; }
  export PYTHONPATH=$site:$PWD/src
else
  export PYTHONPATH=$PWD/src
fi
echo "installed into $site: ${need[*]:-nothing}" | tee -a "$out/steps.txt"
torch_after=$($py -c "import torch; print(torch.__version__, torch.__file__)")
[ "$torch_before" = "$torch_after" ] || { echo "error: torch changed: $torch_before -> $torch_after"; exit 5; }
$py -c "import hydra, omegaconf, rich, alexnet.train.pipeline; print('hydra', hydra.__version__, 'from', hydra.__file__)" \
  | tee -a "$out/steps.txt" || exit 4

log "3. smoke: src/train.py debug=fast"
trainer=gpu; [ "$mode" = --cpu ] && trainer=cpu
timeout 300 $py src/train.py trainer=$trainer debug=fast hydra.run.dir="$out/smoke" > "$out/smoke.log" 2>&1
status=$?
echo "smoke trainer=$trainer debug=fast exit $status" | tee -a "$out/steps.txt"
[ $status -eq 0 ] || { tail -20 "$out/smoke.log"; exit 6; }

log "4. measure: benchmarks/gpu_throughput.py, deadline ${deadline} s"
cpu_flag=(); [ "$mode" = --cpu ] && cpu_flag=(--cpu)
timeout $((deadline + 60)) $py benchmarks/gpu_throughput.py "${cpu_flag[@]}" --out "$out" --deadline "$deadline" \
  > "$out/throughput.log" 2>&1
echo "gpu_throughput exit $?" | tee -a "$out/steps.txt"
tail -12 "$out/throughput.log"

if [ "${GPU_CHECK_EXTRA:-0}" = 1 ] && [ "$mode" != --cpu ]; then
  log "5. two-device checks"
  timeout 240 $py -m pytest -q -p no:cacheprovider tests/model/test_towers.py -k "trainer_run or same_ or exchange" 2>&1 \
    | tail -5 | tee "$out/towers_tests.txt"
  timeout 120 $py src/train.py debug=fast model.devices=[cuda:0,cuda:0] trainer.precision=bf16-mixed data=synthetic \
    model=alexnet data.batch_size=32 hydra.run.dir="$out/bf16" > "$out/bf16.log" 2>&1
  echo "bf16-mixed split run exit $?" | tee -a "$out/towers_tests.txt"
fi
log "done"
