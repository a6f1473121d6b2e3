"""The claims as experiments: configs whose arms differ only in what they ablate, sweeps with seeds, the
recipes of the budgets, and what each arm builds."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from conftest import CONF, compose_train, data_overrides

ABLATIONS = sorted(p.stem for p in (CONF / "experiment").glob("ablate_*.yaml"))
# what each experiment's arms change, and nothing else (dotted keys of the resolved config); ablate_lrn's third arm,
# the control, in ARM_CONTROLS
ARM_KEYS = {
    "ablate_lrn": {"model.lrn.mode"},
    "ablate_pooling": {"model.pooling"},
    "ablate_pooling_overfit": {"model.pooling"},
    "ablate_activation": {"model.activation"},
    "ablate_dropout": {"model.dropout"},
    "ablate_dropout_iterations": {"model.dropout"},
    "ablate_augmentation": {"data.augment.random_crop", "data.augment.flip"},
    "ablate_towers": {"model.towers"},
    "ablate_pca": {"data.augment.pca"},
}
ARM_CONTROLS = {"ablate_lrn": {"no_lrn": {"model.lrn.enabled"}}}  # arm -> what it changes against the reference
NEEDS_ILSVRC = {"ablate_pca", "paper"}


def test_every_claim_has_an_experiment() -> None:
    # or is judged on another experiment's runs (conf/claim/: runs_of), as the 10-crop and literal-LRN claims are
    assert set(ABLATIONS) == set(ARM_KEYS)
    assert {p.stem for p in (CONF / "claim").glob("*.yaml")} == {*ABLATIONS, "ablate_test_crops", "ablate_lrn_removed"}
    for name in ("paper", "baseline"):
        assert (CONF / "experiment" / f"{name}.yaml").is_file()


def _compose(*overrides: str, hydra: bool = False):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=list(overrides), return_hydra_config=hydra)


def _flat(cfg, prefix: str = "") -> dict[str, object]:
    out = {}
    for key, value in cfg.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


@pytest.mark.parametrize("name", sorted(ARM_KEYS))
def test_arms_differ_only_in_what_they_ablate(name: str, tmp_path: Path) -> None:
    cfg = _compose(f"experiment={name}", hydra=True)
    arms = list(cfg.arms)
    reference, ablated = cfg.claim.reference, cfg.claim.ablated
    assert set(arms) == {reference, ablated, *ARM_CONTROLS.get(name, {})}
    assert cfg.arm == ablated  # `experiment=NAME` alone runs the ablated arm
    resolved = {}
    for arm in arms:
        c = compose_train([f"experiment={name}", f"arm={arm}"], tmp_path)
        flat = _flat(OmegaConf.to_container(c, resolve=True))
        resolved[arm] = {k: v for k, v in flat.items() if k not in ("arm", "logger.wandb.arm")}  # names only
    ref = resolved[reference]
    for arm, keys in {ablated: ARM_KEYS[name], **ARM_CONTROLS.get(name, {})}.items():
        assert {k for k in ref if ref[k] != resolved[arm].get(k)} == keys, arm


@pytest.mark.parametrize("name", [*ABLATIONS, "baseline"])
def test_each_sweep_lists_its_arms_and_at_least_three_seeds(name: str) -> None:
    cfg = _compose(f"experiment={name}", hydra=True)
    params, sweep = cfg.hydra.sweeper.params, OmegaConf.to_container(cfg.hydra.sweep)  # unresolved
    # Fig. 1's sweep is its tuning stage (two seeds); its comparison runs five (experiments/programme.sh)
    assert len(str(params.seed).split(",")) >= (2 if (cfg.get("claim") or {}).get("tuning_seeds") else 3)
    if cfg.get("arms"):
        assert str(params.arm).split(",") == list(cfg.arms)
    # the experiment too: two experiments swept into one directory never name a job alike
    assert all(f"${{{key}}}" in sweep["subdir"] for key in ("experiment_name", "arm", "seed"))
    assert "${experiment_name}" in sweep["dir"]
    assert cfg.experiment_name == name and cfg.logger.csv and cfg.logger.wandb


def test_claims_on_one_budget_never_share_seeds() -> None:
    # their reference arms are one configuration: on shared seeds they would be the same runs again, and one lucky
    # seed would move every claim's difference together (ablate_test_crops and ablate_lrn_removed are judged on
    # ablate_lrn's runs, by design)
    seen: dict[tuple[str, int], str] = {}
    for name in ABLATIONS:
        cfg = _compose(f"experiment={name}", hydra=True)
        if name in ("ablate_test_crops", "ablate_lrn_removed") or cfg.budget.name not in ("converged", "overfit"):
            continue
        for seed in str(cfg.hydra.sweeper.params.seed).split(","):
            key = (cfg.budget.name, int(seed))
            assert key not in seen, f"{name} and {seen.get(key)} both run seed {seed} on budget {key[0]}"
            seen[key] = name
    assert {b for b, _ in seen} == {"converged", "overfit"}


def _lrn_kind(module, datamodule) -> str:
    """off (the identity), constant (linear, not the identity) or normalise (not linear: it divides by the
    activity of neighbouring maps)."""
    x = torch.rand(1, module.net.conv1.out_channels, 5, 5) * 100
    lrn = module.net.lrn1
    if torch.equal(lrn(x), x):
        return "off"
    return "constant" if torch.allclose(lrn(3 * x), 3 * lrn(x)) else "normalise"


def _pools(module, datamodule) -> list[float]:
    return module.net.pool(torch.arange(25.0).view(1, 1, 5, 5)).flatten().tolist()


def _activation_at_minus_one(module, datamodule) -> float:
    return round(module.net.act(torch.tensor([-1.0])).item(), 4)


def _train_mode_is_random(module, datamodule) -> bool:
    net, x = module.net.train(), torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        return not torch.equal(net(x), net(x))


def _augments(module, datamodule) -> bool:
    transform, img = datamodule.train_transform(), torch.arange(1024).remainder(251).to(torch.uint8).view(1, 32, 32)
    return len({tuple(transform(img).flatten().tolist()) for _ in range(20)}) > 1


def _tower_b_reaches_tower_a_in_conv2(module, datamodule) -> bool:
    conv2 = module.net.conv2
    x = torch.rand(1, conv2.in_channels, 7, 7)
    y = x.clone()
    y[:, conv2.in_channels // 2 :] += 1.0
    with torch.no_grad():
        return not torch.equal(conv2(x)[:, : conv2.out_channels // 2], conv2(y)[:, : conv2.out_channels // 2])


# what each arm builds, probed on the built module and data module: the ablated component differs, as it should
PROBES = {
    "ablate_lrn": (_lrn_kind, {"lrn": "normalise", "constant": "constant", "no_lrn": "off"}),
    # pool_edges=cover: 3/2 pads a 5x5 map by one (-inf) and holds its last row and column; 2/2 on 5 drops them
    "ablate_pooling": (
        _pools,
        {"overlapping": [6.0, 8.0, 9.0, 16.0, 18.0, 19.0, 21.0, 23.0, 24.0], "non_overlapping": [6.0, 8.0, 16.0, 18.0]},
    ),  # fmt: skip
    "ablate_pooling_overfit": (
        _pools,
        {"overlapping": [6.0, 8.0, 9.0, 16.0, 18.0, 19.0, 21.0, 23.0, 24.0], "non_overlapping": [6.0, 8.0, 16.0, 18.0]},
    ),  # fmt: skip
    "ablate_activation": (_activation_at_minus_one, {"relu": 0.0, "tanh": round(math.tanh(-1.0), 4)}),
    "ablate_dropout": (_train_mode_is_random, {"dropout": True, "no_dropout": False}),
    "ablate_dropout_iterations": (_train_mode_is_random, {"dropout": True, "no_dropout": False}),
    "ablate_augmentation": (_augments, {"augmentation": True, "no_augmentation": False}),
    "ablate_towers": (_tower_b_reaches_tower_a_in_conv2, {"two": False, "one": True}),
}


@pytest.mark.parametrize("name", sorted(set(ABLATIONS) - NEEDS_ILSVRC))
def test_embedded_experiments_build_on_the_embedded_data(name: str, tmp_path: Path, fmnist_dir: Path) -> None:
    from alexnet.train.pipeline import build

    cfg = compose_train([*data_overrides(fmnist_dir), f"experiment={name}"], tmp_path)
    probe, expected = PROBES[name]
    assert set(expected) == set(cfg.arms)
    for arm, value in expected.items():
        torch.manual_seed(0)
        arm_cfg = compose_train([*data_overrides(fmnist_dir), f"experiment={name}", f"arm={arm}"], tmp_path / arm)
        module, datamodule, _, _ = build(arm_cfg)
        assert datamodule.channels == 1
        assert probe(module, datamodule) == value, arm


def test_the_activation_experiment_follows_figure_1(tmp_path: Path) -> None:
    cfg = compose_train(["experiment=ablate_activation"], tmp_path)
    assert cfg.model.dropout == 0 and cfg.optimizer.weight_decay == 0  # no regularisation of any kind
    assert not cfg.data.augment.random_crop and not cfg.data.augment.flip
    assert cfg.callbacks.train_error_target.target[0] == 0.25  # the paper's target, then lower ones
    assert len(cfg.callbacks.train_error_target.target) >= 3
    assert cfg.claim.select_by == "optimizer.lr"
    params = _compose("experiment=ablate_activation", hydra=True).hydra.sweeper.params
    assert len(str(params["optimizer.lr"]).split(",")) >= 5
    # the rates are chosen on seeds that the comparison (seeds 1-5, experiments/programme.sh) never uses
    assert {int(s) for s in str(params.seed).split(",")} == set(cfg.claim.tuning_seeds)
    assert not set(cfg.claim.tuning_seeds) & {1, 2, 3, 4, 5}


def _output_spread(overrides: list[str], fmnist_dir: Path, tmp_path: Path) -> dict[str, float]:
    """Per arm of Fig. 1: how much the untrained net's outputs differ between images (std over a batch)."""
    from alexnet.train.pipeline import build

    spread = {}
    for arm in ("relu", "tanh"):
        torch.manual_seed(0)
        # the loader's float batches (augment_on=device would hand over uint8 images for the Trainer to transform)
        cfg = compose_train([*data_overrides(fmnist_dir), "experiment=ablate_activation", f"arm={arm}",
                             "data.augment_on=loader", *overrides], tmp_path / arm)  # fmt: skip
        module, datamodule, _, _ = build(cfg)
        datamodule.setup("fit")
        x = next(iter(datamodule.val_dataloader()))[0]
        with torch.no_grad():
            spread[arm] = module.net.eval()(x).std(0).mean().item()
    return spread


def test_both_figure_1_nets_start_where_they_can_learn(fmnist_dir: Path, tmp_path: Path) -> None:
    # the experiment's init (He's, each unit's own gain, pixels on [0, 1]): both nets tell images apart at init
    spread = _output_spread([], fmnist_dir, tmp_path / "kaiming")
    assert spread["tanh"] > 0.1 * spread["relu"] > 0, spread
    # the paper's init on raw pixels, set for ReLUs: the tanh net's outputs barely depend on the image, and such a
    # net stayed at chance for 5 epochs at every rate tried (experiments/archive/ablate_activation-paper-init)
    spread = _output_spread(["model.init=gain_matched", "data.pixel_max=255"], fmnist_dir, tmp_path / "paper")
    assert spread["tanh"] < 0.01 * spread["relu"], spread


@pytest.mark.parametrize(
    "overrides, words",
    [
        (["experiment=ablate_lrn", "arm=lrm"], ["arm='lrm'", "lrn, constant, no_lrn"]),
        (["experiment=ablate_lrn", "data=synthetic"], ["budget=embedded", "budget=ilsvrc"]),
        (["experiment=ablate_pca", "data=fashion_mnist"], ["needs RGB images", "data=imagenet"]),
    ],
)
def test_an_experiment_names_a_wrong_arm_or_data_set(overrides: list[str], words: list[str], tmp_path: Path) -> None:
    from alexnet.train.pipeline import ConfigError, train

    with pytest.raises(ConfigError) as e:
        train(compose_train(overrides, tmp_path))
    assert all(w in str(e.value) for w in words), str(e.value)
    assert not (tmp_path / "checkpoints").exists()  # stopped before training


def test_the_command_line_prints_the_message(tmp_path: Path, run_cli) -> None:
    proc = run_cli("train.py", "experiment=ablate_lrn", "arm=lrm", f"hydra.run.dir={tmp_path}")
    assert proc.returncode != 0 and proc.stderr.strip().endswith("this experiment's arms are lrn, constant, no_lrn")


def test_every_accuracy_claim_trains_on_one_converged_recipe(tmp_path: Path) -> None:
    assert compose_train([], tmp_path).optimizer.lr == 0.02  # the embedded default's own recipe
    assert compose_train(["experiment=baseline"], tmp_path).optimizer.lr == 0.02  # that recipe, named
    # the converged budget: all 55,000 images, the default's rate to its plateau, then two fixed cuts, the last 3
    # epochs at lr/100 (conf/budget/converged.yaml says why)
    recipes = set()
    for name in ("ablate_lrn", "ablate_pooling", "ablate_towers"):  # and the claims judged on ablate_lrn's runs
        cfg = compose_train([f"experiment={name}"], tmp_path)
        assert cfg.budget.name == "converged" and cfg.data.train_subset is None, name
        recipes.add((cfg.optimizer.lr, cfg.trainer.max_epochs, tuple(cfg.scheduler.milestones)))
    assert len(recipes) == 1
    lr, epochs, milestones = recipes.pop()
    assert lr == 0.02 and epochs - milestones[-1] >= 3  # the convergence rule's 3 epochs all at the last rate
    # the overfitting budget departs (conf/budget/overfit.yaml): 0.01 fits 2,000 images too slowly to overfit
    assert compose_train(["experiment=ablate_dropout"], tmp_path).optimizer.lr == 0.02


def test_the_overfitting_budget_draws_its_images_per_seed_and_pairs_the_arms(tmp_path: Path, fmnist_dir: Path) -> None:
    from alexnet.train.build import build_data

    def drawn(seed: int, arm: str) -> list[int]:
        cfg = compose_train([*data_overrides(fmnist_dir), "experiment=ablate_dropout", f"arm={arm}", f"seed={seed}",
                             "data.train_subset=50"], tmp_path / f"{arm}{seed}")  # fmt: skip
        datamodule = build_data(cfg)
        datamodule.setup("fit")
        return list(datamodule.sources["train"].indices)

    assert drawn(1, "dropout") == drawn(1, "no_dropout")  # the arms of a seed see the same images
    assert drawn(1, "dropout") != drawn(2, "dropout")  # the seeds' spread includes which images were drawn
