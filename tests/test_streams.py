"""Random streams (src/alexnet/streams.py): arms with one seed see the same batches; a resumed epoch continues."""

from __future__ import annotations

from pathlib import Path

import torch

from alexnet.streams import EpochSampler, stream_seed
from alexnet.train.pipeline import build
from conftest import compose_train, data_overrides


def batches(cfg, epoch: int, n: int = 3) -> list[tuple[torch.Tensor, torch.Tensor]]:
    module, datamodule, _, _ = build(cfg)
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()
    loader.sampler.set_epoch(epoch)
    return [b for _, b in zip(range(n), loader, strict=False)], module


def test_two_arms_that_differ_only_in_lrn_receive_identical_batches_and_weights(tmp_path: Path, fmnist_dir) -> None:
    arms = {}
    for arm in ("lrn", "no_lrn"):
        cfg = compose_train(
            # the loader's transformed batches: with augment_on=device the same streams draw the same choices, and
            # the batches are bit for bit the loader's (tests/data/test_batched.py)
            [
                *data_overrides(fmnist_dir),
                "experiment=ablate_lrn",
                f"arm={arm}",
                "seed=3",
                "data.train_subset=400",
                "data.augment_on=loader",
            ],
            tmp_path,
        )
        arms[arm] = {epoch: batches(cfg, epoch) for epoch in (0, 1)}
    for epoch in (0, 1):
        (a, net_a), (b, net_b) = arms["lrn"][epoch], arms["no_lrn"][epoch]
        for (xa, ya), (xb, yb) in zip(a, b, strict=True):
            assert torch.equal(xa, xb) and torch.equal(ya, yb)  # same images, order, crops and flips
        assert net_a.net.lrn1.__class__ is not net_b.net.lrn1.__class__  # the arms do differ in LRN
        for (name, p), q in zip(net_a.net.state_dict().items(), net_b.net.state_dict().values(), strict=True):
            assert torch.equal(p, q), name  # the same initial weights
    assert not torch.equal(arms["lrn"][0][0][0][0], arms["lrn"][1][0][0][0])  # another order in another epoch
    other = compose_train(
        [
            *data_overrides(fmnist_dir),
            "experiment=ablate_lrn",
            "arm=lrn",
            "seed=4",
            "data.train_subset=400",
            "data.augment_on=loader",
        ],
        tmp_path,
    )
    assert not torch.equal(batches(other, 0)[0][0][0], arms["lrn"][0][0][0][0])  # and another seed


def test_a_sampler_resumed_mid_epoch_yields_the_rest_of_that_epoch() -> None:
    whole = EpochSampler(50, seed=1).order(2).tolist()
    resumed = EpochSampler(50, seed=1)
    resumed.epoch, resumed.skip = 2, 20
    assert [i for _, i in resumed] == whole[20:]
    assert [e for e, _ in EpochSampler(5, seed=1)] == [0] * 5
    assert stream_seed(1, "order", 2) != stream_seed(1, "augment", 2) != stream_seed(2, "order", 2)
