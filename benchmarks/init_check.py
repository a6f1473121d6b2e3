"""Which initialisation lets the embedded net learn from raw pixels? The paper's, He's, and the gain-matched one.

    python benchmarks/init_check.py [--subset 10000] [--epochs 2] [--seed 1]

Runs `python src/train.py` (the embedded default: raw 0-255 pixels minus the mean, LRN, the paper's dropout
and SGD) on a fixed subset of the training images with a constant learning rate, once per initialisation and
rate (the paper's 0.01 for each; also the default run's 0.02 for gain_matched and 0.001 for He's, where it
does not diverge), and prints the validation error (centre crop) after each epoch. A run whose loss turns
non-finite is reported as diverged.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARMS = {
    "paper N(0, 0.01), lr 0.01": ["model.init=paper", "optimizer.lr=0.01"],
    "gain_matched, lr 0.01": ["model.init=gain_matched", "optimizer.lr=0.01"],
    "gain_matched, lr 0.02": ["model.init=gain_matched", "optimizer.lr=0.02"],
    "He (kaiming), lr 0.01": ["model.init=kaiming", "optimizer.lr=0.01"],
    "He (kaiming), lr 0.001": ["model.init=kaiming", "optimizer.lr=0.001"],
}


def val_errors(run_dir: Path) -> list[float]:
    with open(run_dir / "metrics.csv") as f:
        return [float(r["val/top1_err"]) for r in csv.DictReader(f) if r.get("val/top1_err")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subset", type=int, default=10000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    common = [f"data.train_subset={args.subset}", f"trainer.max_epochs={args.epochs}", f"seed={args.seed}",
              "scheduler=none", "test=false", "callbacks.train_eval_error=null", "callbacks.progress_bar=null",
              "callbacks.model_summary=null", "logger=csv"]  # fmt: skip
    print(f"embedded net, {args.subset} training images, {args.epochs} epochs, seed {args.seed}, constant lr")
    with tempfile.TemporaryDirectory() as tmp:
        for name, overrides in ARMS.items():
            run = Path(tmp) / "".join(c if c.isalnum() else "_" for c in name)  # a plain Hydra override value
            proc = subprocess.run(
                [sys.executable, str(ROOT / "src" / "train.py"), *common, *overrides, f"hydra.run.dir={run}"],
                capture_output=True, text=True, cwd=ROOT,
            )  # fmt: skip
            errors = val_errors(run) if (run / "metrics.csv").is_file() else []
            shown = ", ".join(f"{e:.1%}" for e in errors) or "-"
            status = "diverged (non-finite loss)" if "non-finite" in proc.stderr else f"exit {proc.returncode}"
            print(f"{name:27s} validation error by epoch: {shown:24s} {status}", flush=True)


if __name__ == "__main__":
    main()
