"""Checkpoints: the data module's state found under its own key, and weights converted explicitly between the
grouped net and the two-tower split (§3.2) when a run is rebuilt in the other layout."""

from __future__ import annotations

from pathlib import Path

import torch

from alexnet import AlexNet, TwoTowerAlexNet
from alexnet.model.towers import in_layout_of
from alexnet.train.checkpoints import data_state, safe_load
from alexnet.train.pipeline import train
from conftest import mini_kwargs

MINI = mini_kwargs(fc_width=64)


def test_weights_are_converted_into_the_layout_of_the_net_they_load_into() -> None:
    torch.manual_seed(0)
    grouped, split = AlexNet(**MINI), TwoTowerAlexNet(["cpu", "cpu"], **MINI)
    state = {f"net.{k}": v for k, v in grouped.state_dict().items()}
    as_split = in_layout_of(split, state)
    assert set(as_split) == {f"net.{k}" for k in split.state_dict()}
    split.load_state_dict({k[4:]: v for k, v in as_split.items()}, strict=True)
    back = in_layout_of(grouped, {f"net.{k}": v for k, v in split.state_dict().items()})
    assert set(back) == set(state) and all(torch.equal(back[k], v) for k, v in state.items())
    assert in_layout_of(grouped, state) == state  # already in its layout: unchanged


def test_the_data_state_is_read_by_the_data_modules_key(train_cfg, tmp_path: Path) -> None:
    summary = train(train_cfg("test=false"))
    checkpoint = safe_load(summary["checkpoints"]["last"])
    state = data_state(checkpoint)
    assert state is checkpoint["FashionMNISTDataModule"]
    assert "stats_scale" in state and len(state["class_names"]) == 10
    assert data_state({"alexnet_config": {"data": {"_target_": "alexnet.data.SyntheticDataModule"}}}) == {}
