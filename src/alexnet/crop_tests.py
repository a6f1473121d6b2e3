"""The test of one set of weights at several crop counts (§4.1: centre crop, or the average of ten crops).

The run's own setting is tested first and logged as test/...; each other count in `also_test_crops` as
test_<n>crop/..., so that loggers keep both. The data module's crop count and the module's log name are set for
each test and put back afterwards."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import lightning as L

from alexnet.data import ImageDataModule
from alexnet.module import AlexNetModule
from alexnet.utils import print_metrics_table, to_float_dict


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
) -> dict[str, dict[str, float]]:
    """{crop count: its test metrics, named test/...}, the run's own count first; `ckpt`: the weights to test
    (None: the module's current ones)."""
    by_crops: dict[str, dict[str, float]] = {}
    for i, crops in enumerate(dict.fromkeys([datamodule.test_crops, *also_test_crops])):
        name = "test" if i == 0 else f"test_{crops}crop"
        with tested_as(module, datamodule, crops, name):
            results = trainer.test(module, datamodule=datamodule, ckpt_path=ckpt, verbose=False, weights_only=True)
        metrics = {k.replace(f"{name}/", "test/", 1): v for k, v in (results[0] if results else {}).items()}
        by_crops[str(crops)] = to_float_dict(metrics)
        print_metrics_table(test_title(crops, ckpt or "the final weights"), by_crops[str(crops)])
    return by_crops
