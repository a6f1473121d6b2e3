"""Callbacks: the run's random streams (exact resume, paired arms), Fig. 1's steps to a training error (§3.1), the
state saved when a run is stopped by an exception, and early stopping as an option beside the paper's plateau stop."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, OnExceptionCheckpoint
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn

from alexnet.config.schema import require
from alexnet.model.net import Dropout
from alexnet.streams import generator, restore_state
from alexnet.train.module import error_rates


class SummaryContributor(L.Callback):
    """A callback with results of its own for the run's summary.json (record.RunRecord.extra)."""

    def summary(self) -> dict[str, Any]:
        raise NotImplementedError


class TrainErrorTarget(SummaryContributor):
    """Follows the training error over the last `window` batches (a running stand-in for the epoch
    training error of Fig. 1, which needs many steps per point) and records the first step at which it
    is <= each target (one number, or several: Fig. 1 at 25% and at the errors a net reaches after several
    epochs, in one run). With `stop`, training ends when the last target is reached: the question is how
    fast, not how far."""

    def __init__(self, target: float | Sequence[float] = 0.25, window: int = 20, stop: bool = True) -> None:
        require("callbacks.train_error_target", target=target, window=window, stop=stop)
        targets = [float(t) for t in ([target] if isinstance(target, (int, float)) else target)]
        self.targets = sorted(set(targets), reverse=True)  # the first reached first
        self.target, self.window, self.stop = self.targets[0], window, stop
        self.recent: deque[float] = deque(maxlen=window)
        self.reached: dict[float, tuple[int, int]] = {}  # target -> (step, images) at which it was first reached
        self._images = 0

    @property
    def steps_to_target(self) -> int | None:
        return self.reached.get(self.target, (None, None))[0]

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, i: int
    ) -> None:
        # the error of this step's whole batch: averaged over data-parallel processes, so that every process
        # sees the same running error and stops at the same step
        error = trainer.strategy.reduce(pl_module.batch_error.detach().clone(), reduce_op="mean")
        self.recent.append(float(error))
        self._images += len(batch[1]) * trainer.world_size
        running = sum(self.recent) / len(self.recent)
        pl_module.log("train/top1_err_running", running, on_step=True, on_epoch=False)
        # the step's own error too: with log_every_n_steps=1 a report smooths the exact per-step curve (curves.py)
        pl_module.log("train/top1_err_batch", self.recent[-1], on_step=True, on_epoch=False)
        if len(self.recent) < self.window:
            return
        for target in self.targets:
            if target not in self.reached and running <= target:
                self.reached[target] = (trainer.global_step, self._images)
        if self.stop and len(self.reached) == len(self.targets):
            trainer.should_stop = True

    def summary(self) -> dict[str, Any]:
        first = self.reached.get(self.target, (None, None))
        return {
            "train_error_target": self.target,
            "train_error_targets": self.targets,
            "train_error_window": self.window,
            "steps_to_target": first[0],
            "images_to_target": first[1],
            # every target: [step, images] when reached, null when the run ended first (a bound: > its steps)
            "to_targets": {f"{t:g}": list(self.reached[t]) if t in self.reached else None for t in self.targets},
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "reached": {str(t): list(v) for t, v in self.reached.items()},
            "images": self._images,
            "recent": list(self.recent),  # the running window, so that a resumed run crosses where this one would
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.reached = {float(t): (v[0], v[1]) for t, v in state.get("reached", {}).items()}
        if "steps_to_target" in state and state["steps_to_target"] is not None:  # a checkpoint of one target
            self.reached[self.target] = (state["steps_to_target"], state["images_to_target"])
        self._images = state["images"]
        self.recent.extend(state.get("recent", []))


class TrainEvalError(L.Callback):
    """The error of the weights on a fixed sample of the training images as the test sees them (eval mode: no
    dropout; centre crop, no flip, no colour noise). Set against the validation or test error of the same weights
    it is the overfitting gap, which the running training error under dropout and augmentation cannot give.

    - After training, of the weights the run tested (the best checkpoint; without a test, the final weights):
      the pipeline calls `measure` once the tests are done and records it as summary.json's `train_eval`.
    - With `every`, also after every `every` epochs, of that epoch's weights: `train_eval/top1_err`, `top5_err`
      and `loss` in the logs, beside `val/...` (the overfitting gap epoch by epoch).

    `sample`: how many training images, the same ones every time (null: all of them)."""

    def __init__(self, sample: int | None = 10000, every: int | None = None, seed: int = 0) -> None:
        require("callbacks.train_eval_error", sample=sample, every=every)
        self.sample, self.every, self.seed = sample, every, seed

    def measure(self, module: L.LightningModule, datamodule: L.LightningDataModule, loss: bool = False
                ) -> dict[str, float]:  # fmt: skip
        """Top-1 and top-5 error (with `loss`, the loss too) of `module`'s weights as they are now, on the sample."""
        n = len(datamodule.sources["train"]) if self.sample is None else self.sample
        return error_rates(module, datamodule.train_sample_dataloader(n, self.seed), loss=loss)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.every is None or (trainer.current_epoch + 1) % self.every and not trainer.should_stop:
            return
        rates = self.measure(pl_module, trainer.datamodule, loss=True)
        # computed on every process alike (one sample), so no syncing is needed
        pl_module.log_dict({f"train_eval/{k}": v for k, v in rates.items()}, on_step=False, on_epoch=True)


class RandomStreams(L.Callback):
    """The dropout stream (streams.py), seeded from `seed` (and the process rank under data parallelism), and
    saved with every checkpoint together with torch's global generators, so that a resumed run draws the masks
    the interrupted one would have drawn. The data order and augmentation streams need no state: they are
    functions of (seed, epoch, index), and the data module skips what a mid-epoch checkpoint already trained on.
    """

    def __init__(self, seed: int) -> None:
        self.seed, self._rank = seed, 0
        self.dropout: torch.Generator | None = None
        self._pending: dict[str, Any] | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._rank = trainer.global_rank
        self.dropout = generator(self.seed, "dropout", trainer.global_rank, device=pl_module.device)
        for layer in pl_module.modules():
            if isinstance(layer, Dropout):
                layer.generator = self.dropout
        self._restore()

    def state_dict(self) -> dict[str, Any]:
        if self.dropout is None:
            return self._pending or {}
        state = {"dropout": self.dropout.get_state(), "dropout_device": self.dropout.device.type}
        state["torch"] = torch.get_rng_state()
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = dict(state_dict) or None
        self._restore()

    def _restore(self) -> None:
        if self.dropout is None or self._pending is None:
            return  # restored when both the generator and the saved state are there
        saved = self._pending["dropout"]
        # the checkpoint holds rank zero's stream; the other ranks keep their own seeds
        if self._rank == 0 and not restore_state(
            self.dropout, saved, self._pending.get("dropout_device"), self.seed, "dropout", self._rank
        ):
            rank_zero_warn(
                f"the checkpoint's dropout stream was drawn on another device type than this run's "
                f"({self.dropout.device.type}): its state cannot continue here, so the dropout masks from now on are "
                "drawn from a stream seeded from the checkpoint (the same on every resumption), not those the "
                "interrupted run would have drawn. Resume on the device type it was written on for an exact resume."
            )
        torch.set_rng_state(self._pending["torch"].cpu())
        if "cuda" in self._pending and torch.cuda.is_available():
            states = self._pending["cuda"][: torch.cuda.device_count()]
            for device, state in enumerate(states):
                torch.cuda.set_rng_state(state.cpu(), device)
        self._pending = None


class SaveOnException(L.Callback):
    """checkpoints/on_exception.ckpt when fit ends in an exception, Ctrl-C or SIGTERM (Lightning's
    OnExceptionCheckpoint, which the config names), saved only once this process has restored or begun the state it
    would replace: a resume that fails before (its data missing, a checkpoint of another run) leaves the saved state
    alone. Not an OnExceptionCheckpoint: Lightning would load that file by itself in a fit without ckpt_path, damaged or
    not; which checkpoint a run resumes from is newest_checkpoint's choice. A save that fails too (a full disk) is
    given up: the exception that stopped the run is the one to report."""

    def __init__(self, dirpath: str | Path, filename: str = "on_exception") -> None:
        self.dirpath, self.filename = Path(dirpath), filename
        self.armed = False

    @property
    def ckpt_path(self) -> Path:
        return self.dirpath / f"{self.filename}.ckpt"

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.armed = True  # Lightning has restored the checkpoint (weights, optimizer, loops) by now

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not self.armed:
            return
        try:
            trainer.save_checkpoint(self.ckpt_path)
        except OSError as e:
            rank_zero_only(print)(f"could not save {self.ckpt_path} ({e.strerror}); the earlier checkpoints are kept")

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.armed and stage == "fit":  # the run ended well: the state of its interruption is history
            trainer.strategy.remove_checkpoint(self.ckpt_path)


def replace_on_exception(callbacks: list[L.Callback]) -> list[L.Callback]:
    """`callbacks` with Lightning's OnExceptionCheckpoint (named by the config, so that the configs of runs stay
    comparable across versions) replaced by SaveOnException at the same place."""
    return [SaveOnException(c.dirpath, c.filename) if isinstance(c, OnExceptionCheckpoint) else c for c in callbacks]


class EarlyStop(EarlyStopping, SummaryContributor):
    """Lightning's EarlyStopping, saying in summary.json whether it ended the run (`early_stopped_epoch`)."""

    def summary(self) -> dict[str, Any]:
        return {"early_stopped_epoch": self.stopped_epoch or None}


def early_stopping(
    monitor: str = "val/top1_err", patience: int | None = None, min_delta: float = 0.0
) -> EarlyStop | None:
    """callbacks.early_stopping: Lightning's early stop, off unless `patience` is set. The paper's own stop is the
    plateau schedule's (scheduler=plateau: the rate divided by 10 when `monitor` stops improving, the run ended at the
    plateau after the last division); this one ends a run after `patience` validations in which `monitor` fell by
    less than `min_delta`, whatever the rate, beside it (and with any schedule). Its state is in the checkpoint: a
    resumed run counts on. None when off (build leaves it out)."""
    require("callbacks.early_stopping", monitor=monitor, patience=patience, min_delta=min_delta)
    if patience is None:
        return None
    # every monitored metric is an error or a loss: lower is better
    return EarlyStop(monitor=monitor, patience=patience, min_delta=min_delta, mode="min", verbose=True)
