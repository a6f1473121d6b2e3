"""What a run prints while it trains: the rich progress bar in a terminal, one line per epoch anywhere else."""

from __future__ import annotations

import math
import sys
import time
from datetime import timedelta
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import RichProgressBar
from lightning.pytorch.callbacks.progress import ProgressBar
from lightning.pytorch.utilities import rank_zero_only

from alexnet.train.module import AlexNetModule


def progress_bar(refresh_rate: int = 1) -> ProgressBar:
    """The rich bar when stdout is a terminal; under nohup, in CI or into a file it draws nothing until the end
    (it redraws in place), so there the run prints EpochLines instead."""
    return RichProgressBar(refresh_rate=refresh_rate) if sys.stdout.isatty() else EpochLines()


def _clock(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))


def time_left(elapsed: float, batches_run: int, batches_per_epoch: float, epochs_left: int) -> float:
    """Seconds for `epochs_left` more epochs at the pace of this process: `elapsed` over the epochs it ran, counted
    in batches. A run resumed mid-epoch (or after N epochs) ran only part of what its epoch number says."""
    epochs_run = batches_run / batches_per_epoch if batches_run and batches_per_epoch else 0.0
    return elapsed / epochs_run * epochs_left if epochs_run else math.nan  # no pace yet, or epochs of no length


class EpochLines(ProgressBar):
    """One line per training epoch, for logs: epoch, mean training loss, validation top-1 error, learning rate,
    training images per second (validation excluded), time elapsed and an upper bound on the time left (a plateau
    schedule may stop before max_epochs). A ProgressBar subclass, so that Lightning adds no bar of its own."""

    def __init__(self) -> None:
        super().__init__()
        self._enabled = True
        self._fit_start = 0.0
        self._loss_sum: torch.Tensor | float = 0.0
        self._batches = 0
        self._batches_run = 0  # in this process: a resumed run's time left is paced by what it ran itself

    def enable(self) -> None:
        self._enabled = True

    def disable(self) -> None:
        self._enabled = False

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._fit_start, self._batches_run = time.perf_counter(), 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._batches, self._loss_sum = 0, 0.0

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:  # fmt: skip
        # a step that returned None (stop_on_nonfinite: no update from a non-finite loss) reaches here as {}
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None:  # summed as a tensor: no wait for a GPU at every step
            self._loss_sum = self._loss_sum + loss.detach()
            self._batches += 1
        self._batches_run += 1

    @rank_zero_only
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: AlexNetModule) -> None:
        if not self._enabled or trainer.sanity_checking:
            return
        done, total = trainer.current_epoch + 1, trainer.max_epochs
        elapsed = time.perf_counter() - self._fit_start
        val = trainer.callback_metrics.get("val/top1_err")
        lr = trainer.optimizers[0].param_groups[0]["lr"] if trainer.optimizers else float("nan")
        loss = float(self._loss_sum) / self._batches if self._batches else float("nan")
        rate = pl_module.epoch_images_per_sec()  # the module's own count, which metrics.csv logs
        parts = [
            f"epoch {done}/{total}",
            f"train loss {loss:.4f}",
            f"val top-1 {float(val):.2%}" if val is not None else "val top-1 -",
            f"lr {lr:.3g}",
            f"{rate:,.0f} images/s",
            f"elapsed {_clock(elapsed)}",
        ]
        left = time_left(elapsed, self._batches_run, trainer.num_training_batches, total - done) if total else math.nan
        if total and total > 0 and math.isfinite(left):
            parts.append(f"ETA <= {_clock(left)}")
        print(" | ".join(parts), flush=True)
