"""Each config key has one owner: a net config sets the net and nothing else, the default run's recipe lives in
budget=default, and an experiment's budget replaces that recipe whole."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from conftest import CONF


def flat(overrides: list[str]) -> dict[str, object]:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=overrides)
    out: dict[str, object] = {}

    def walk(node: object, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        else:
            out[prefix[:-1]] = node

    walk(OmegaConf.to_container(cfg, resolve=False), "")
    return out


def changed(a: dict[str, object], b: dict[str, object]) -> set[str]:
    return {k for k in a.keys() | b.keys() if a.get(k, "<absent>") != b.get(k, "<absent>")}


@pytest.mark.parametrize("net", sorted(p.stem for p in (CONF / "model").glob("*.yaml")))
def test_choosing_a_net_changes_only_the_net(net: str) -> None:
    """`model=alexnet` used to move the rate from 0.02 to 0.01 and the epochs from 15 to 9 (the embedded net's
    config was global and carried the default run's recipe)."""
    default, other = flat([]), flat([f"model={net}"])
    assert {k for k in changed(default, other) if not k.startswith("model.")} == set()
    assert (other["optimizer.lr"], other["trainer.max_epochs"]) == (0.02, 15)


def test_the_default_recipe_is_the_default_budget_and_an_experiment_replaces_it() -> None:
    default = flat([])
    assert (default["budget.name"], default["optimizer.lr"], default["trainer.max_epochs"]) == ("default", 0.02, 15)
    converged = flat(["experiment=ablate_lrn"])
    assert (converged["budget.name"], converged["optimizer.lr"], converged["trainer.max_epochs"]) == (
        "converged", 0.02, 15)  # fmt: skip
    paper = flat(["experiment=paper"])  # the paper's 90 epochs (trainer=gpu), not the default run's 15
    assert (paper["budget.name"], paper["trainer.max_epochs"], paper["optimizer.lr"]) == ("ilsvrc", 90, 0.01)


def test_every_budget_states_its_rate_and_epochs_and_nothing_else_does() -> None:
    """`optimizer.lr` had three base owners (the optimizer files' 0.01, four budgets, relied on only by ilsvrc) and
    `trainer.max_epochs` two (trainer/cpu.yaml's 9, trainer/gpu.yaml's 90, the paper's number written only there)."""
    for budget in sorted((CONF / "budget").glob("*.yaml")):
        cfg = OmegaConf.load(budget)
        assert "lr" in cfg.get("optimizer", {}) and "max_epochs" in cfg.get("trainer", {}), budget.name
    for group, key in (("optimizer", "lr"), ("trainer", "max_epochs")):
        for path in sorted((CONF / group).glob("*.yaml")):
            assert key not in OmegaConf.load(path), f"{path.name} sets {group}.{key}: the budget owns it"
    assert (flat(["budget=ilsvrc"])["optimizer.lr"], flat(["budget=ilsvrc"])["trainer.max_epochs"]) == (0.01, 90)


def test_a_claim_is_its_own_group_and_every_run_records_the_claim_it_was_run_for() -> None:
    for experiment in sorted((CONF / "experiment").glob("ablate_*.yaml")):
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("train", overrides=[f"experiment={experiment.stem}"], return_hydra_config=True)
        assert "\nclaim:" not in experiment.read_text()  # the experiment names its claim; conf/claim/ states it
        assert OmegaConf.to_container(cfg.claim) == OmegaConf.to_container(
            OmegaConf.load(CONF / "claim" / experiment.name)
        )
        # the name written once: the experiment's file name, read from Hydra's record of the choice
        assert cfg.tags == [experiment.stem] == [cfg.experiment_name]
        assert "experiment_name:" not in experiment.read_text()
    assert "claim" not in flat([]) and not any(k.startswith("claim.") for k in flat([]))  # no experiment, no claim
    # a claim over another experiment's runs has no experiment of its own
    for name in ("ablate_test_crops", "ablate_lrn_removed"):
        assert not (CONF / "experiment" / f"{name}.yaml").exists()
        assert OmegaConf.load(CONF / "claim" / f"{name}.yaml").runs_of.experiment == "ablate_lrn"
