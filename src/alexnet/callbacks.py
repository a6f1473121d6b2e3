"""Fig. 1's figure of merit: the number of steps a net takes to reach a training error (§3.1)."""

from __future__ import annotations

from collections import deque
from typing import Any

import lightning as L


class TrainErrorTarget(L.Callback):
    """Follows the training error over the last `window` batches (a running stand-in for the epoch
    training error of Fig. 1, which needs many steps per point) and records the first step at which it
    is <= `target`. With `stop`, training ends there: the question is how fast, not how far."""

    def __init__(self, target: float = 0.25, window: int = 20, stop: bool = True) -> None:
        if not 0 < target < 1:
            raise ValueError(f"target={target}: a training error in (0, 1)")
        if window < 1:
            raise ValueError(f"window={window}: a number of batches >= 1")
        self.target, self.window, self.stop = target, window, stop
        self.recent: deque[float] = deque(maxlen=window)
        self.steps_to_target: int | None = None
        self.images_to_target: int | None = None
        self._images = 0

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
        if self.steps_to_target is None and len(self.recent) == self.window and running <= self.target:
            self.steps_to_target, self.images_to_target = trainer.global_step, self._images
            if self.stop:
                trainer.should_stop = True

    def summary(self) -> dict[str, Any]:
        return {
            "train_error_target": self.target,
            "train_error_window": self.window,
            "steps_to_target": self.steps_to_target,
            "images_to_target": self.images_to_target,
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "steps_to_target": self.steps_to_target,
            "images_to_target": self.images_to_target,
            "images": self._images,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps_to_target, self.images_to_target = state["steps_to_target"], state["images_to_target"]
        self._images = state["images"]
