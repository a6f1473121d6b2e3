"""ablate_pooling's arms differ in the pooling window alone: the same map sizes, the same parameters, and in neither
arm a row or column of any map (or pixel of the input) left out. The default net's geometry, with floor-mode 2/2
pooling, loses positions: the check can fail."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from alexnet.claims.run_tables import pooling_geometry
from alexnet.claims.runs import Run
from alexnet.geometry import POOLINGS, pool_coverage, pool_padding
from alexnet.model.net import AlexNet
from conftest import CONF, mini_kwargs

ARMS = ("overlapping", "non_overlapping")


def arm_net(experiment: str, arm: str) -> AlexNet:
    """The net of one arm, as `experiment=... arm=...` composes it (Fashion-MNIST: 1 x 28 x 28, 10 classes)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        model = OmegaConf.to_container(compose("train", [f"experiment={experiment}", f"arm={arm}"]).model, resolve=True)
    del model["_target_"], model["devices"]
    torch.manual_seed(0)
    return AlexNet(**model)


def coverage(net: AlexNet) -> list[float]:
    """The fraction of each pooled map's rows and columns that some window holds (pool1, pool2, pool5)."""
    return [f for g in net.pool_geometry() for f in g["held"]]


def input_reach(net: AlexNet) -> torch.Tensor:
    """Per input pixel: whether the net's output depends on it (a gradient over many random images)."""
    net.eval()
    x = (torch.rand(256, 1, 28, 28, generator=torch.Generator().manual_seed(1)) * 255 - 73).requires_grad_()
    net(x).sum().backward()
    return x.grad.abs().sum(0)[0] > 0


@pytest.mark.parametrize("experiment", ["ablate_pooling", "ablate_pooling_overfit"])
def test_pooling_arms_keep_every_position_and_the_same_sizes(experiment: str) -> None:
    nets = {arm: arm_net(experiment, arm) for arm in ARMS}
    for arm, net in nets.items():
        assert (net.pool1.kernel_size, net.pool1.stride) == POOLINGS[arm]
        assert coverage(net) == [1.0] * 6, f"{arm}: a pooling leaves positions out"
        assert bool(input_reach(net).all()), f"{arm}: some input pixels never reach the output"
    a, b = nets.values()
    assert a.pool_inputs == b.pool_inputs == [(24, 24), (12, 12), (6, 6)]
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}
    assert a.fc6.in_features == 64 * 3 * 3


def test_floor_mode_non_overlapping_pooling_loses_the_borders() -> None:
    """What the first pooling claim ran: on the default's odd maps (23, 11, 5) floor-mode 2/2 drops the last row and
    column at every pooling, so pool5 sees 16 of conv5's 25 positions and the input's last rows never count."""
    floor = AlexNet(**mini_kwargs(num_classes=10, in_channels=1, input_size=28, pooling="non_overlapping"))
    assert floor.pool_inputs == [(23, 23), (11, 11), (5, 5)]
    assert coverage(floor) == [22 / 23] * 2 + [10 / 11] * 2 + [4 / 5] * 2
    reach = input_reach(floor)
    assert not bool(reach[-1].any()) and not bool(reach[:, -1].any())  # the last input row and column are lost
    overlapping = AlexNet(**mini_kwargs(num_classes=10, in_channels=1, input_size=28))
    assert coverage(overlapping) == [1.0] * 6  # 3/2 on odd maps covers them, with floor mode too


@pytest.mark.parametrize("size", range(3, 40))
def test_cover_pads_only_where_a_window_would_miss_the_last_position(size: int) -> None:
    for z, s in POOLINGS.values():
        pad = pool_padding(size, z, s, "cover")
        assert pool_coverage(size, z, s, pad)[1] == 1.0
        assert pad == 0 or pool_coverage(size, z, s, 0)[1] < 1.0  # no padding that was not needed


def arm_model(experiment: str, arm: str, *overrides: str) -> dict:
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", [f"experiment={experiment}", f"arm={arm}", *overrides])
    return OmegaConf.to_container(cfg.model, resolve=True)


def test_the_pooling_report_shows_each_arms_geometry_and_what_it_loses() -> None:
    """report.md's line, from the runs' own configs: both arms of ablate_pooling hold every row and column; the
    default net's floor-mode 2/2 (what the first pooling claim ran) shows what it loses."""
    runs = {arm: [Run(Path("."), {"model": arm_model("ablate_pooling", arm)}, {"seed": 1}, arm, {})] for arm in ARMS}
    text = pooling_geometry(runs)
    assert text.count("100% of rows and columns held") == 6 and "pool5 6×6 → 3×3" in text, text
    assert "overlapping (overlapping, 3/2, pool_edges=cover)" in text and "non_overlapping, 2/2" in text
    floor = {arm: [Run(Path("."), {"model": arm_model("ablate_pooling", arm, "model.stem_kernel=6",
                                                       "model.pool_edges=floor")}, {"seed": 1}, arm, {})]
             for arm in ARMS}  # fmt: skip
    text = pooling_geometry(floor)
    assert "pool5 5×5 → 2×2 (padding 0, 80% of rows and columns held)" in text, text
    # arms that pool alike (any other claim) get no such line
    assert pooling_geometry({"a": runs["overlapping"], "b": runs["overlapping"]}) == ""
