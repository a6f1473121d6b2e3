"""Checkpoints: the data module's state found under its own key, weights converted explicitly between the
grouped net and the two-tower split (§3.2) when a run is rebuilt in the other layout, and a file that is no
checkpoint called what it is (a crafted one refused unrun)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from alexnet import AlexNet, TwoTowerAlexNet
from alexnet.errors import ConfigError
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


class Payload:
    """What a crafted checkpoint could do when unpickled: run a command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


NOT_ONE = {
    "empty": (lambda path: path.write_bytes(b""), "not a checkpoint: the file is empty"),
    "text": (
        lambda path: path.write_text("my notes\non the run\n"),
        "not a checkpoint: a text file (20 bytes: 'my notes on the run'",
    ),
    "lfs": (
        lambda path: path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:4d7a\nsize 4383863\n"),
        "not a checkpoint: it is a Git LFS pointer",
    ),
    "random": (
        lambda path: path.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()),
        "not a checkpoint: its 5,000 bytes begin neither as torch.save's zip archive nor as a pickle",
    ),
    "cut short": (
        lambda path: path.write_bytes(_saved(path)[:300]),
        "not a readable checkpoint (PytorchStreamReader",
    ),
    "plain pickle": (lambda path: path.write_bytes(pickle.dumps({"a": 1})), "a pickle that torch.save did not write"),
}


def _saved(path: Path) -> bytes:
    torch.save({"state_dict": {"w": torch.zeros(3)}}, path)
    return path.read_bytes()


@pytest.mark.parametrize("kind", NOT_ONE)
def test_a_file_that_is_no_checkpoint_is_called_what_it_is(tmp_path: Path, kind: str) -> None:
    write, words = NOT_ONE[kind]
    path = tmp_path / "model.ckpt"
    write(path)
    with pytest.raises(ConfigError) as e:
        safe_load(path)
    assert str(e.value).startswith(f"{path}: ") and words in str(e.value) and "could run code" not in str(e.value)


@pytest.mark.parametrize("how", ["pickle protocol 5", "torch.save"])
def test_a_crafted_checkpoint_is_refused_naming_what_it_would_call(tmp_path: Path, how: str) -> None:
    """torch's loader stops a protocol-5 pickle at its first opcode, saying nothing of the object: read by
    pickletools, it names the function it would have called."""
    marker, path = tmp_path / "it-ran", tmp_path / "model.ckpt"
    crafted = {"state_dict": Payload(marker)}
    if how == "torch.save":
        torch.save(crafted, path)
    else:
        path.write_bytes(pickle.dumps(crafted, protocol=5))
    with pytest.raises(ConfigError, match=r"refused to load: .*\(it names \w+\.system\), which could run code"):
        safe_load(path)
    assert not marker.exists()
