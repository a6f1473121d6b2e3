"""§5: the paper's update rule and its learning-rate schedule."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info
from torch.optim.lr_scheduler import ReduceLROnPlateau

from alexnet.config.schema import require


class PaperSGD(torch.optim.Optimizer):
    """Eq. 3-4 of §5, exactly:  v <- m*v - wd*lr*w - lr*dL/dw ;  w <- w + v.

    `torch.optim.SGD` keeps b <- m*b + (g + wd*w) and steps w <- w - lr*b. The two agree while the
    learning rate is constant. When the rate drops, torch's step shrinks the whole accumulated
    momentum at once; here the velocity keeps the momentum it gathered at the old rate and lets it
    decay, which is what the paper's (and cuda-convnet's) update does.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 0.01,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        foreach: bool = True,
    ) -> None:
        require("optimizer", lr=lr, momentum=momentum, weight_decay=weight_decay)
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay})
        self.foreach = foreach  # one multi-tensor kernel per operation and group, instead of one per tensor

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, m, wd = group["lr"], group["momentum"], group["weight_decay"]
            params = [p for p in group["params"] if p.grad is not None]
            for p in params:
                if "velocity" not in self.state[p]:
                    self.state[p]["velocity"] = torch.zeros_like(p)
            velocities = [self.state[p]["velocity"] for p in params]
            grads = [p.grad for p in params]
            if self.foreach and params:  # the same operations in the same order: the same numbers
                torch._foreach_mul_(velocities, m)
                torch._foreach_add_(velocities, params, alpha=-wd * lr)
                torch._foreach_add_(velocities, grads, alpha=-lr)
                torch._foreach_add_(params, velocities)
                continue
            for p, v, g in zip(params, velocities, grads, strict=True):
                v.mul_(m).add_(p, alpha=-wd * lr).add_(g, alpha=-lr)
                p.add_(v)
        return loss


def parameter_groups(named_parameters: Iterable[tuple[str, torch.Tensor]], bias_decay: bool) -> list[dict[str, Any]]:
    """Weights, then biases, as two parameter groups; the biases' weight decay is 0 unless `bias_decay`.

    Eq. 3 decays the weights w. The author's cuda-convnet gives its bias parameters weight decay 0, and so does
    Caffe's reference AlexNet; decaying the biases that §5 sets to 1 pulls them toward 0. `bias_decay=True` is
    the literal reading (every parameter decayed)."""
    weights, biases = [], []
    for name, p in named_parameters:
        (biases if name.rsplit(".", 1)[-1] == "bias" else weights).append(p)
    return [{"params": weights}, {"params": biases} if bias_decay else {"params": biases, "weight_decay": 0.0}]


class RateSchedule(L.Callback):
    """A callback that cuts the learning rate; `reduction_epochs`: the epochs after which it did (summary.json).

    `warmup_epochs` > 0 (not the paper's: it starts at full rate) raises the rate linearly, step by step, from
    lr/steps to lr over that many epochs: on a small training set at lr 0.02 the net without dropout fell to
    chance in its first epoch in 2 of 5 seeds, and a comparison of regularisers must not hinge on that."""

    reduction_epochs: list[int]
    warmup_epochs: int = 0
    base_lrs: list[float] | None = None

    def _remember_rates(self, optimizer: torch.optim.Optimizer) -> None:
        if self.base_lrs is None:
            self.base_lrs = [group.get("initial_lr", group["lr"]) for group in optimizer.param_groups]
            for group, lr in zip(optimizer.param_groups, self.base_lrs, strict=True):
                group["initial_lr"] = lr  # kept in the optimizer's checkpointed state: a resumed run starts from it

    def warming_up(self, trainer: L.Trainer) -> bool:
        return trainer.current_epoch < self.warmup_epochs

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, idx: int) -> None:
        if not self.warmup_epochs or self.base_lrs is None:
            return
        # a function of the global step alone, like the cuts of the epoch: a resumed run needs no state
        steps = self.warmup_epochs * max(1, trainer.num_training_batches // trainer.accumulate_grad_batches)
        if trainer.global_step >= steps:
            return
        for group, lr in zip(trainer.optimizers[0].param_groups, self.base_lrs, strict=True):
            group["lr"] = lr * (trainer.global_step + 1) / steps


class PlateauSchedule(RateSchedule):
    """§5: divide the learning rate by 10 when validation error stops improving; stop after the
    rate was "reduced three times prior to termination".

    torch's ReduceLROnPlateau decides when; this callback steps it right after each validation and
    ends training at the first plateau *after* `max_reductions` reductions: the net trains at the
    last rate until that stops helping too, instead of dividing a fourth time.

    Why a callback rather than Lightning's `lr_scheduler` dict: Lightning steps plateau schedulers
    after `on_train_epoch_end` and after the checkpoint of that epoch is written, so neither the
    checkpoint nor any callback could see the new rate in time to stop. Here the step happens
    before ModelCheckpoint (Lightning runs checkpoint callbacks last), so a checkpoint holds the
    schedule as it is after the epoch, and resuming continues it.
    """

    def __init__(
        self,
        monitor: str = "val/top1_err",
        factor: float = 0.1,
        patience: int = 1,
        threshold: float = 1e-4,
        max_reductions: int = 3,
        warmup_epochs: int = 0,
    ) -> None:
        require("scheduler", monitor=monitor, factor=factor, patience=patience, threshold=threshold,
                max_reductions=max_reductions, warmup_epochs=warmup_epochs)  # fmt: skip
        self.monitor, self.factor, self.patience = monitor, factor, patience
        self.threshold, self.max_reductions, self.warmup_epochs = threshold, max_reductions, warmup_epochs
        self.reductions = 0
        self.reduction_epochs: list[int] = []  # the epochs after which the rate was cut (every report shows them)
        self.scheduler: ReduceLROnPlateau | None = None
        self._pending_state: dict | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._remember_rates(trainer.optimizers[0])
        self.scheduler = ReduceLROnPlateau(
            trainer.optimizers[0],
            mode="min",
            factor=self.factor,
            patience=self.patience,
            threshold=self.threshold,
        )
        if self._pending_state is not None:  # resumed from a checkpoint
            self.scheduler.load_state_dict(self._pending_state)
            self._pending_state = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.scheduler is None or self.warming_up(trainer):
            return  # the warm-up's validations neither cut the rate nor count toward a plateau
        metric = trainer.callback_metrics.get(self.monitor)
        if metric is None:
            raise KeyError(
                f"scheduler.monitor={self.monitor!r} was not logged; logged metrics are "
                f"{sorted(trainer.callback_metrics)}"
            )
        if not torch.isfinite(metric):  # nothing to learn from a broken epoch; no step either
            return
        optimizer = trainer.optimizers[0]
        lrs = [group["lr"] for group in optimizer.param_groups]
        before = lrs[0]
        if self.reductions >= self.max_reductions:
            # At the last rate: a plateau now ends training instead of a further reduction.
            self.scheduler.step(metric)
            if optimizer.param_groups[0]["lr"] < before:
                for group, lr in zip(optimizer.param_groups, lrs, strict=True):
                    group["lr"] = lr
                rank_zero_info(
                    f"{self.monitor} stopped improving after {self.reductions} learning-rate "
                    "reductions: stopping, as in the paper (§5)"
                )
                trainer.should_stop = True
            return
        self.scheduler.step(metric)
        after = optimizer.param_groups[0]["lr"]
        if after < before:
            self.reductions += 1
            self.reduction_epochs.append(trainer.current_epoch + 1)
            rank_zero_info(
                f"{self.monitor} plateaued: learning rate {before:g} -> {after:g} "
                f"(reduction {self.reductions} of {self.max_reductions})"
            )

    def state_dict(self) -> dict[str, Any]:
        scheduler = self.scheduler.state_dict() if self.scheduler else self._pending_state
        return {"reductions": self.reductions, "reduction_epochs": self.reduction_epochs, "scheduler": scheduler}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.reductions = state_dict["reductions"]
        self.reduction_epochs = list(state_dict.get("reduction_epochs", []))
        self._pending_state = state_dict["scheduler"]


class MilestoneSchedule(RateSchedule):
    """The rate ÷10 (`factor`) at fixed epochs: a departure from §5's "when the validation error stopped
    improving", for comparisons. A plateau rule cuts the rate at different epochs in different arms and seeds,
    so a paired difference would mix the ablation with the schedule; fixed epochs keep the schedule identical
    in every run of a claim. The rate is a function of the epoch alone, so a resumed run needs no state.
    `milestones` are 1-based epoch counts: [8, 11] trains epochs 1-8 at lr, 9-11 at lr/10, 12- at lr/100.
    `warmup_epochs`: RateSchedule's."""

    def __init__(self, milestones: list[int], factor: float = 0.1, warmup_epochs: int = 0) -> None:
        require("scheduler", milestones=list(milestones), factor=factor, warmup_epochs=warmup_epochs)
        self.milestones, self.factor, self.warmup_epochs = list(milestones), factor, warmup_epochs

    @property
    def reduction_epochs(self) -> list[int]:
        return self.milestones

    @property
    def reductions(self) -> int:
        return len(self.milestones)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        optimizer = trainer.optimizers[0]
        self._remember_rates(optimizer)
        cuts = sum(trainer.current_epoch >= m for m in self.milestones)
        for group, lr in zip(optimizer.param_groups, self.base_lrs, strict=True):
            group["lr"] = lr * self.factor**cuts
