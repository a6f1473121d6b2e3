"""The LightningModule: loss, top-1/top-5 error, learning rate and throughput around the net."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy

from alexnet.record import VIEWS  # the order of data.transforms.ten_crop
from alexnet.train.optim import parameter_groups


class TopKError(MulticlassAccuracy):
    """1 - top-k accuracy: the error rates the paper reports."""

    def __init__(self, num_classes: int, top_k: int, **kwargs: Any) -> None:
        super().__init__(num_classes=num_classes, top_k=min(top_k, num_classes), average="micro", **kwargs)

    def compute(self) -> torch.Tensor:
        return 1.0 - super().compute()


CENTRE, CENTRE_MIRROR = 4, 9


def average_softmax(logits: torch.Tensor, crops: int) -> torch.Tensor:
    """§4.1: the prediction for an image is the mean of the softmax outputs of its crops."""
    return logits.softmax(-1).view(-1, crops, logits.shape[-1]).mean(1)


class AlexNetModule(L.LightningModule):
    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[[Iterable[torch.Tensor]], torch.optim.Optimizer],
        num_classes: int,
        run_config: dict[str, Any] | None = None,
        bias_decay: bool = False,
    ) -> None:
        super().__init__()
        self.net, self.optimizer_factory, self.num_classes = net, optimizer, num_classes
        self.bias_decay = bias_decay
        self.run_config = run_config  # saved into every checkpoint, so eval rebuilds this exact run
        for stage in ("train", "val", "test"):  # train_metrics, val_metrics, test_metrics
            errors = {"top1_err": TopKError(num_classes, 1), "top5_err": TopKError(num_classes, 5)}
            setattr(self, f"{stage}_metrics", MetricCollection(errors, prefix=f"{stage}/"))
        # 10-crop diagnostics (§4.1): the top-1 error of each view alone, and of the centre + its mirror
        views = {f"view{i}_top1_err": TopKError(num_classes, 1) for i in range(len(VIEWS))}
        self.view_metrics = MetricCollection({**views, "centre_mirror_top1_err": TopKError(num_classes, 1)})
        self._epoch_start = self._last_batch_end = 0.0
        self._images_seen = 0
        self.val_history: list[dict[str, float]] = []  # one row per validation, kept in checkpoints
        self.replicas_identical: bool | None = None  # set after data-parallel training
        self.batch_error = torch.tensor(float("nan"))
        self.test_name = "test"  # what test metrics are logged as
        # each test image's class probabilities and label, in the order tested (test_predictions): a claim's report
        # resamples test images from them (a bootstrap over the test set)
        self._test_outputs: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.stop_on_nonfinite = False  # a non-finite loss ends training (recorded) instead of raising
        self.diverged_at: int | None = None
        self.channels_last = False  # inputs in NHWC, as the net's weights (speed.channels_last)
        self._compiled: list[Callable] = []  # torch.compile(net): kept out of the state dict, which stays the net's
        self._batches_in_epoch = 0  # training batches folded into the epoch's averages, in this process
        self._saved_sums: dict[str, Any] | None = None  # a checkpoint's, until the resumed run's first batch

    def compile_net(self, **options: Any) -> None:
        """Run the network through torch.compile (speed.compile): the net only, not this module, so Lightning's
        hooks stay eager and checkpoints keep the plain parameter names."""
        self._compiled = [torch.compile(self.net, **options)]

    def run_net(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.ndim == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return (self._compiled[0] if self._compiled else self.net)(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run_net(x)

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities for Bx C x H x W images, or for Bx10xCxHxW crops (averaged)."""
        if x.ndim == 5:
            return average_softmax(self.run_views(x), crops=x.shape[1])
        return self.run_net(x).softmax(-1)

    def run_views(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of every crop of a B x crops x C x H x W batch, in the order of x.flatten(0, 1), computed one view
        at a time: a forward pass of B crops, not of 10 B. On a CPU a 1,280-crop pass runs at less than half the
        images/s of a 128-crop one, its activations far out of cache (benchmarks/cpu_step.py, eval section)."""
        return torch.stack([self.run_net(x[:, v].contiguous()) for v in range(x.shape[1])], 1).flatten(0, 1)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> torch.Tensor:
        x, y = batch
        if x.ndim == 5:  # multi-crop test: average probabilities, then the loss of that average
            per_view = self.run_views(x).softmax(-1).view(*x.shape[:2], -1)
            scores = per_view.mean(1)
            loss = F.nll_loss(scores.clamp_min(1e-12).log(), y)
            if stage == "test" and x.shape[1] == len(VIEWS):
                self._update_views(per_view.detach(), y)
        else:
            scores = self.run_net(x)
            loss = F.cross_entropy(scores, y)
        metrics = getattr(self, f"{stage}_metrics")
        metrics.update(scores.detach(), y)
        if stage == "test":
            probs = scores if x.ndim == 5 else scores.softmax(-1)
            self._test_outputs.append((probs.detach().float().cpu(), y.detach().cpu()))
        if stage == "train":  # this batch's error, for callbacks that follow training error by step (Fig. 1)
            self.batch_error = (scores.detach().argmax(-1) != y).float().mean()  # no sync here
        on_step = stage == "train"
        name = self.test_name if stage == "test" else stage  # e.g. test_1crop: a second test of the same weights
        self.log(
            f"{name}/loss",
            loss,
            on_step=on_step,
            on_epoch=True,
            prog_bar=True,
            batch_size=len(y),
            sync_dist=stage != "train",
        )  # the whole val/test set's loss under data parallelism
        named = {k.replace(f"{stage}/", f"{name}/", 1): m for k, m in metrics.items()}
        self.log_dict(named, on_step=False, on_epoch=True, prog_bar=stage != "train")
        return loss

    def _update_views(self, per_view: torch.Tensor, y: torch.Tensor) -> None:
        views = {f"view{i}_top1_err": per_view[:, i] for i in range(len(VIEWS))}
        views["centre_mirror_top1_err"] = per_view[:, [CENTRE, CENTRE_MIRROR]].mean(1)
        for name, scores in views.items():
            metric = self.view_metrics[name]
            metric.update(scores, y)
            self.log(f"{self.test_name}/{name}", metric, on_step=False, on_epoch=True)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor | None:
        loss = self._step(batch, "train")
        if self._saved_sums is not None:
            self._continue_epoch_sums(batch_idx)
        self._batches_in_epoch = batch_idx + 1
        # On a CPU the check is free; on a GPU it waits for the step to finish, so it runs every 50 steps there
        # (a non-finite loss makes every later one non-finite, so none goes unnoticed).
        if (loss.device.type == "cpu" or self.global_step % 50 == 0) and not torch.isfinite(loss):
            if self.stop_on_nonfinite:  # a rate too high diverged: a result of a learning-rate grid, not an error
                self.diverged_at = self.global_step
                self.trainer.should_stop = True
                return None  # no update from this batch
            when = "" if loss.device.type == "cpu" else " (checked every 50 steps: it may have begun earlier)"
            raise FloatingPointError(
                f"non-finite training loss ({loss.item()}) at epoch {self.current_epoch}, step "
                f"{self.global_step}{when}. The weights before this step are saved in "
                "checkpoints/on_exception.ckpt. Lower optimizer.lr, or check the input data."
            )
        # a CPU tensor stays on the CPU (a float is copied to the net's device, and the host waits, every step)
        self.log("lr", torch.tensor(self.trainer.optimizers[0].param_groups[0]["lr"]), on_step=True, on_epoch=False)
        self._images_seen += len(batch[1])
        return loss

    def on_train_batch_end(self, *args: Any) -> None:
        self._last_batch_end = time.perf_counter()

    def on_train_epoch_start(self) -> None:
        self._epoch_start = time.perf_counter()
        self._images_seen = 0
        self._batches_in_epoch = 0

    def _epoch_sums(self) -> dict[str, Any]:
        """What the training epoch's averages (train/loss_epoch, train/top1_err, train/top5_err) have summed so far:
        Lightning's running sums of the values logged in training_step, and the error metrics' counts. Lightning
        keeps the sums in its loop's result collection, which no checkpoint holds (a private attribute: there is no
        public way to reach them), so a run resumed mid-epoch would average the batches after the resume only."""
        results = self.trainer.fit_loop.epoch_loop._results
        sums = {
            key: {"value": metric.value.detach().cpu().clone(), "count": metric.cumulated_batch_size.cpu().clone()}
            for key, metric in results.items()
            if metric.is_tensor and metric.meta.on_epoch and metric.meta.is_mean_reduction
        }
        counts = {name: {k: v.detach().cpu().clone() for k, v in metric.metric_state.items()}
                  for name, metric in self.train_metrics.items()}  # fmt: skip
        return {"epoch": self.current_epoch, "batches": self._batches_in_epoch, "results": sums, "metrics": counts}

    def _continue_epoch_sums(self, batch_idx: int) -> None:
        """In the first step of a run resumed mid-epoch, once this batch is logged: the interrupted start's sums added
        in, so that the epoch's averages cover every batch of it. value + saved is the sum the uninterrupted run forms
        at this batch (saved + value: float addition commutes), so the averages are bit for bit its own. A resume
        that restarts the epoch (data parallelism) or begins the next one takes none."""
        saved, self._saved_sums = self._saved_sums, None
        if saved["epoch"] != self.current_epoch or saved["batches"] != batch_idx:
            return
        results = self.trainer.fit_loop.epoch_loop._results
        for key, sums in saved["results"].items():
            if key in results:
                metric = results[key]
                metric.value = metric.value + sums["value"].to(metric.value.device)
                metric.cumulated_batch_size = metric.cumulated_batch_size + sums["count"].to(metric.value.device)
        for name, metric in self.train_metrics.items():
            for state, value in saved["metrics"].get(name, {}).items():
                setattr(metric, state, getattr(metric, state) + value.to(self.device))

    def epoch_images_per_sec(self) -> float:
        """Training images per second in this epoch so far, in this process: data loading included, validation
        excluded."""
        return self._images_seen / max(self._last_batch_end - self._epoch_start, 1e-9)

    def on_train_epoch_end(self) -> None:
        # summed over data-parallel processes: the throughput of the whole run
        self.log("train/images_per_sec", self.epoch_images_per_sec(), sync_dist=True, reduce_fx="sum")

    def on_train_end(self) -> None:
        """With data parallelism, check that every replica ended with the same weights."""
        if self.trainer.world_size > 1:
            params = [p.detach().double() for p in self.net.parameters()]
            digest = torch.stack([s for p in params for s in (p.sum(), p.square().sum())]).cpu().to(self.device)
            digests = self.trainer.strategy.all_gather(digest)  # world_size x (2 per tensor)
            self.replicas_identical = bool((digests == digests[0]).all())

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def on_validation_end(self) -> None:
        if self.trainer.sanity_checking:
            return
        logged = self.trainer.callback_metrics
        row = {k: float(v) for k, v in logged.items() if k.startswith("val/")}
        self.val_history.append({"epoch": self.current_epoch, "step": self.global_step, **row})

    def on_test_epoch_start(self) -> None:
        self._test_outputs = []

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def test_predictions(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(N x classes probabilities, N labels) of the last test, in the order this process saw the images."""
        if not self._test_outputs:
            return torch.empty(0, self.num_classes), torch.empty(0, dtype=torch.long)
        probs, labels = zip(*self._test_outputs, strict=True)
        return torch.cat(probs), torch.cat(labels)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(parameter_groups(self.net.named_parameters(), self.bias_decay))

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["alexnet_config"] = self.run_config
        checkpoint["val_history"] = self.val_history
        if self._trainer is not None and self.trainer.state.fn == "fit":  # fit's checkpoints, mid-epoch ones too
            checkpoint["epoch_sums"] = self._epoch_sums()
        # the rows the loggers buffer reach disk before the checkpoint does: a kill right after a checkpoint loses
        # none of them (metrics.csv is pruned back to the checkpoint's step on resume)
        for logger in self._trainer.loggers if self._trainer is not None else []:
            logger.save()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # A resumed fit, or a checkpoint tested in a new process, takes the history up to the checkpoint; testing
        # the best checkpoint after this fit keeps the whole history (its last row is the last validation).
        if not self.val_history:
            self.val_history = list(checkpoint.get("val_history", []))
        self._saved_sums = checkpoint.get("epoch_sums")


@torch.no_grad()
def error_rates(module: AlexNetModule, loader: Iterable, loss: bool = False) -> dict[str, float]:
    """Top-1/top-5 error (and with `loss`, the mean cross-entropy) of `module` in eval mode over `loader`,
    outside any Trainer loop."""
    was_training = module.training
    module.eval()
    # one process computes this: no syncing with the other data-parallel processes
    errors = {f"top{k}_err": TopKError(module.num_classes, k, sync_on_compute=False) for k in (1, 5)}
    metrics = MetricCollection(errors)
    total, count = 0.0, 0
    for x, y in loader:
        probs = module.predict_proba(x.to(module.device)).cpu()
        metrics.update(probs, y)
        total += float(F.nll_loss(probs.clamp_min(1e-12).log(), y, reduction="sum"))
        count += len(y)
    module.train(was_training)
    rates = {k: float(v) for k, v in metrics.compute().items()}
    return {**rates, "loss": total / max(count, 1)} if loss else rates
