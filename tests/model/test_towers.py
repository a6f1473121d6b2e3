"""§3.2 on two devices: the split net equals the grouped net, trains, checkpoints and resumes the same."""

import json
from pathlib import Path

import pytest
import torch

from alexnet import AlexNet, TwoTowerAlexNet
from alexnet.model import towers as towers_module
from alexnet.model.towers import grouped_to_towers, in_layout_of, towers_to_grouped
from alexnet.train.optim import PaperSGD
from alexnet.train.pipeline import train
from alexnet.train.strategies import pair_for_rank
from conftest import ROOT, compose_train, data_overrides, evaluate_in_process, mini_kwargs, run_script

MINI = mini_kwargs(fc_width=64)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def pair(**kw) -> tuple[AlexNet, TwoTowerAlexNet]:
    torch.manual_seed(0)
    grouped = AlexNet(**{**MINI, **kw})
    split = TwoTowerAlexNet(["cpu", "cpu"], **{**MINI, **kw})
    split.load_state_dict(in_layout_of(split, grouped.state_dict(), prefix=""))
    return grouped, split


def test_same_initialisation_and_parameter_count_as_the_grouped_net() -> None:
    torch.manual_seed(0)
    grouped = AlexNet(**MINI)
    torch.manual_seed(0)
    split = TwoTowerAlexNet(["cpu", "cpu"], **MINI)
    assert sum(p.numel() for p in split.parameters()) == sum(p.numel() for p in grouped.parameters())
    for key, value in towers_to_grouped(split.state_dict()).items():
        assert torch.equal(value, grouped.state_dict()[key]), key


def test_paper_net_splits_into_two_halves_of_every_layer() -> None:
    split = TwoTowerAlexNet(["cpu", "cpu"])
    a = split.towers[0]
    assert [
        a.conv1.out_channels,
        a.conv2.out_channels,
        a.conv3.out_channels,
        a.conv4.out_channels,
        a.conv5.out_channels,
        a.fc6.out_features,
        a.fc7.out_features,
    ] == [48, 128, 192, 192, 128, 2048, 2048]
    assert (a.conv2.in_channels, a.conv3.in_channels, a.fc6.in_features) == (48, 256, 9216)  # conv3, fc6 cross
    assert sum(p.numel() for p in split.parameters()) == 60_965_224


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_same_outputs_and_gradients_as_the_grouped_net(mode: str) -> None:
    # float64: two max-pool inputs within float32 rounding of each other could pick different maxima in the two
    # nets (their sums run in different orders) and send a gradient down another path; in float64 they do not
    grouped, split = pair(dropout=0.0)
    grouped, split = grouped.double(), split.double()
    getattr(grouped, mode)(), getattr(split, mode)()
    x = torch.randn(8, 1, 28, 28, dtype=torch.float64)
    y = torch.randint(0, 10, (8,))
    out_g, out_s = grouped(x), split(x)
    assert out_s.dtype == torch.float64 and rel(out_s, out_g) <= 1e-10
    torch.nn.functional.cross_entropy(out_g, y).backward()
    torch.nn.functional.cross_entropy(out_s, y).backward()
    grads = towers_to_grouped({k: p.grad for k, p in split.named_parameters()})
    for name, p in grouped.named_parameters():
        assert rel(grads[name], p.grad) <= 1e-10, name


def test_same_after_an_optimizer_step() -> None:
    grouped, split = pair(dropout=0.0)
    x, y = torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))
    for net in (grouped, split):
        opt = PaperSGD(net.parameters(), lr=0.01)
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    assert rel(split(x), grouped(x)) <= 1e-5
    stepped = towers_to_grouped(split.state_dict())
    for name, value in grouped.state_dict().items():
        assert rel(stepped[name], value) <= 1e-5, name


def test_towers_exchange_activations_only_at_conv3_fc6_fc7_fc8(monkeypatch: pytest.MonkeyPatch) -> None:
    _, split = pair()
    crossings = []
    real = towers_module._cross

    def spy(mine, theirs, first):
        crossings.append(tuple(mine.shape[1:]))
        return real(mine, theirs, first)

    monkeypatch.setattr(towers_module, "_cross", spy)
    split(torch.randn(2, 1, 28, 28))
    a = split.towers[0]
    conv2, conv5, fc7 = (a.conv2.out_channels, 5, 5), (a.fc6.in_features // 2,), (a.fc7.out_features,)
    # conv3 (A, B), fc6 (A, B), fc7 (A, B), fc8: each tower's own half going in, nothing else
    assert crossings == [conv2, conv2, conv5, conv5, fc7, fc7, fc7]


def test_weights_convert_both_ways() -> None:
    grouped, _ = pair()
    state = grouped.state_dict()
    assert all(torch.equal(v, state[k]) for k, v in towers_to_grouped(grouped_to_towers(state)).items())
    split = TwoTowerAlexNet(["cpu", "cpu"], **MINI)
    split.load_state_dict(in_layout_of(split, state, prefix=""))  # a grouped checkpoint into the split net ...
    back = AlexNet(**MINI)
    back.load_state_dict(in_layout_of(back, split.state_dict(), prefix=""))  # ... and a split one into the grouped net
    assert all(torch.equal(v, state[k]) for k, v in back.state_dict().items())


def test_rank_to_device_pair_mapping() -> None:
    assert pair_for_rank(["cuda:0", "cuda:1"], 0) == [torch.device("cuda:0"), torch.device("cuda:1")]
    assert pair_for_rank(["cuda:0", "cuda:1"], 1) == [torch.device("cuda:2"), torch.device("cuda:3")]
    assert pair_for_rank(["cpu", "cpu"], 3) == [torch.device("cpu"), torch.device("cpu")]


def test_one_tower_net_cannot_be_split() -> None:
    with pytest.raises(ValueError, match="towers='one'"):
        TwoTowerAlexNet(["cpu", "cpu"], towers="one")


def _fit(tmp_path: Path, fmnist_dir: Path, name: str, *overrides: str) -> dict:
    cfg = compose_train(
        [
            *data_overrides(fmnist_dir),
            "debug=fast",
            "model.dropout=0",
            "model.width=0.125",
            "model.fc_width=64",
            "data.batch_size=32",
            "callbacks.progress_bar=null",
            "callbacks.model_summary=null",
            *overrides,
        ],
        tmp_path / name,
    )
    return train(cfg)


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU (run by benchmarks/gpu_check.sh)")


@pytest.mark.slow
@pytest.mark.parametrize(
    "devices", ["[cpu,cpu]", pytest.param("[cuda:0,cpu]", marks=CUDA), pytest.param("[cuda:0,cuda:0]", marks=CUDA)]
)
def test_trainer_run_checkpoint_and_resume_equal_the_grouped_net(
    devices: str, tmp_path: Path, fmnist_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # fp32 convs, as on the CPU (matmuls are)
    tol = 1e-4 if "cuda" not in devices else 1e-3  # cuDNN and CPU kernels sum in different orders
    runs = {}
    for name, placement in (("grouped", "null"), ("split", devices)):
        first = _fit(tmp_path, fmnist_dir, name, f"model.devices={placement}", "test=false")
        last = tmp_path / name / "checkpoints/last.ckpt"
        resumed = _fit(
            tmp_path,
            fmnist_dir,
            f"{name}_resumed",
            f"model.devices={placement}",
            f"ckpt_path={last}",
            "trainer.max_epochs=2",
        )
        ckpt = torch.load(tmp_path / f"{name}_resumed/checkpoints/last.ckpt", weights_only=False, map_location="cpu")
        runs[name] = (first, resumed, ckpt)
    (g1, g2, g_ckpt), (s1, s2, s_ckpt) = runs["grouped"], runs["split"]
    assert s2["steps"] == g2["steps"] == 6
    for key in ("val/loss", "val/top1_err"):
        assert s1["final_val"][key] == pytest.approx(g1["final_val"][key], rel=tol)
        assert s2["final_val"][key] == pytest.approx(g2["final_val"][key], rel=tol)
    assert s2["test"]["test/loss"] == pytest.approx(g2["test"]["test/loss"], rel=tol)
    split_weights = towers_to_grouped({k[4:]: v for k, v in s_ckpt["state_dict"].items() if k.startswith("net.")})
    for key, value in g_ckpt["state_dict"].items():
        if key.startswith("net."):
            assert rel(split_weights[key[4:]], value) <= tol, key
    # momentum buffers were saved and restored for every split parameter
    assert len(s_ckpt["optimizer_states"][0]["state"]) == len(list(TwoTowerAlexNet(**MINI).parameters()))


def test_split_checkpoint_evaluates_on_one_device(tmp_path: Path, fmnist_dir: Path) -> None:
    _fit(
        tmp_path, fmnist_dir, "split", "model.devices=[cpu,cpu]", "trainer.limit_test_batches=1.0", "data.test_crops=1"
    )
    summary = json.loads((tmp_path / "split/summary.json").read_text())
    evaluate_in_process([f"run_dir={tmp_path}/split", "devices=null"], tmp_path / "eval")
    report = json.loads((tmp_path / "eval/eval.json").read_text())
    assert report["test"]["test/loss"] == pytest.approx(summary["test"]["test/loss"], rel=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("devices", ["null", "[cpu,cpu]"])
def test_ddp_two_processes_keep_replicas_identical(devices: str, tmp_path: Path, fmnist_dir: Path) -> None:
    proc = run_script(
        "train.py",
        *data_overrides(fmnist_dir),
        "trainer=ddp_sim",
        "debug=fast",
        f"model.devices={devices}",
        "data.batch_size=16",
        "test=false",
        f"hydra.run.dir={tmp_path}/run",
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "run/summary.json").read_text())
    assert summary["world_size"] == 2 and summary["replicas_identical"] is True and summary["steps"] == 3
