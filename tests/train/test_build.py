"""Building a run's parts: a problem with the config is one `error: ...` line naming the group; a bug inside a
constructor keeps its traceback instead of being dressed up as a config error."""

from __future__ import annotations

import pytest
from hydra.errors import InstantiationException
from omegaconf import OmegaConf

from alexnet.errors import ConfigError
from alexnet.train.build import build, instantiate


def test_a_misspelt_key_is_a_config_error_naming_the_group(train_cfg) -> None:
    with pytest.raises(ConfigError, match=r"^model: .*dropuot"):
        build(train_cfg("+model.dropuot=0.1"))  # build_net passes it on to AlexNet(**kwargs), which has no such key


def test_a_value_our_constructor_refuses_is_a_config_error() -> None:
    node = OmegaConf.create({"_target_": "alexnet.train.optim.MilestoneSchedule", "milestones": [3, 2]})
    with pytest.raises(ConfigError, match=r"^scheduler: milestones=\[3, 2\]: allowed a list of increasing epoch"):
        instantiate("scheduler", node)


def test_a_target_hydra_cannot_find_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"^data: .*alexnet.data.NoSuchDataModule"):
        instantiate("data", OmegaConf.create({"_target_": "alexnet.data.NoSuchDataModule"}))


def test_a_type_error_from_inside_a_constructor_is_not_swallowed() -> None:
    # torch.nn.Linear's own code fails (torch.empty gets a string): a bug of the caller, not a misnamed setting
    node = OmegaConf.create({"_target_": "torch.nn.Linear", "in_features": 3, "out_features": "4"})
    with pytest.raises(InstantiationException) as e:
        instantiate("model", node)
    assert not isinstance(e.value, ConfigError) and isinstance(e.value.__cause__, TypeError)


def test_a_value_error_from_deep_inside_a_call_is_not_swallowed() -> None:
    def broken_factory() -> None:
        int("not a number")  # a ValueError raised inside, not by an argument check

    with pytest.raises(ValueError, match="invalid literal") as e:
        instantiate("model", broken_factory)
    assert not isinstance(e.value, ConfigError)


@pytest.mark.slow
def test_a_run_checks_its_config_once(fmnist_dir, tmp_path, monkeypatch) -> None:
    """#32: pipeline.train checks every value before the run directory is touched; build does not check again."""
    import alexnet.train.build as build_module
    from conftest import data_overrides, train_in_process

    checked, real = [], build_module.check_config
    monkeypatch.setattr(build_module, "check_config", lambda cfg: checked.append(cfg) or real(cfg))
    summary = train_in_process([*data_overrides(fmnist_dir), "debug=fast"], tmp_path / "run")
    assert summary["test"] and len(checked) == 1
