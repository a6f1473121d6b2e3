"""Where a real run's time goes (issue: CPU speed): `python src/train.py` under Lightning's SimpleProfiler.

    python benchmarks/cpu_run.py [--batches 60] [--json PATH] [-- extra overrides ...]
    python benchmarks/cpu_run.py --variants "speed.channels_last=false" "speed.channels_last=true"

Each variant is one `python src/train.py` process on the embedded Fashion-MNIST (a shortened epoch of --batches
training batches, then validation, the 10-crop test of --test-batches batches and the eval-mode training-error
pass), with a profiler (RecordingProfiler, below) that writes every Lightning action's total time to JSON. The
table splits a training step into data loading (the loader, augmentation in the main process with
num_workers=0), the module's training_step (forward, loss, metrics, logging), backward, the optimizer, callbacks
and the rest of Lightning's loop; then validation, the test and the training-error pass. The variants run one
after the other, twice, alternating (A B A B), and the table shows each variant's faster run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from lightning.pytorch.profilers import SimpleProfiler

ROOT = Path(__file__).resolve().parents[1]


class RecordingProfiler(SimpleProfiler):
    """Lightning's SimpleProfiler that also writes {stage: {action: [total seconds, calls]}} to `json_path`."""

    def __init__(self, json_path: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.json_path = Path(json_path)

    def teardown(self, stage: str | None) -> None:
        data = json.loads(self.json_path.read_text()) if self.json_path.exists() else {}
        data[stage or "none"] = {k: [sum(v), len(v)] for k, v in self.recorded_durations.items()}
        self.json_path.write_text(json.dumps(data, indent=1))
        super().teardown(stage)


def group(actions: dict[str, list[float]]) -> dict[str, float]:
    """Lightning's actions in the training loop as the parts of a step a reader asks about (seconds). Nesting:
    run_training_epoch > run_training_batch > optimizer_step > (training_step, backward, the update itself);
    validation runs inside the epoch."""

    def total(*suffixes: str, prefix: str = "") -> float:
        return sum(t for name, (t, _) in actions.items() if name.startswith(prefix) and name.endswith(suffixes))

    training_step = total(".training_step", prefix="[Strategy]")
    backward = total(".backward", prefix="[Strategy]")
    optimizer_step = total(".optimizer_step", prefix="[LightningModule]")
    batch, epoch = total("run_training_batch"), total("run_training_epoch")
    data = total("train_dataloader_next")
    validation = total("val_next") + total(".validation_step", prefix="[Strategy]")
    validation += sum(t for name, (t, _) in actions.items() if name.startswith("[Callback]") and "validation" in name)
    return {
        "data (loader + augmentation)": data,
        "training_step (forward, loss, metrics, log)": training_step,
        "backward": backward,
        "optimizer update": optimizer_step - training_step - backward,
        "hooks around the batch (zero_grad, callbacks)": batch - optimizer_step,
        "rest of the epoch loop (logging, progress, checkpoints)": epoch - batch - data - validation,
        "validation": validation,
    }


def run(overrides: list[str], batches: int, test_batches: int, out: Path) -> dict:
    profile = out / "profile.json"
    cmd = [sys.executable, str(ROOT / "src" / "train.py"), f"hydra.run.dir={out}", "trainer.max_epochs=1",
           f"trainer.limit_train_batches={batches}", f"trainer.limit_test_batches={test_batches}",
           "+trainer.profiler._target_=cpu_run.RecordingProfiler", f"+trainer.profiler.json_path={profile}",
           "+trainer.num_sanity_val_steps=0",  # validation inside the epoch only: the loop's rest is what remains
           "logger=csv", "callbacks.train_eval_error.sample=2000", *overrides]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'benchmarks'}:{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    summary = json.loads((out / "summary.json").read_text())
    stages = json.loads(profile.read_text())
    fit, test = stages["fit"], stages.get("test", {})
    parts = group(fit)
    images = batches * 128
    train_seconds = fit["run_training_epoch"][0] - parts["validation"]
    return {
        "overrides": overrides,
        "train_images_per_sec": images / train_seconds,
        "train_seconds": train_seconds,
        "parts_seconds": parts,
        "test_seconds": sum(v[0] for k, v in test.items() if k.startswith("[Strategy]") and k.endswith("test_step"))
        + sum(v[0] for k, v in test.items() if k.endswith("test_next")),
        # the tests (every crop count) and the eval-mode training-error pass, after fit
        "after_fit_seconds": summary["wall_seconds"] - summary["fit_seconds"],
        "summary_wall_seconds": summary["wall_seconds"],
        "fit_seconds": summary["fit_seconds"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--test-batches", type=int, default=10)
    parser.add_argument("--variants", nargs="+", default=[""], help="each a space-separated list of overrides")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for i, variant in enumerate(args.variants):
                res = run(variant.split(), args.batches, args.test_batches, Path(tmp) / f"{r}-{i}")
                best = results.get(variant)
                if best is None or res["train_seconds"] < best["train_seconds"]:
                    results[variant] = res
    for variant, res in results.items():
        print(
            f"\n{variant or '(the default)'}: {res['train_images_per_sec']:.0f} training images/s over "
            f"{args.batches} batches"
        )
        total = res["train_seconds"]
        for part, seconds in res["parts_seconds"].items():
            if part != "validation":
                print(f"  {part:52} {seconds / args.batches * 1e3:7.1f} ms/step {seconds / total:6.1%}")
        print(f"  {'validation (whole split)':52} {res['parts_seconds']['validation']:7.1f} s")
        print(f"  {f'10-crop test ({args.test_batches} batches)':52} {res['test_seconds']:7.1f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
