"""The record of one run, written as its summary.json by the pipeline and read back by the reports.

The JSON keys and values are those summary.json has always had, so that old summaries and the committed claim
reports still load; keys a summary lacks (an older run) read as None or empty, and keys a callback adds (e.g.
Fig. 1's steps to a target training error) are kept in `extra`."""

from __future__ import annotations

import json
import subprocess
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from alexnet.files import write_json

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# the ten views of §4.1's test (data.transforms.ten_crop: four corners, centre, then their mirrors), in the order the
# 10-crop metrics name them (test_10crop/view0 ... view9)
VIEWS = ("top_left", "top_right", "bottom_left", "bottom_right", "centre", *(f"{v}_mirror" for v in
         ("top_left", "top_right", "bottom_left", "bottom_right", "centre")))  # fmt: skip


@dataclass
class RunRecord:
    run_dir: str = ""
    experiment: str | None = None
    arm: str | None = None
    seed: int | None = None
    git: dict[str, Any] = field(default_factory=dict)  # the commit the run started from, and whether it was dirty
    machine: dict[str, Any] = field(default_factory=dict)  # the CPU, threads and torch it computed with (utils.machine)
    parameters: int | None = None
    lrn_alpha_convention: str | None = None
    choices: dict[str, Any] | None = None  # fidelity_choices
    test_crops: int | None = None
    train_images: int | None = None
    epochs: int | None = None
    steps: int | None = None
    # the epochs after which the rate was cut (a plateau schedule cuts at different epochs in different runs)
    lr_reduction_epochs: list[int] | None = None
    lr_reductions: int | None = None  # None: no schedule
    world_size: int | None = None
    replicas_identical: bool | None = None
    model_devices: list[str] | None = None
    diverged_at_step: int | None = None
    final_lr: float | None = None
    best_epoch: int | None = None  # 0-based
    best_val: dict[str, float] = field(default_factory=dict)
    final_val: dict[str, float] = field(default_factory=dict)  # the last validation of the training
    test: dict[str, float] = field(default_factory=dict)  # the run's own crop count
    test_by_crops: dict[str, dict[str, float]] = field(default_factory=dict)
    train_eval: dict[str, float] = field(default_factory=dict)
    checkpoints: dict[str, str | None] = field(default_factory=dict)
    # both over every start of the run, each earlier one up to the checkpoint the next continued
    # (train.rundir.RunClock); a run recorded before `starts` existed (starts None) counts only its last start
    fit_seconds: float | None = None
    wall_seconds: float | None = None
    starts: int | None = None  # the starts that trained the run: 1, or more when resumed; None: not known
    extra: dict[str, Any] = field(default_factory=dict)  # what callbacks add (SummaryContributor.summary)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        return {**{k: v for k, v in data.items() if k != "extra"}, **data["extra"]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunRecord:
        own = {f.name for f in fields(cls)} - {"extra"}
        return cls(
            **{k: v for k, v in data.items() if k in own},
            extra={k: v for k, v in data.items() if k not in own},
        )

    def write(self, path: Path) -> None:
        write_json(path, self.to_json())

    @classmethod
    def read(cls, path: Path) -> RunRecord:
        return cls.from_json(json.loads(path.read_text()))


def fidelity_choices(cfg: DictConfig) -> dict[str, Any]:
    """The settings a result rests on where the paper is ambiguous (docs/fidelity.md): every summary and report
    names them."""
    model = cfg.model
    lrn = f"{model.lrn.alpha_convention} alpha={model.lrn.alpha} k={model.lrn.k}" if model.lrn.enabled else "off"
    if model.lrn.enabled and model.lrn.get("mode", "normalise") == "constant":
        lrn = f"constant k^-beta (k={model.lrn.k}, beta={model.lrn.beta})"
    return {
        "pixel_max": float(cfg.data.get("pixel_max", 255)),
        "lrn": lrn,
        "dropout_style": model.get("dropout_style", "paper") if model.dropout else "off",
        "bias_decay": bool(cfg.optimizer.get("bias_decay", False)),
        "init": model.init,
        "optimizer": cfg.optimizer._target_.rsplit(".", 1)[-1],
    }


def git_commit(root: Path = PROJECT_ROOT) -> dict[str, Any]:
    """The commit the code ran from, and whether the working tree had uncommitted changes. The claim reports
    under experiments/ are outputs (a sweep's programme rewrites them between claims), not code: not counted."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)experiments"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return {"commit": "unknown", "dirty": None}
    return {"commit": commit, "dirty": bool(status.strip())}


def machine() -> dict[str, Any]:
    """Where a run computed: the CPU model (float order differs between CPUs, so the arms of one seed are compared
    on one machine and a report lists its machines), the threads it used and the torch build."""
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))  # fmt: skip
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "threads": torch.get_num_threads(), "torch": torch.__version__}
