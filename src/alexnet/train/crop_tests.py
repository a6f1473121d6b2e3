"""The test of one set of weights at several crop counts (§4.1: centre crop, or the average of ten crops).

The run's own setting is tested first and logged as test/...; each other count in `also_test_crops` as
test_<n>crop/..., so that loggers keep both. The data module's crop count and the module's log name are set for
each test and put back afterwards. Each test's per-image probabilities go to predictions/<name>.npz (`probs`,
`labels`; float16 probabilities above 100 classes), which a claim's report resamples (a bootstrap over test images)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import lightning as L
import numpy as np
import torch

from alexnet.data import ImageDataModule
from alexnet.train.console import print_metrics_table, to_float_dict
from alexnet.train.module import AlexNetModule


def test_title(crops: int, ckpt: str | Path) -> str:
    return f"Test error, {'centre crop' if crops == 1 else f'{crops} crops'}, of {Path(ckpt).name}"


@contextmanager
def tested_as(module: AlexNetModule, datamodule: ImageDataModule, crops: int, name: str) -> Iterator[None]:
    """Within the block, the test sees `crops` crops per image and logs under `name`/..."""
    saved = datamodule.test_crops, module.test_name
    datamodule.test_crops, module.test_name = crops, name
    try:
        yield
    finally:
        datamodule.test_crops, module.test_name = saved


def test_each_crop_count(
    trainer: L.Trainer,
    module: AlexNetModule,
    datamodule: ImageDataModule,
    ckpt: str | None,
    also_test_crops: Iterable[int] = (),
    predictions_dir: Path | None = None,
) -> dict[str, dict[str, float]]:
    """{crop count: its test metrics, named test/...}, the run's own count first; `ckpt`: the weights to test
    (None: the module's current ones); `predictions_dir`: where each test's per-image probabilities go (one process
    only: under data parallelism each process sees part of the test set, and none is written)."""
    by_crops: dict[str, dict[str, float]] = {}
    for i, crops in enumerate(dict.fromkeys([datamodule.test_crops, *also_test_crops])):
        name = "test" if i == 0 else f"test_{crops}crop"
        with tested_as(module, datamodule, crops, name):
            results = trainer.test(module, datamodule=datamodule, ckpt_path=ckpt, verbose=False, weights_only=True)
        metrics = {k.replace(f"{name}/", "test/", 1): v for k, v in (results[0] if results else {}).items()}
        by_crops[str(crops)] = to_float_dict(metrics)
        if predictions_dir is not None and trainer.world_size == 1:
            save_predictions(predictions_dir / f"{name}.npz", *module.test_predictions())
        print_metrics_table(test_title(crops, ckpt or "the final weights"), by_crops[str(crops)])
    return by_crops


def save_predictions(path: Path, probs: torch.Tensor, labels: torch.Tensor) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    dtype = np.float16 if probs.shape[-1] > 100 else np.float32  # ILSVRC: 50,000 x 1,000 in 100 MB, not 200
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, probs=probs.numpy().astype(dtype), labels=labels.numpy().astype(np.int64))
    tmp.replace(path)  # a kill mid-write leaves no half file under the real name
