#!/usr/bin/env bash
# The checks that need a GPU, as one short script (see benchmarks/README.md for recorded results):
#   bash benchmarks/gpu_check.sh OUTDIR
# Expects torch, lightning, torchmetrics, rich importable; hydra-core/omegaconf may come as wheels in .whl/.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-/tmp/gpu_check}
mkdir -p "$out"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:src
else
  export PYTHONPATH=src
fi
export PYTHONUNBUFFERED=1
py=python3
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
$py -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__)" | tee -a "$out/gpu.txt"

echo "== two-device Trainer tests: [cuda:0,cpu] and [cuda:0,cuda:0] against the grouped net"
$py -m pytest -q -p no:cacheprovider tests/test_towers.py -k "trainer_run or same_ or exchange" 2>&1 | tail -5 | tee "$out/towers_tests.txt"

echo "== bf16-mixed with the split on the GPU"
$py src/train.py debug=fast model.devices=[cuda:0,cuda:0] trainer.precision=bf16-mixed data=synthetic \
  model=alexnet data.batch_size=32 hydra.run.dir=/tmp/gc/bf16 > "$out/bf16.log" 2>&1
echo "bf16-mixed split run exit code $?" | tee -a "$out/towers_tests.txt"

echo "== step time, two towers on one device / grouped"
for net in paper mini; do $py benchmarks/towers.py --device cuda --net $net --batch 128 --steps 20; done 2>&1 | tee "$out/towers_bench.txt"
$py benchmarks/towers.py --device cpu --net mini --batch 128 --steps 10 2>&1 | tee -a "$out/towers_bench.txt"

echo "== LRN"
$py benchmarks/lrn.py --device cuda 2>&1 | tee "$out/lrn.txt"

echo "== paper net training throughput on synthetic 224x224 data"
for precision in 32-true bf16-mixed; do
  $py src/train.py model=alexnet data=synthetic trainer=gpu trainer.precision=$precision trainer.max_epochs=2 \
    data.train_size=7680 data.val_size=256 data.num_workers=12 test=false callbacks=none \
    hydra.run.dir=/tmp/gc/paper_$precision > "$out/paper_$precision.log" 2>&1
  echo "$precision exit $?: images/s per epoch:" \
    $(awk -F, 'NR==1{for(i=1;i<=NF;i++) if($i=="train/images_per_sec") c=i} NR>1 && $c!="" {print int($c)}' \
      /tmp/gc/paper_$precision/metrics.csv) | tee -a "$out/throughput.txt"
done

echo "== the whole suite with a GPU present"
timeout 300 $py -m pytest -q -p no:cacheprovider -x 2>&1 | tail -8 | tee "$out/suite.txt"
