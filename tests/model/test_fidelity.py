"""The choices the paper's numbers depend on (docs/fidelity.md): pixel scale, LRN that acts, dropout style, bias
decay, the gain-matched init, and the two-device split equal to the grouped net with dropout on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from alexnet import AlexNet
from alexnet.data import FashionMNISTDataModule
from alexnet.data.transforms import PUBLISHED_EIGVAL, PUBLISHED_EIGVEC, EvalTransform, TrainTransform, pca_shift
from alexnet.errors import DataError
from alexnet.model.net import PAPER_FAN_IN, Dropout
from alexnet.train.optim import PaperSGD, parameter_groups
from alexnet.train.pipeline import build, train
from conftest import checked_build, compose_train, data_overrides, mini_kwargs, write_fashion_mnist

MINI = mini_kwargs()


def datamodule(folder: Path, **kw) -> FashionMNISTDataModule:
    dm = FashionMNISTDataModule(str(folder), search_dirs=[], download_url=None, val_size=100, test_crops=1, **kw)
    dm.setup("fit")
    return dm


# --- pixel scale -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("pixel_max", [255.0, 1.0])
def test_the_net_sees_raw_pixels_minus_the_mean_in_every_split(fmnist_dir: Path, pixel_max: float) -> None:
    dm = datamodule(fmnist_dir, pixel_max=pixel_max, augment={"random_crop": False, "flip": False})
    mean = dm.mean[0]
    assert 0 < mean < 1  # statistics stay on the [0, 1] scale, whatever the net sees
    raw = dm.sources["val"].tensors[0][:4, :, 2:30, 2:30].float()  # the centre 28x28 of the stored 32x32
    expected = (raw / 255.0 - mean) * pixel_max
    for loader in (dm.val_dataloader(), dm.test_dataloader(), dm.train_sample_dataloader(4)):
        x = next(iter(loader))[0]
        assert x.abs().max() > 0.5 * pixel_max  # white strokes are far from the mean on this scale
    torch.testing.assert_close(next(iter(dm.val_dataloader()))[0][:4], expected)
    train_raw = dm.sources["train"].tensors[0][:1, :, 2:30, 2:30].float()
    torch.testing.assert_close(
        dm.train_transform()(dm.sources["train"][0][0]), ((train_raw / 255 - mean) * pixel_max)[0]
    )


def test_ten_crops_and_predict_use_the_same_scale(fmnist_dir: Path) -> None:
    dm = datamodule(fmnist_dir)
    img = dm.sources["test"][0][0]
    ten = dm.eval_transform(crops=10)(img)
    centre = dm.eval_transform(crops=1)(img)
    torch.testing.assert_close(ten[4], centre)  # patch 4 is the centre
    assert ten.max() == pytest.approx(255 * (1 - dm.mean[0]), abs=1e-3)  # a white pixel, minus the mean


def test_unknown_pixel_scale_is_refused(fmnist_dir: Path) -> None:
    with pytest.raises(ValueError, match="pixel_max=2"):
        FashionMNISTDataModule(str(fmnist_dir), search_dirs=[], download_url=None, pixel_max=2)


@pytest.mark.parametrize("pixel_max", [255.0, 1.0])
def test_pca_noise_keeps_its_size_in_grey_levels(pixel_max: float) -> None:
    torch.manual_seed(0)
    eigval, eigvec = torch.tensor(PUBLISHED_EIGVAL), torch.tensor(PUBLISHED_EIGVEC)
    shifts = torch.stack([pca_shift(torch.randn(3) * 0.1, eigval, eigvec, pixel_max).flatten() for _ in range(4000)])
    grey_levels = shifts.std(0) * 255 / pixel_max
    # sqrt(sum_i (p_ci * 0.1 * lambda_i)^2) * 255: 3.16, 3.22, 3.26 grey levels per channel
    torch.testing.assert_close(grey_levels, torch.tensor([3.16, 3.22, 3.26]), atol=0.15, rtol=0)
    transform = TrainTransform(4, [0.5, 0.5, 0.5], random_crop=False, flip=False, pca=True, pixel_max=pixel_max)
    img = torch.full((3, 4, 4), 128, dtype=torch.uint8)
    deltas = torch.stack([transform(img)[:, 0, 0] - transform(img)[:, 0, 0] for _ in range(2000)])
    # one draw per image per presentation: two presentations differ by sqrt(2) x the shift's std
    torch.testing.assert_close(deltas.std(0) * 255 / pixel_max / 2**0.5, grey_levels, atol=0.25, rtol=0)


def test_checkpoint_statistics_from_another_pixel_scale_are_refused(fmnist_dir: Path) -> None:
    dm = datamodule(fmnist_dir)
    state = dm.state_dict()
    assert state["stats_scale"] == "[0, 1]" and state["pixel_max"] == 255.0
    old = {k: v for k, v in state.items() if k not in ("stats_scale", "pixel_max")}
    with pytest.raises(DataError, match="another pixel scale"):
        dm.load_state_dict(old)


def lrn1_denominator(net: AlexNet, x: torch.Tensor) -> torch.Tensor:
    seen = []
    net.lrn1.register_forward_pre_hook(lambda m, args: seen.append(m.denominator(args[0]) / m.k**m.beta))
    with torch.no_grad():
        net(x)
    return seen[0]


def test_lrn_normalises_on_raw_pixels_and_is_a_constant_on_unit_pixels(tmp_path: Path) -> None:
    folder = write_fashion_mnist(tmp_path / "fm", n_train=300, n_test=10)
    quantiles = {}
    for pixel_max in (255.0, 1.0):
        x = next(iter(datamodule(folder, pixel_max=pixel_max).val_dataloader()))[0]
        torch.manual_seed(0)
        d = lrn1_denominator(AlexNet(**MINI).eval(), x)
        quantiles[pixel_max] = d.flatten().quantile(torch.tensor([0.5, 0.99])).tolist()
    assert quantiles[255.0][1] > 1.02  # strong responses are damped more than weak ones
    assert quantiles[1.0][1] < 1.0001  # k^-beta at every unit: a constant factor


# --- dropout, bias decay, init ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("style", "train_gain", "test_gain"), [("paper", 1.0, 0.5), ("inverted", 2.0, 1.0)])
def test_dropout_styles(style: str, train_gain: float, test_gain: float) -> None:
    layer = Dropout(0.5, style)
    x = torch.rand(64, 512) + 0.5
    torch.manual_seed(3)
    y = layer(x)
    torch.manual_seed(3)
    keep = layer.draw_mask(x.shape, x.device)
    assert 0.45 < keep.float().mean() < 0.55
    torch.testing.assert_close(y, x * keep * train_gain)
    layer.eval()
    torch.testing.assert_close(layer(x), x * test_gain)


def test_the_papers_net_defaults_to_the_papers_dropout_and_init(tmp_path: Path) -> None:
    cfg = compose_train(["model=alexnet", "data=synthetic"], tmp_path)
    assert (cfg.model.dropout_style, cfg.model.init, cfg.model.dropout) == ("paper", "paper", 0.5)
    assert cfg.optimizer.bias_decay is False and cfg.data.pixel_max == 255
    for data in ("fashion_mnist", "imagenet", "imagefolder", "synthetic"):
        assert compose_train([f"data={data}"], tmp_path).data.pixel_max == 255, data
    assert compose_train([], tmp_path).model.init == "gain_matched"  # the embedded net: docs/fidelity.md


def test_gain_matched_init_is_the_papers_on_the_papers_net_and_scaled_on_the_mini_net() -> None:
    torch.manual_seed(0)
    paper = AlexNet(num_classes=10, init="paper")
    torch.manual_seed(0)
    matched = AlexNet(num_classes=10, init="gain_matched")
    for (name, p), q in zip(paper.state_dict().items(), matched.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    torch.manual_seed(0)
    mini = AlexNet(**{**MINI, "init": "gain_matched"})
    for name, fan_paper in PAPER_FAN_IN.items():
        layer = getattr(mini, name)
        expected = 0.01 * (fan_paper / layer.weight[0].numel()) ** 0.5
        assert layer.weight.std().item() == pytest.approx(expected, rel=0.1), name
        assert layer.bias.unique().tolist() == ([1.0] if name in ("conv2", "conv4", "conv5", "fc6", "fc7") else [0.0])


@pytest.mark.parametrize("bias_decay", [False, True])
def test_weight_decay_on_biases_is_a_switch(bias_decay: bool) -> None:
    torch.manual_seed(0)
    net = AlexNet(**MINI)
    before = {k: v.clone() for k, v in net.named_parameters()}
    optimizer = PaperSGD(parameter_groups(net.named_parameters(), bias_decay), lr=0.1, weight_decay=0.5)
    for p in net.parameters():
        p.grad = torch.zeros_like(p)  # only the decay moves anything
    optimizer.step()
    for name, p in net.named_parameters():
        decayed = name.endswith("weight") or bias_decay
        torch.testing.assert_close(p, before[name] * (1 - 0.05 if decayed else 1.0))


def test_the_run_decays_biases_as_configured(tmp_path: Path, fmnist_dir: Path) -> None:
    for flag, bias_decay in (("false", 0.0), ("true", 5e-4)):
        cfg = compose_train([*data_overrides(fmnist_dir), f"optimizer.bias_decay={flag}"], tmp_path)
        module = build(cfg)[0]
        groups = module.configure_optimizers().param_groups
        assert [g["weight_decay"] for g in groups] == [5e-4, bias_decay]
        assert all(p.ndim == 1 for p in groups[1]["params"]) and all(p.ndim > 1 for p in groups[0]["params"])
    cfg = compose_train([*data_overrides(fmnist_dir), "optimizer.bias_decay=maybe"], tmp_path)
    with pytest.raises(ValueError, match="optimizer.bias_decay='maybe'"):
        checked_build(cfg)


# --- the two-device split with dropout on, through the Trainer --------------------------------------------------


def test_split_run_equals_the_grouped_run_with_dropout_on(tmp_path: Path, fmnist_dir: Path) -> None:
    summaries = {}
    for name, devices in (("grouped", "null"), ("split", "[cpu,cpu]")):
        overrides = [*data_overrides(fmnist_dir), "debug=fast", "seed=1", f"model.devices={devices}",
                     "model.width=0.125", "model.fc_width=64", "data.batch_size=32", "data.test_crops=1",
                     "callbacks.model_summary=null", "callbacks.progress_bar=null", "logger=none",
                     "callbacks.train_eval_error.sample=64"]  # fmt: skip
        cfg = compose_train(overrides, tmp_path / name)
        assert cfg.model.dropout == 0.5
        train(cfg)
        summaries[name] = json.loads((tmp_path / name / "summary.json").read_text())
    keys = ("best_val", "final_val", "test", "train_eval")
    assert {k: summaries["split"][k] for k in keys} == {k: summaries["grouped"][k] for k in keys}
    assert summaries["split"]["model_devices"] == ["cpu", "cpu"]
    choices = summaries["split"]["choices"]
    assert choices["pixel_max"] == 255 and choices["dropout_style"] == "paper" and choices["bias_decay"] is False
    assert choices["lrn"].startswith("cuda_convnet") and OmegaConf.create(choices)  # recorded in every summary
    # dropout did act: the same run without it differs
    cfg = compose_train([*data_overrides(fmnist_dir), "debug=fast", "seed=1", "model.dropout=0", "model.width=0.125",
                         "model.fc_width=64", "data.batch_size=32", "data.test_crops=1", "logger=none",
                         "callbacks.model_summary=null", "callbacks.progress_bar=null",
                         "callbacks.train_eval_error.sample=64"], tmp_path / "nodrop")  # fmt: skip
    train(cfg)
    nodrop = json.loads((tmp_path / "nodrop" / "summary.json").read_text())
    assert nodrop["final_val"] != summaries["grouped"]["final_val"]
    assert nodrop["choices"]["dropout_style"] == "off"


def test_eval_transform_on_a_ten_crop_batch_subtracts_the_mean_everywhere() -> None:
    img = torch.full((1, 32, 32), 200, dtype=torch.uint8)
    x = EvalTransform(28, [0.25], crops=10)(img)
    assert x.shape == (10, 1, 28, 28)
    torch.testing.assert_close(x, torch.full_like(x, 200 - 0.25 * 255))


def test_a_checkpoint_from_before_the_pixel_scale_change_is_refused(tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    from alexnet.errors import ConfigError
    from alexnet.train.checkpoints import load_checkpoint

    old = tmp_path / "old.ckpt"  # what an earlier version wrote: its data state has no stats_scale
    torch.save({"state_dict": {}, "alexnet_config": {"model": {}}, "FashionMNISTDataModule": {"mean": [0.28],
                "class_names": ["a"]}}, old)  # fmt: skip
    with pytest.raises(ConfigError, match="before the pixel-scale change"):
        load_checkpoint(OmegaConf.create({"ckpt_path": str(old), "run_dir": None}))
