"""Every config composes and builds; every bad value stops before training with a message naming it."""

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from alexnet.pipeline import ConfigError, build
from conftest import CONF, compose_train, data_overrides

GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir() and p.name != "hydra")
# the ILSVRC recipes need an ImageNet tree: test_imagenet.py and test_experiments.py build them on generated ones
ILSVRC = {("experiment", "paper"), ("experiment", "ablate_pca"), ("budget", "ilsvrc"), ("data", "imagenet"),
          ("data", "imagefolder")}  # fmt: skip
OPTIONS = [(g, f.stem) for g in GROUPS for f in sorted((CONF / g).glob("*.yaml")) if (g, f.stem) not in ILSVRC]


def test_the_design_cards_groups_are_all_there() -> None:
    required = {
        "model",
        "data",
        "optimizer",
        "scheduler",
        "trainer",
        "logger",
        "callbacks",
        "experiment",
        "paths",
        "debug",
    }
    assert required <= set(GROUPS) and (CONF / "hydra" / "default.yaml").is_file()


@pytest.mark.parametrize("group, option", OPTIONS)
def test_every_option_composes_and_instantiates(group: str, option: str, tmp_path: Path, fmnist_dir: Path) -> None:
    overrides = [*data_overrides(fmnist_dir), f"{group}={option}"]
    if group == "model" and option == "alexnet" or group == "data" and option == "synthetic":
        overrides = ["model=alexnet", "data=synthetic"]  # the paper net needs 224x224 inputs
    cfg = compose_train(overrides, tmp_path)
    module, datamodule, callbacks, placement = build(cfg)
    if cfg.trainer.accelerator != "gpu" or torch.cuda.is_available():  # composing is all a CPU can check
        instantiate(cfg.trainer, callbacks=callbacks, logger=False, **placement)
    for logger in (cfg.get("logger") or {}).values():
        instantiate(logger)


def test_experiment_needs_no_plus(tmp_path: Path) -> None:
    cfg = compose_train(["experiment=baseline"], tmp_path)
    assert "baseline" in cfg.tags


def test_eval_config_composes() -> None:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("eval", overrides=["run_dir=/tmp/x", "test_crops=1"])
    assert cfg.run_dir == "/tmp/x" and cfg.test_crops == 1


def test_defaults_are_the_papers_recipe(tmp_path: Path) -> None:
    cfg = compose_train(["model=alexnet", "data=synthetic"], tmp_path)
    assert cfg.optimizer.lr == 0.01 and cfg.optimizer.momentum == 0.9 and cfg.optimizer.weight_decay == 5e-4
    assert cfg.data.batch_size == 128 and cfg.scheduler.factor == 0.1 and cfg.scheduler.max_reductions == 3
    lrn = cfg.model.lrn
    assert (lrn.k, lrn.n, lrn.alpha, lrn.beta) == (2.0, 5, 1e-4, 0.75)
    assert (cfg.model.pooling, cfg.model.dropout, cfg.model.towers, cfg.model.init) == (
        "overlapping",
        0.5,
        "two",
        "paper",
    )


@pytest.mark.parametrize(
    "override, words",
    [
        ("model.dropout=1.5", ["model", "dropout=1.5", "[0, 1)"]),
        ("model.activation=foo", ["model", "activation='foo'", "relu", "tanh"]),
        ("model.lrn.alpha_convention=caffe", ["model", "alpha_convention='caffe'", "paper", "cuda_convnet"]),
        ("optimizer.lr=0", ["optimizer", "lr=0", "> 0"]),
        ("optimizer.lr=-0.1", ["optimizer", "lr=-0.1"]),
        ("data.batch_size=0", ["data", "batch_size=0", ">= 1"]),
        ("data.crop_size=40", ["data", "crop_size=40", "stored_size=32"]),
        ("data.test_crops=5", ["data", "test_crops=5", "1", "10"]),
        ("scheduler.factor=2", ["scheduler", "factor=2"]),
        ("scheduler.monitor=val/acc", ["scheduler", "monitor='val/acc'", "val/top1_err"]),
        ("+model.dropuot=0.1", ["model", "dropuot"]),
    ],
)
def test_bad_values_are_named(override: str, words: list[str], train_cfg) -> None:
    cfg = train_cfg(override)
    with pytest.raises(ConfigError) as e:
        build(cfg)
    for word in words:
        assert word in str(e.value)


@pytest.mark.parametrize(
    "overrides, words",
    [
        (["trainer=ddp", "model.devices=[cuda:0,cpu]"], ["trainer", "same kind of device"]),
        (["+trainer.strategy=ddp_spawn", "model.devices=[cpu,cpu]"], ["trainer", "ddp_spawn", "auto", "ddp"]),
        (["model.devices=[cpu,cpu]", "model.fc_width=63"], ["model", "fc_width=63", "even"]),
    ],
)
def test_bad_two_device_settings_are_named(overrides: list[str], words: list[str], train_cfg) -> None:
    cfg = train_cfg(*overrides)
    with pytest.raises(ConfigError) as e:
        build(cfg)
    for word in words:
        assert word in str(e.value)
