"""The faster step's switches on the CPU: channels_last and torch.compile of the net train the same net, and their
checkpoints evaluate as any other (benchmarks/gpu_throughput.py measures their speed on a GPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import checked_build, data_overrides, evaluate_in_process, train_in_process


def _run(tmp_path: Path, fmnist_dir: Path, name: str, *extra: str) -> Path:
    run_dir = tmp_path / name
    # a narrower net than the default (the same layers, the same graph to compile), tested on the centre crop
    small = ["model.width=0.125", "model.fc_width=64", "data.test_crops=1"]
    train_in_process([*data_overrides(fmnist_dir), "debug=fast", "trainer.max_epochs=2", *small, *extra], run_dir)
    return run_dir


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)["state_dict"]


@pytest.mark.slow
def test_channels_last_and_compile_train_the_same_net(tmp_path: Path, fmnist_dir: Path) -> None:
    plain = _weights(_run(tmp_path, fmnist_dir, "plain"))
    nhwc_dir = _run(tmp_path, fmnist_dir, "nhwc", "speed.channels_last=true")
    # dynamo's graph capture without a C++ toolchain (backend eager): the compiled path, quickly
    compiled_dir = _run(tmp_path, fmnist_dir, "compiled", "speed.compile=true", "speed.compile_options.backend=eager")
    for run_dir in (nhwc_dir, compiled_dir):
        weights = _weights(run_dir)
        assert weights.keys() == plain.keys()  # the plain net's names: no _orig_mod. prefix
        for k in plain:  # the same arithmetic in another memory order: equal to float rounding
            torch.testing.assert_close(weights[k], plain[k], rtol=1e-4, atol=1e-5)
    assert _weights(nhwc_dir)["net.conv2.weight"].is_contiguous(memory_format=torch.channels_last)
    evaluate_in_process([f"run_dir={nhwc_dir}"], tmp_path / "eval")
    tested = json.loads((tmp_path / "eval" / "eval.json").read_text())["test"]
    summary = json.loads((nhwc_dir / "summary.json").read_text())["test"]
    assert tested["test/top1_err"] == pytest.approx(summary["test/top1_err"])


def test_a_wrong_compile_mode_is_named(train_cfg) -> None:
    from alexnet.train.pipeline import ConfigError

    with pytest.raises(ConfigError, match="speed.compile_options.mode='fast'"):
        checked_build(train_cfg("speed.compile_options.mode=fast"))
