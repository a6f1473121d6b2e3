"""§5: Eq. 3-4 against torch SGD and a hand-written reference; the plateau schedule in a real Trainer."""

from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from alexnet.train.optim import PaperSGD, PlateauSchedule

A = torch.randn(8, 5, generator=torch.Generator().manual_seed(0))
B = torch.randn(8, generator=torch.Generator().manual_seed(1))


def loss_fn(w: torch.Tensor) -> torch.Tensor:
    return ((A @ w - B) ** 2).sum()


def run(optimizer_cls, lrs: list[float], **kw) -> list[torch.Tensor]:
    """Weights after each step of `optimizer_cls` on a fixed quadratic, lr[i] at step i."""
    w = torch.nn.Parameter(torch.linspace(-1, 1, 5))
    opt = optimizer_cls([w], lr=lrs[0], momentum=0.9, weight_decay=5e-4, **kw)
    trajectory = []
    for lr in lrs:
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad()
        loss_fn(w).backward()
        opt.step()
        trajectory.append(w.detach().clone())
    return trajectory


def reference(lrs: list[float]) -> list[torch.Tensor]:
    """Eq. 3-4 written out: v <- 0.9 v - 0.0005 eps w - eps dL/dw ; w <- w + v."""
    w = torch.linspace(-1, 1, 5)
    v = torch.zeros(5)
    trajectory = []
    for eps in lrs:
        w_ = w.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(loss_fn(w_), w_)
        v = 0.9 * v - 0.0005 * eps * w - eps * g
        w = w + v
        trajectory.append(w.clone())
    return trajectory


def test_equals_torch_sgd_while_the_rate_is_constant() -> None:
    lrs = [0.01] * 10
    for ours, torch_sgd in zip(run(PaperSGD, lrs), run(torch.optim.SGD, lrs), strict=True):
        torch.testing.assert_close(ours, torch_sgd, rtol=1e-6, atol=1e-7)


def test_follows_eq_3_4_across_a_drop_where_torch_sgd_does_not() -> None:
    lrs = [0.01] * 5 + [0.001] * 5  # divided by 10 after step 5
    ours, ref, torch_sgd = run(PaperSGD, lrs), reference(lrs), run(torch.optim.SGD, lrs)
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(ours[4], torch_sgd[4], rtol=1e-6, atol=1e-7)  # same before the drop
    # after it torch shrinks the accumulated momentum 10x at once; the paper's velocity keeps it
    step_ours, step_torch = ours[5] - ours[4], torch_sgd[5] - torch_sgd[4]
    assert (step_ours - step_torch).norm() > 0.5 * step_torch.norm()


def test_rejects_a_non_positive_rate() -> None:
    with pytest.raises(ValueError, match="lr"):
        PaperSGD([torch.nn.Parameter(torch.zeros(1))], lr=0.0)


class Flat(L.LightningModule):
    """A tiny model whose validation error never improves: every epoch is a plateau."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.lrs: list[float] = []

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).pow(2).mean()

    def on_train_epoch_start(self) -> None:
        self.lrs.append(self.trainer.optimizers[0].param_groups[0]["lr"])

    def validation_step(self, batch, batch_idx):
        self.log("val/top1_err", 0.5)

    def configure_optimizers(self):
        return PaperSGD(self.parameters(), lr=0.01)


def loader() -> DataLoader:
    return DataLoader(TensorDataset(torch.randn(4, 2)), batch_size=2)


def fit(tmp_path: Path, max_epochs: int, ckpt_path: str | None = None) -> tuple[L.Trainer, Flat, PlateauSchedule]:
    model, schedule = Flat(), PlateauSchedule(patience=0, max_reductions=3)
    trainer = L.Trainer(
        max_epochs=max_epochs,
        callbacks=[schedule, L.pytorch.callbacks.ModelCheckpoint(tmp_path, save_last=True)],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, loader(), loader(), ckpt_path=ckpt_path)
    return trainer, model, schedule


def test_divides_by_ten_on_each_plateau_and_stops_after_the_third_reduction(tmp_path: Path) -> None:
    trainer, model, schedule = fit(tmp_path, max_epochs=50)
    # epoch 0 sets the best; epochs 1-3 each plateau -> /10; epoch 4 plateaus at the last rate -> stop
    assert model.lrs == pytest.approx([1e-2, 1e-2, 1e-3, 1e-4, 1e-5])
    assert schedule.reductions == 3
    assert trainer.current_epoch == 5 and trainer.should_stop
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(1e-5)  # never a fourth cut


def test_schedule_state_survives_a_checkpoint_and_resume(tmp_path: Path) -> None:
    fit(tmp_path, max_epochs=2)  # one reduction so far
    saved = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert saved["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(1e-3)
    trainer, model, schedule = fit(tmp_path, max_epochs=50, ckpt_path=str(tmp_path / "last.ckpt"))
    assert model.lrs == pytest.approx([1e-3, 1e-4, 1e-5])  # epochs 2, 3, 4, as in one long run
    assert schedule.reductions == 3 and trainer.current_epoch == 5


def test_the_multi_tensor_update_gives_the_same_numbers_as_the_per_tensor_one() -> None:
    from alexnet import AlexNet
    from alexnet.train.optim import parameter_groups

    nets, optimizers = [], []
    for foreach in (True, False):
        torch.manual_seed(0)
        net = AlexNet(num_classes=10, in_channels=1, input_size=28, width=0.125, fc_width=64, stem_kernel=6,
                      stem_stride=1, stem_padding=(0, 0, 0, 0), init="gain_matched", dropout=0)  # fmt: skip
        nets.append(net)
        start = net.conv1.weight.detach().clone()
        optimizers.append(PaperSGD(parameter_groups(net.named_parameters(), False), lr=0.01, foreach=foreach))
    x = torch.randint(0, 256, (16, 1, 28, 28), generator=torch.Generator().manual_seed(1)).float() - 70
    y = torch.arange(16) % 10
    for step in range(4):
        for net, opt in zip(nets, optimizers, strict=True):
            for group in opt.param_groups:
                group["lr"] = 0.01 if step < 2 else 0.001  # across a drop, where the velocity matters
            opt.zero_grad()
            torch.nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
    for (name, a), b in zip(nets[0].state_dict().items(), nets[1].state_dict().values(), strict=True):
        assert torch.equal(a, b), name  # bit for bit
    assert not torch.equal(nets[0].conv1.weight, start)  # and they did move
