"""Saved configs of the flat package (before the wings) still load: the committed runs, run directories and
checkpoints name their classes by import paths that moved, and config/legacy.upgrade reads them under today's."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from hydra.utils import get_object
from omegaconf import OmegaConf

from alexnet.legacy import MOVED, upgrade, upgrade_path
from alexnet.train.checkpoints import load_checkpoint
from conftest import ROOT, evaluate_in_process

COMMITTED = ROOT / "experiments" / "runs" / "ablate_dropout" / "programme" / "ablate_dropout_dropout_seed1"


def old_paths(config: object) -> list[str]:
    """Every string of a saved config that names a module of the flat package."""
    if isinstance(config, dict):
        return [p for v in config.values() for p in old_paths(v)]
    if isinstance(config, list):
        return [p for v in config for p in old_paths(v)]
    return [config] if isinstance(config, str) and upgrade_path(config) != config else []


def test_every_import_path_in_the_committed_runs_names_an_object_today() -> None:
    found = set()
    for saved in (ROOT / "experiments" / "runs").glob("*/*/*/config.yaml"):
        found |= set(old_paths(yaml.safe_load(saved.read_text())))
    assert {"alexnet.callbacks.TrainEvalError", "alexnet.optim.PaperSGD", "alexnet.resume.RunCSVLogger"} <= found
    for path in found:
        assert get_object(upgrade_path(path)) is not None, path


def test_paths_of_today_and_other_strings_are_left_as_they_are() -> None:
    for path in ("alexnet.train.callbacks.TrainEvalError", "alexnet.model.net.AlexNet", "alexnet.build_net",
                 "alexnet.data.FashionMNISTDataModule", "lrn", "alexnet.callbacks"):  # fmt: skip
        assert upgrade_path(path) == path
    assert upgrade_path("alexnet.model.AlexNet") == "alexnet.model.net.AlexNet"
    assert set(MOVED) >= {"callbacks", "optim", "resume", "loggers", "progress", "sweeps"}


@pytest.mark.slow
def test_a_committed_run_is_found_finished_by_todays_code(tmp_path: Path, run_cli) -> None:
    # the committed run's config.yaml names alexnet.callbacks.TrainEvalError and alexnet.optim.PaperSGD: read under
    # today's names it is the same run, so a sweep rerun skips it instead of refusing its directory
    run = tmp_path / COMMITTED.name
    shutil.copytree(COMMITTED, run)
    # the run's own files (Hydra rewrites .hydra/ on every start in a directory: #30 tracks that)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and ".hydra" not in p.parts}
    proc = run_cli("train.py", "experiment=ablate_dropout", "arm=dropout", "seed=1",
                   f"hydra.run.dir={run}", env={**os.environ, "WANDB_MODE": "disabled"})  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "finished: skipping" in proc.stdout + proc.stderr
    assert {p: p.read_bytes() for p in before} == before  # nothing of it rewritten


@pytest.mark.slow
def test_a_checkpoint_naming_the_old_paths_evaluates_as_todays(fast_run, tmp_path: Path) -> None:
    _, run_dir = fast_run
    checkpoint = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)
    inverse = {f"alexnet.{new}.": f"alexnet.{old}." for old, new in MOVED.items()}

    def downgrade(node: object) -> object:
        if isinstance(node, dict):
            return {k: downgrade(v) for k, v in node.items()}
        if isinstance(node, list):
            return [downgrade(v) for v in node]
        if isinstance(node, str):
            for new, old in inverse.items():
                if node.startswith(new) and node.count(".") == new.count("."):
                    return old + node[len(new) :]
        return node

    checkpoint["alexnet_config"] = downgrade(checkpoint["alexnet_config"])
    assert old_paths(checkpoint["alexnet_config"])  # it names the flat package's paths now, as an old one does
    assert upgrade(checkpoint["alexnet_config"]) != checkpoint["alexnet_config"]
    old = tmp_path / "old.ckpt"
    torch.save(checkpoint, old)
    today = evaluate_in_process([f"ckpt_path={run_dir / 'checkpoints' / 'best.ckpt'}"], tmp_path / "today")
    before = evaluate_in_process([f"ckpt_path={old}"], tmp_path / "before")
    assert before["test"] == today["test"]
    # and the config it is rebuilt from names today's paths (what a rebuilt run instantiates and records)
    _, _, run_cfg = load_checkpoint(OmegaConf.create({"ckpt_path": str(old), "run_dir": None}))
    assert (
        not old_paths(OmegaConf.to_container(run_cfg)) and run_cfg.optimizer._target_ == "alexnet.train.optim.PaperSGD"
    )
