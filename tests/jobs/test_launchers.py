"""Hydra launchers the sweeps run on: several jobs at once on one GPU, and the SLURM launcher's configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from conftest import CONF, data_overrides


@pytest.mark.slow
def test_a_sweep_runs_several_jobs_at_once_with_the_gpu_launcher(tmp_path: Path, fmnist_dir: Path, run_cli) -> None:
    """hydra/launcher=gpu_jobs (joblib, one process per job) on the CPU: two jobs side by side, each with its own
    run directory and results, as the default launcher gives."""
    proc = run_cli(
        "train.py", "-m", "hydra/launcher=gpu_jobs", "hydra.launcher.n_jobs=2", *data_overrides(fmnist_dir),
        "debug=fast", "seed=1,2", f"hydra.sweep.dir={tmp_path / 'sweep'}", "data.augment_on=device", timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Joblib.Parallel(n_jobs=2" in proc.stdout + proc.stderr
    summaries = [json.loads((tmp_path / "sweep" / str(i) / "summary.json").read_text()) for i in (0, 1)]
    assert [s["seed"] for s in summaries] == [1, 2] and all(s["test"] for s in summaries)


def _compose(*overrides: str, hydra: bool = False):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=hydra)


def test_slurm_launcher_configs_compose() -> None:
    for launcher in ("submitit_slurm", "slurm_gpu"):
        cfg = _compose("experiment=ablate_lrn", f"hydra/launcher={launcher}", hydra=True)
        assert cfg.hydra.launcher._target_.endswith("SlurmLauncher")
    cfg = _compose("hydra/launcher=slurm_gpu", hydra=True)
    assert cfg.hydra.launcher.gpus_per_node == 1 and cfg.hydra.launcher.tasks_per_node == 1
