#!/usr/bin/env bash
# Run HERE (a machine that reaches PyPI), before a device run: puts into two ignored folders what a GPU machine that
# reaches no package registry needs beside its own torch, torchvision, lightning and torchmetrics (docs/gpu.md):
#   .whl/               the pure-Python wheels the project imports and such an image may lack, --no-deps: torch and
#                       everything compiled against it stay the image's (benchmarks/gpu_check.sh installs only the
#                       ones that do not import there, into a folder of their own)
#   data/fashion-mnist/ the four Fashion-MNIST files, where the embedded runs look first (data.data_dir)
#   bash benchmarks/prepare_device.sh [PYTHON]     # PYTHON: whose installed versions to pin (default: python3)
# Then carry both with the working tree, e.g. the device tool's carry=[".whl", "data/fashion-mnist"] (about 31 MB).
set -euo pipefail
cd "$(dirname "$0")/.."
py=${1:-python3}

# distribution names; each at the version installed where the tests ran, so the device runs what was tested
wheels="hydra-core omegaconf antlr4-python3-runtime hydra-joblib-launcher joblib cloudpickle rich markdown-it-py
mdurl pygments"
pins=$($py - $wheels <<'EOF'
import importlib.metadata as m, sys
print(" ".join(f"{d}=={m.version(d)}" for d in sys.argv[1:]))
EOF
)
mkdir -p .whl
# pip wheel: a wheel as published, or built here from an sdist (antlr4-python3-runtime 4.9.3 has no wheel on PyPI)
# shellcheck disable=SC2086
$py -m pip wheel --quiet --no-deps --wheel-dir .whl $pins
for f in .whl/*.whl; do
  case "$f" in *-none-any.whl) ;; *) echo "error: $f is not pure Python: it would not fit every device" >&2; exit 1 ;; esac
done
ls -1 .whl

mkdir -p data/fashion-mnist
for name in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz; do
  if [ ! -f "data/fashion-mnist/$name" ]; then
    if [ -f "/usr/share/datasets/fashion-mnist/$name" ]; then
      cp "/usr/share/datasets/fashion-mnist/$name" data/fashion-mnist/
    else  # checksum-verified by the project's own download (into data/fashion-mnist)
      PYTHONPATH=src $py -c "from pathlib import Path; from alexnet.data.fashion_mnist import URL, download; download(URL, Path('data/fashion-mnist'))"
    fi
  fi
done
du -sh .whl data/fashion-mnist
